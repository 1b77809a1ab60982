"""The blind user study (paper Fig. 5): build, votes, server, scripted rater, statistics, report.

Fast tests on fake sampled runs (tests/study_testlib.py); the real browser is tests/test_study_browser.py and the
DVC stages tests/test_study_dvc.py (both slow).
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from evaluation.study.build import build_study, read_sources
from evaluation.study.design import MEDIA_DIR, Study, load_study
from evaluation.study.media import strip_metadata
from evaluation.study.session import Session, VoteRefused
from evaluation.study.stats import bootstrap_shares, krippendorff_alpha, outcome, sign_test, votes_needed
from evaluation.study.store import VoteStore, read_votes
from sara.data.video_io import read_video, write_video
from study_testlib import BASELINES, MAIN, METHOD_WORDS, PROMPTS, study_params, write_samples

ENCODER_TAGS = (b"x264", b"Lavf", b"Lavc", b"libx264", b"options:")


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("samples")
    write_samples(root)
    return root


@pytest.fixture()
def built(samples: Path, tmp_path: Path) -> tuple[Study, Path]:
    out = tmp_path / "build"
    study = build_study(read_sources(samples, MAIN, BASELINES), raters=3, attention_checks=2, seed=0, out=out, log=lambda _: None)
    return study, out


# ------------------------------------------------------------------------------------------------ media and build


def test_stripped_media_carry_no_tag_and_the_same_frames(tmp_path: Path) -> None:
    src = tmp_path / "sara-or_syn_01_s0.mp4"
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    frames[:, 8:16, 4:12] = 200
    write_video(src, frames, 8)
    assert any(t in src.read_bytes() for t in ENCODER_TAGS)  # what a sampled file gives away
    dst = tmp_path / "0123abcd.mp4"
    strip_metadata(src, dst)
    data = dst.read_bytes()
    assert not [t for t in ENCODER_TAGS if t in data]
    assert b"sara" not in data.lower() and b"syn_01" not in data
    import av

    with av.open(str(dst)) as c:
        assert dict(c.metadata) == {"major_brand": "isom", "minor_version": "512", "compatible_brands": "isomiso2avc1mp41"}
        assert set(c.streams.video[0].metadata) <= {"handler_name", "language", "vendor_id"}
    np.testing.assert_array_equal(read_video(dst)[0], read_video(src)[0])  # a re-mux, not a re-encode


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_build_pairs_every_baseline_on_the_same_prompt_and_seed(built: tuple[Study, Path]) -> None:
    study, out = built
    compare = [p for p in study.pairs if p.kind == "compare"]
    assert len(compare) == len(PROMPTS) * len(BASELINES)
    assert {(p.baseline, p.prompt_id) for p in compare} == {(b, q) for b in BASELINES for q in PROMPTS}
    for p in compare:
        assert p.a.source == MAIN and p.b.source == p.baseline and p.seed == 0
    checks = [p for p in study.pairs if p.kind == "attention"]
    assert len(checks) == 2 and all(p.a.source == "groundtruth" and p.b.source == "corrupted" for p in checks)
    media = sorted(f.name for f in (out / MEDIA_DIR).iterdir())
    assert len(media) == len(PROMPTS) * (1 + len(BASELINES)) + 2 * 2
    assert all(re.fullmatch(r"[0-9a-f]{16}\.mp4", m) for m in media)  # opaque names only
    assert (out / "raters.txt").read_text().split() == list(study.plans)


def test_each_rater_sees_every_pair_once_in_an_own_order_with_balanced_sides(built: tuple[Study, Path]) -> None:
    study, _ = built
    orders = []
    for plan in study.plans.values():
        ids = [s.pair for s in plan]
        assert sorted(ids) == sorted(p.id for p in study.pairs)
        assert abs(sum(s.left == "a" for s in plan) - len(plan) / 2) <= 0.5  # the main run left in half the pairs
        kinds = [study.pair(i).kind for i in ids]
        assert kinds[0] == kinds[-1] == "compare"  # checks are spread inside, not at the ends
        orders.append(ids)
    assert len({tuple(o) for o in orders}) == len(orders)


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_a_rebuild_of_the_same_inputs_gives_the_same_study(samples: Path, built: tuple[Study, Path], tmp_path: Path) -> None:
    study, _ = built
    again = build_study(read_sources(samples, MAIN, BASELINES), raters=3, attention_checks=2, seed=0, out=tmp_path / "again",
                        log=lambda _: None)
    assert again.fingerprint == study.fingerprint and again.pairs == study.pairs and again.plans == study.plans
    other = build_study(read_sources(samples, MAIN, BASELINES), raters=3, attention_checks=2, seed=1, out=tmp_path / "other",
                        log=lambda _: None)
    assert other.fingerprint != study.fingerprint and not {p.id for p in other.pairs} & {p.id for p in study.pairs}


def test_a_baseline_without_a_video_of_the_main_run_is_one_error_naming_its_index(samples: Path, tmp_path: Path) -> None:
    from sara.errors import InputError

    partial = tmp_path / "samples"
    write_samples(partial, [MAIN], PROMPTS)
    write_samples(partial, ["sft"], PROMPTS[:2])
    with pytest.raises(InputError, match=r"sft/index.json: no video of syn_03 seed 0"):
        read_sources(partial, MAIN, ["sft"])


# ------------------------------------------------------------------------------------------------ votes


def test_votes_are_taken_in_order_and_refused_ones_write_nothing(built: tuple[Study, Path], tmp_path: Path) -> None:
    study, _ = built
    db = tmp_path / "votes.sqlite"
    store = VoteStore(db, study.fingerprint)
    session = Session(study, store)
    rater = next(iter(study.plans))
    first = session.current(rater)
    assert first.done == 0 and first.total == len(study.pairs)
    second_pair = study.plans[rater][1].pair
    refusals = [
        (lambda: session.vote(rater, second_pair, "left"), 409),  # not yet shown
        (lambda: session.vote(rater, "nope", "left"), 404),
        (lambda: session.vote("stranger", first.pair, "left"), 404),
        (lambda: session.vote(rater, first.pair, "better"), 422),
    ]
    for call, status in refusals:
        with pytest.raises(VoteRefused) as err:
            call()
        assert err.value.status == status
    assert store.votes() == []
    session.vote(rater, first.pair, "tie")
    with pytest.raises(VoteRefused) as err:
        session.vote(rater, first.pair, "left")  # repeated
    assert err.value.status == 409
    assert session.current(rater).pair == second_pair
    store.close()
    with sqlite3.connect(db) as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("SELECT rater, position, pair, choice FROM votes").fetchall() == [(rater, 0, first.pair, "tie")]
    reopened = Session(study, VoteStore(db, study.fingerprint))
    assert reopened.current(rater).pair == second_pair  # resumes where the rater stopped


def test_a_votes_database_of_another_build_is_refused(built: tuple[Study, Path], tmp_path: Path) -> None:
    from sara.errors import InputError

    study, _ = built
    VoteStore(tmp_path / "v.sqlite", "another-build").close()
    with pytest.raises(InputError, match="another study build"):
        read_votes(tmp_path / "v.sqlite", study.fingerprint)
    (tmp_path / "junk.sqlite").write_text("not a database at all, just text " * 40)
    with pytest.raises(InputError, match="not a votes database"):
        read_votes(tmp_path / "junk.sqlite", study.fingerprint)


# ------------------------------------------------------------------------------------------------ server


@pytest.fixture()
def client(built: tuple[Study, Path], tmp_path: Path):
    from fastapi.testclient import TestClient

    from evaluation.study.server import create_app

    study, out = built
    store = VoteStore(tmp_path / "served.sqlite", study.fingerprint)
    with TestClient(create_app(study, store, out / MEDIA_DIR)) as c:
        yield c, study, store
    store.close()


def _names_a_method(text: str) -> list[str]:
    return METHOD_WORDS.findall(text)


def test_the_server_shows_pairs_takes_votes_and_names_no_method(client) -> None:
    c, study, store = client
    rater = next(iter(study.plans))
    page = c.get(f"/r/{rater}")
    assert page.status_code == 200 and "<video" in page.text and not _names_a_method(page.text)
    nxt = c.get(f"/api/r/{rater}/next").json()
    assert set(nxt) == {"pair", "caption", "left", "right", "done", "total"}
    seen = []
    for choice in ("left", "right", "tie"):
        for side in ("left", "right"):
            r = c.get(nxt[side], headers={"Range": "bytes=0-99"})
            assert r.status_code == 206 and r.headers["content-type"] == "video/mp4"
            assert "last-modified" not in r.headers and "etag" not in r.headers and "server" not in r.headers
            full = c.get(nxt[side]).content
            assert not [t for t in ENCODER_TAGS if t in full] and b"sara" not in full.lower()
            seen.append(nxt[side])
        text = json.dumps(nxt) + " ".join(f"{k}: {v}" for k, v in c.get(f"/api/r/{rater}/next").headers.items())
        assert not _names_a_method(text), text
        r = c.post(f"/api/r/{rater}/vote", json={"pair": nxt["pair"], "choice": choice})
        assert r.status_code == 200
        nxt = r.json()
    assert len(set(seen)) == len(seen)  # every side of every pair has its own address
    assert [v.choice for v in store.votes()] == ["left", "right", "tie"]


@pytest.mark.parametrize("body, status", [
    ({"pair": "0" * 12, "choice": "left"}, 404),  # unknown pair
    ({"pair": None, "choice": "left"}, 422),
    ({"choice": "left"}, 422),
    ({"pair": "CURRENT", "choice": "both"}, 422),
    ({"pair": "CURRENT", "choice": "left", "extra": 1}, 422),
    ("not json", 422),
    ({"pair": "PREVIOUS", "choice": "left"}, 409),  # repeated vote
    ({"pair": "LATER", "choice": "left"}, 409),  # a pair not yet shown
])
@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_bad_votes_get_a_4xx_and_write_nothing(client, body, status) -> None:
    c, study, store = client
    rater = next(iter(study.plans))
    plan = study.plans[rater]
    c.post(f"/api/r/{rater}/vote", json={"pair": plan[0].pair, "choice": "left"})
    names = {"CURRENT": plan[1].pair, "PREVIOUS": plan[0].pair, "LATER": plan[2].pair}
    if isinstance(body, dict) and body.get("pair") in names:
        body = {**body, "pair": names[body["pair"]]}
    r = c.post(f"/api/r/{rater}/vote", **({"content": body, "headers": {"Content-Type": "application/json"}}
                                           if isinstance(body, str) else {"json": body}))
    assert r.status_code == status, r.text
    assert len(store.votes()) == 1


def test_unknown_raters_and_videos_are_404(client) -> None:
    c, _, _ = client
    assert c.get("/r/someone").status_code == 404
    assert c.get("/api/r/someone/next").status_code == 404
    assert c.post("/api/r/someone/vote", json={"pair": "x", "choice": "left"}).status_code == 404
    assert c.get("/v/0123456789abcdef").status_code == 404
    assert c.get("/openapi.json").status_code == 404 and c.get("/docs").status_code == 404


# ------------------------------------------------------------------------------------------------ statistics


def test_krippendorff_alpha_matches_the_published_example() -> None:
    """Krippendorff (2011), 'Computing Krippendorff's alpha-reliability': 4 coders, 12 units, missing values."""
    n = np.nan
    data = np.array([[1, 2, 3, 3, 2, 1, 4, 1, 2, n, n, n], [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, n, 3],
                     [n, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, n], [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, n]])
    assert round(krippendorff_alpha(data, "nominal"), 3) == 0.743
    assert round(krippendorff_alpha(data, "ordinal"), 3) == 0.815
    assert round(krippendorff_alpha(data, "interval"), 3) == 0.849
    assert krippendorff_alpha(np.ones((3, 4))) is None  # no variation: undefined


def test_votes_from_the_main_runs_side_and_the_sign_test() -> None:
    assert [outcome("a", "left"), outcome("b", "left"), outcome("a", "right"), outcome("b", "right")] == \
        ["win", "loss", "loss", "win"]
    assert outcome("b", "tie") == "tie"
    assert sign_test(9, 1) == pytest.approx(0.021484375)  # 2 * 11 / 1024
    assert sign_test(0, 0) is None
    assert votes_needed(0.5, 0.05) == 385 and votes_needed(0.5, 0.05, deff=2.0) == 769


def test_the_bootstrap_over_prompts_and_raters_widens_with_clustering() -> None:
    rng = np.random.default_rng(0)
    independent = rng.multinomial(4, [0.45, 0.15, 0.4], size=(20, 5)).astype(float)  # (P, R, 3)
    clustered = np.zeros_like(independent)
    clustered[:, :, 0] = np.where(np.arange(20) < 9, 4, 0)[:, None]  # each prompt: every vote the same way
    clustered[:, :, 2] = 4 - clustered[:, :, 0]
    a, b = (bootstrap_shares(c, 2000, 0.95, 0) for c in (independent, clustered))
    for r in (a, b):
        assert np.all(r["lo"] <= r["estimate"]) and np.all(r["estimate"] <= r["hi"])
    assert (b["hi"][0] - b["lo"][0]) > 2 * (a["hi"][0] - a["lo"][0])


# ------------------------------------------------------------------------------------------------ end to end


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_scripted_raters_give_fig5_in_files_and_mlflow(samples: Path, tmp_path: Path, tracking) -> None:
    import shutil

    from sara.cli import main

    shutil.copytree(samples, tmp_path / "samples")
    params = study_params(tmp_path)
    assert main(["study", "build", "--params", str(params)]) == 0
    assert main(["study", "report", "--params", str(params)]) == 0
    out = tmp_path / "study"
    result = json.loads((out / "report" / "study.json").read_text())
    assert result["rater_kind"] == "scripted" and result["attention"]["pass_rate"] == 100.0
    assert result["raters_kept"] == 2 and result["votes"] == 2 * (len(PROMPTS) * len(BASELINES) + 2)
    table = result["baselines"]
    for b in BASELINES:
        r = table[b]
        assert r["n_votes"] == 2 * len(PROMPTS)
        assert sum(r[k]["estimate"] for k in ("win", "tie", "loss")) == pytest.approx(100.0, abs=0.02)  # each rounded
        assert r["win"]["lo"] <= r["win"]["estimate"] <= r["win"]["hi"]
    assert table["base"]["win"]["estimate"] == 100.0  # scrambled noise loses every vote
    md = (out / "report" / "study.md").read_text()
    assert "| SARA vs |" in md and "| Pretrained Wan2.2 |" in md and "Krippendorff" in md and "Rule: a rater is kept" in md
    header = (out / "report" / "votes.csv").read_text().splitlines()[0]
    assert header == "rater,position,pair,kind,prompt_id,seed,baseline,left,right,choice,outcome,voted_at,rater_kept"
    assert (out / "plots" / "fig5.png").read_bytes()[:4] == b"\x89PNG"
    dvc_metrics = json.loads((out / "metrics.json").read_text())["study"]
    assert dvc_metrics["sft"]["win"] == table["sft"]["win"]["estimate"]
    run = tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id],
                               "attributes.run_name = 'study_report'")[0]
    m = run.data.metrics
    for b in BASELINES:
        assert {f"study/{b}/{k}" for k in ("win", "tie", "loss", "win_lo", "win_hi", "n_votes")} <= set(m)
    assert m["study/base/win"] == 100.0 and "study/attention_pass_rate" in m
    assert run.data.tags["sara.study.rater"] == "scripted"
    artifacts = [a.path for a in tracking.list_artifacts(run.info.run_id, "study")]
    assert "study/fig5.png" in artifacts


def test_a_rater_failing_an_attention_check_is_excluded(built: tuple[Study, Path], tmp_path: Path) -> None:
    from evaluation.study.report import analyse

    study, _ = built
    store = VoteStore(tmp_path / "v.sqlite", study.fingerprint)
    session = Session(study, store)
    careless, careful = list(study.plans)[:2]
    for rater, pick_a in ((careless, False), (careful, True)):
        while (shown := session.current(rater)) is not None:
            slot = study.plans[rater][shown.done]
            a_side = "left" if slot.left == "a" else "right"
            b_side = "right" if a_side == "left" else "left"
            session.vote(rater, shown.pair, a_side if pick_a else b_side)
    result = analyse(study, store.votes(), rater_kind="human", n_boot=200, level=0.95, seed=0, max_failed_checks=0)
    assert result["raters_excluded"] == sorted(set(study.plans) - {careful})
    assert result["attention"] == {"answered": 4, "passed": 2, "pass_rate": 50.0}
    assert all(r["win"]["estimate"] == 100.0 and r["n_votes"] == len(PROMPTS) for r in result["baselines"].values())
    store.close()


def test_study_commands_refuse_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture, tracking) -> None:
    from sara.cli import main

    assert main(["study"]) == 2
    assert "usage: sara study {build,serve,report}" in capsys.readouterr().err
    params = study_params(tmp_path)
    assert main(["study", "serve", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "build/study.json not found" in err and "\n" not in err
    assert main(["study", "build", "--params", str(params)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "samples/sara-or/index.json not found" in err and "\n" not in err
    assert not tracking.search_experiments() or not tracking.search_runs(
        [e.experiment_id for e in tracking.search_experiments()])  # a missing sample opens no MLflow run
    bad = study_params(tmp_path, db=str(tmp_path / "study" / "votes.sqlite"))
    assert main(["study", "report", "--params", str(bad)]) == 2
    assert "study.db" in capsys.readouterr().err and load_study  # inside study.out_dir: refused by the params
