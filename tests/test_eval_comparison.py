"""`sara compare` end to end on synthetic per-run rubric records (no GPU, no model): tables, JSON, figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from evaluation.comparison.claims import claim_verdict, prompts_needed
from evaluation.comparison.records import discover_runs, load_run, video_scores
from evaluation.rubric.dimensions import ALL_DIMS
from evaluation.statistics import Interval
from sara.runs import NO_ROUTING

PROMPTS = ["p00", "p01", "p02", "p03"]
SEEDS = [0, 1]
# per-run offset added to a shared per-(prompt, seed) base score: sara-or is clearly above sft on every dimension
OFFSET = {"oracle": None, "base": -1.0, "sft": 0.0, "videorepa": 0.0, "sara-and": 0.5, "sara-or": 1.0, "sara-xor": 0.0}


def _scores(run: str, prompt: int, seed: int, train_seed: int) -> dict:
    rng = np.random.default_rng(100 * prompt + seed)  # shared by every run: the prompt's difficulty
    base = rng.integers(2, 4, len(ALL_DIMS))
    if OFFSET[run] is None:
        vals = np.full(len(ALL_DIMS), 5)
    else:
        vals = np.clip(base + OFFSET[run] + (0.5 if train_seed == 1 and run == "sft" else 0.0), 1, 5)
    return {d: {"score": None if d == "person_appearance" else float(v), "value": 0.0, "note": ""} for d, v in zip(ALL_DIMS, vals)}


def write_records(root: Path, run: str, folder: str, train_seed: int, with_video: bool) -> None:
    import shutil

    from sara.data.video_io import write_video

    out = root / folder
    out.mkdir(parents=True)
    for i, p in enumerate(PROMPTS):
        clip = root / f".{p}.mp4"  # one encoded clip per prompt, copied: encoding is the slow part
        if with_video and not clip.is_file():
            frames = np.full((9, 32, 32, 3), 40 * (i + 1), np.uint8)
            for t in range(9):
                frames[t, 8:16, 2 * t : 2 * t + 8] = 255  # a square moving right
            write_video(clip, frames, 8)
        for s in SEEDS:
            video = out / f"{p}_s{s}.mp4"
            if with_video:
                shutil.copy(clip, video)
            rec = {"run": run, "prompt_id": p, "seed": s, "video": video.name if run == "oracle" else str(video),
                   "grounded": _scores(run, i, s, train_seed)}
            (out / f"{p}_s{s}.json").write_text(json.dumps(rec))
    (out / "summary.json").write_text("{}")  # never read as a record


@pytest.fixture()
def rubric_dir(tmp_path: Path) -> Path:
    root = tmp_path / "rubric"
    for run in OFFSET:
        write_records(root, run, run, 0, with_video=True)
    write_records(root, "sft", "sft.seed1", 1, with_video=False)
    return root


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_compare_end_to_end(rubric_dir: Path, tmp_path: Path, tracking, monkeypatch: pytest.MonkeyPatch) -> None:
    from sara.cli import main

    mech = tmp_path / "mechanism"
    mech.mkdir()
    part = {"total": {"estimate": 0.2, "lo": 0.1, "hi": 0.3}, **{k: {"estimate": 0.2, "lo": 0.1, "hi": 0.3} for k in ("fg_fg", "fg_bg", "bg_bg")}}
    (mech / "sara-or.json").write_text(json.dumps({
        "note": "test readout", "features": {"raw": {"all": part, "spatial": part, "temporal": part}},
        "budget": {"or": {"shares": {"fg_fg": 0.5, "fg_bg": 0.4, "bg_bg": 0.1}}}}))
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["rubric"]["out_dir"] = str(rubric_dir)
    params["train"]["seed"] = 0
    params["comparison"] = {"n_boot": 200, "out_dir": str(tmp_path / "comparison"), "mechanism_dir": str(mech), "grid_frames": 4,
                            "claims": ["sara-or > videorepa on TA", "sara-xor > sara-and on MQ"]}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    assert main(["compare", "--params", str(pfile)]) == 0

    out = tmp_path / "comparison"
    res = json.loads((out / "comparison.json").read_text())
    assert list(res["runs"]) == ["oracle", "base", "sft", "videorepa", "sara-and", "sara-or", "sara-xor"]
    assert res["runs"]["sft"]["train_seeds"] == [0, 1] and res["runs"]["sft"]["n_videos"] == len(PROMPTS) * len(SEEDS)
    assert res["runs"]["oracle"]["metrics"]["TA"]["estimate"] == 5.0
    assert res["runs"]["sft"]["metrics"]["TA"]["spread"]["std"] > 0  # training seed 1 of sft scores higher
    # videorepa equals sft's training seed 0 on every video; sft averages seeds 0 and 1 (+0.5 on unclipped scores)
    d = res["differences"]["sft"]
    assert d["sara-or"]["TA"]["verdict"] == "higher" and d["base"]["TA"]["verdict"] == "lower"
    assert res["differences"]["videorepa"]["sara-xor"]["MQ"] == {"estimate": 0.0, "lo": 0.0, "hi": 0.0, "verdict": "no difference", "n_paired": 8, "half_width": 0.0}
    # the pre-registered family: sara-or is above videorepa on every resample (two-sided p = 2 / 201, x 2 by Holm)
    primary = res["primary_claims"]
    assert [c["text"] for c in primary["claims"]] == ["sara-or > videorepa on TA", "sara-xor > sara-and on MQ"]
    first, second = primary["claims"]
    assert first["verdict"] == "holds" and first["p_raw"] == pytest.approx(2 / 201, abs=1e-6)
    assert first["p_holm"] == pytest.approx(4 / 201, abs=1e-6) and first["half_width"] == 0.0  # a constant +1
    assert second["verdict"] == "not shown"  # xor is below and on the wrong side
    assert primary["half_widths"]["TA"]["n"] > 0 and primary["half_widths"]["TA"]["max"] >= 0  # constant offsets here
    assert all("half_width" in d["TA"] for per_run in res["differences"].values() for d in per_run.values())
    # everything else is exploratory, with its raw p, and never "holds"
    claims = {c["claim"]: c for c in res["claims"]}
    assert "SARA (OR) > VideoREPA on TA" not in claims  # tested in the primary family
    assert {c["family"] for c in res["claims"]} == {"exploratory"}
    assert claims["SARA (OR) > SARA (AND) on TA"]["verdict"] == "consistent (uncorrected)"
    assert claims["SARA (AND) > SARA (XOR) on MQ"]["p_raw"] < 0.05
    assert all(c["verdict"] != "holds" for c in res["claims"])
    md = (out / "comparison.md").read_text()
    for heading in ("Table 1 (grounded)", "Table 3 (grounded)", "Table 5 (grounded)", "Table 6 (grounded)",
                    "Paired differences against SFT", "Paired differences against VideoREPA", "orderings", "Mechanism",
                    "Pre-registered claims (Holm-Bonferroni)", "Exploratory"):
        assert heading in md
    figs = out / "figures"
    assert (figs / "dims_grounded.png").stat().st_size > 0 and (figs / "operator_heatmap_grounded.png").stat().st_size > 0
    assert (figs / "claims_grounded.png").stat().st_size > 0  # the pre-registered family, plotted
    grids = sorted(p.name for p in (figs / "qualitative").glob("*.png"))
    assert grids == [f"{p}.png" for p in PROMPTS]
    from PIL import Image

    w, h = Image.open(figs / "qualitative" / "p00.png").size
    assert h > 7 * 64 and w > 4 * 64  # seven method rows, four frames at 2x
    runs = tracking.search_runs([tracking.get_experiment_by_name(params["project"]["mlflow_experiment"]).experiment_id])
    assert any(r.info.run_name == "compare" and r.info.status == "FINISHED" for r in runs)


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_compare_logs_a_parent_and_a_child_per_run_and_training_seed(rubric_dir: Path, tmp_path: Path, tracking) -> None:
    """MLflow: one parent `compare`, one child per (run, training seed) with the comparison's numbers as metrics,
    so the UI puts runs and routing operators side by side as columns."""
    from sara.cli import main

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["rubric"]["out_dir"] = str(rubric_dir)
    params["train"]["seed"] = 0
    params["comparison"] = {"n_boot": 200, "out_dir": str(tmp_path / "comparison"), "grid_frames": 2,
                            "mechanism_dir": str(tmp_path / "none"), "claims": ["sara-or > sft on TA"]}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    assert main(["compare", "--params", str(pfile)]) == 0
    res = json.loads((tmp_path / "comparison" / "comparison.json").read_text())

    exp = tracking.get_experiment_by_name(params["project"]["mlflow_experiment"]).experiment_id
    runs = tracking.search_runs([exp])
    (parent,) = [r for r in runs if r.info.run_name == "compare"]
    primary = "compare/primary/1_sara-or_vs_sft/TA"  # the pre-registered claim's numbers on the parent
    assert parent.data.metrics[f"{primary}/holds"] == 1.0
    assert parent.data.metrics[f"{primary}/p_holm"] == pytest.approx(res["primary_claims"]["claims"][0]["p_holm"])
    assert {f"{primary}/{k}" for k in ("diff", "half_width", "p_raw")} <= set(parent.data.metrics)
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(["compare/oracle", "compare/base", "compare/sft/seed0", "compare/sft/seed1",
                                       "compare/videorepa/seed0", "compare/sara-and/seed0", "compare/sara-or/seed0",
                                       "compare/sara-xor/seed0"])
    assert all(c.info.status == "FINISHED" for c in children.values())
    sft1 = children["compare/sft/seed1"]
    assert sft1.data.params["method"] == "sft" and sft1.data.params["routing_op"] == NO_ROUTING
    assert sft1.data.params["seed"] == "1" and sft1.data.params["protocol"] == "grounded"
    m, run = sft1.data.metrics, res["runs"]["sft"]
    seed1 = run["per_train_seed"]["1"]
    assert m["compare/grounded/TA_mean"] == pytest.approx(run["metrics"]["TA"]["spread"]["per_seed"]["1"])
    assert m["compare/grounded/TA_mean"] == pytest.approx(seed1["metrics"]["TA"]["estimate"])
    assert m["compare/grounded/TA_lo"] <= m["compare/grounded/TA_mean"] <= m["compare/grounded/TA_hi"]
    assert m["compare/grounded/n_videos"] == len(PROMPTS) * len(SEEDS)
    assert m["compare/grounded/all_seeds/TA_mean"] == pytest.approx(run["metrics"]["TA"]["estimate"])  # Table 1's number
    assert m["compare/grounded/all_seeds/n_train_seeds"] == 2
    assert m["compare/grounded/vs_videorepa/TA_diff"] == pytest.approx(seed1["differences"]["videorepa"]["TA"]["estimate"])
    assert "compare/grounded/vs_sft/TA_diff" not in m  # no difference of a run against itself
    sara_or = children["compare/sara-or/seed0"]
    assert sara_or.data.params["routing_op"] == "or" and sara_or.data.tags["sara.run"] == "sara-or"
    mo = sara_or.data.metrics
    assert mo["compare/grounded/vs_sft/TA_diff_lo"] > 0  # sara-or is clearly above sft
    assert mo["compare/grounded/all_seeds/vs_sft/TA_diff"] == pytest.approx(res["differences"]["sft"]["sara-or"]["TA"]["estimate"])
    # every trained run carries the same columns (the references lack only their own difference)
    for name in ("compare/sara-and/seed0", "compare/sara-xor/seed0"):
        assert set(children[name].data.metrics) == set(mo)


def test_training_seed_folders_and_one_line_errors(rubric_dir: Path) -> None:
    found = discover_runs(rubric_dir, default_seed=7)
    assert found["sft"] == {7: rubric_dir / "sft", 1: rubric_dir / "sft.seed1"}
    bad = rubric_dir / "videorepa" / "p00_s0.json"
    bad.write_text(json.dumps({"run": "videorepa", "prompt_id": "p00", "seed": 0}))
    with pytest.raises(ValueError, match=r"videorepa/p00_s0.json: no 'grounded' scores"):
        load_run("videorepa", found["videorepa"], "grounded")
    (rubric_dir / "sft.seed1" / "p03_s1.json").unlink()
    with pytest.raises(ValueError, match=r"run sft: training seeds 1 and 7 scored different videos \(e.g. p03_s1\)"):
        load_run("sft", found["sft"], "grounded")


def test_a_rubric_folder_still_being_written_is_not_a_run(rubric_dir: Path) -> None:
    """`sara compare` beside a rubric stage that is still writing: its temporary sibling (`.<run>.tmp<pid>`,
    sara.io.atomic_dir) holds records already, but it is not a run (it was read as run '.sara-or.tmp13130')."""
    busy = rubric_dir / ".sara-xor.tmp13130"
    busy.mkdir()
    (busy / "p00_s0.json").write_text((rubric_dir / "sft" / "p00_s0.json").read_text())
    assert not any(run.startswith(".") for run in discover_runs(rubric_dir, default_seed=7))
    from evaluation.rubric.summaries import list_runs_with

    (busy / "index.json").write_text("{}")  # a sample stage's folder being written, for `sara rubric` / report
    assert not any(run.startswith(".") for run in list_runs_with(rubric_dir, "index.json"))


def test_vlm_reader_means_over_valid_judges() -> None:
    rec = {"judges": {"a": {"TA": {"scores": {"entity_count": {"score": 4}}}, "MQ": {"scores": {}}},
                      "b": {"TA": {"scores": {"entity_count": {"score": 2}}}, "MQ": {"scores": {}}}}}
    s = video_scores(rec, "vlm")
    assert s["entity_count"] == 3.0 and s["scene_style"] is None


def test_claim_verdicts_and_prompts_needed() -> None:
    # an exploratory ordering is never "holds": only a pre-registered claim is, after correction (test_eval_claims)
    assert claim_verdict(">", Interval(0.3, 0.1, 0.5)) == "consistent (uncorrected)"
    assert claim_verdict(">", Interval(-0.3, -0.5, -0.1)) == "reversed (uncorrected)"
    assert claim_verdict(">", Interval(0.1, -0.1, 0.3)) == "cannot tell at this size"
    assert claim_verdict(">=", Interval(0.0, -0.1, 0.1)).startswith("no difference")
    assert prompts_needed(Interval(0.1, -0.1, 0.3), 18) == 72  # half-width 0.2 = 2 x the difference: 4x the prompts
    assert prompts_needed(Interval(0.3, 0.1, 0.5), 18) is None


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_qualitative_grids_only_for_the_chosen_prompts(rubric_dir: Path, tmp_path: Path) -> None:
    """comparison.grid_prompt_set: the lab draws grids for its 18 hand-written prompts, not for all 274."""
    from evaluation.comparison import write_qualitative

    videos = {run: load_run(run, seeds, "grounded")[1] for run, seeds in discover_runs(rubric_dir, 0).items()}
    written = write_qualitative(videos, tmp_path / "grids", 2, only=["p01", "p03", "not-compared"])
    assert [p.name for p in written] == ["p01.png", "p03.png"]


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_runs_with_a_trd_target_are_rows_claims_and_mlflow_columns(rubric_dir: Path, tmp_path: Path, tracking) -> None:
    """`videorepa@oracle` is a row of its own (labelled with its target), a reference and a side of a
    pre-registered claim; MLflow keys spell it `videorepa-oracle` (a key takes no `@`)."""
    import shutil

    from sara.cli import main

    src, dst = rubric_dir / "sara-or", rubric_dir / "videorepa@oracle"
    shutil.copytree(src, dst)
    for f in dst.glob("*.json"):
        f.write_text(f.read_text().replace('"run": "sara-or"', '"run": "videorepa@oracle"'))
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["rubric"]["out_dir"] = str(rubric_dir)
    params["train"]["seed"] = 0
    params["matrix"]["runs"] = [*params["matrix"]["runs"], "videorepa@oracle"]  # a claim names trained runs only
    params["comparison"] = {"n_boot": 200, "out_dir": str(tmp_path / "comparison"), "grid_frames": 2,
                            "mechanism_dir": str(tmp_path / "none"), "references": ["sft", "videorepa@oracle"],
                            "claims": ["videorepa@oracle > videorepa on TA"]}
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    assert main(["compare", "--params", str(pfile)]) == 0
    res = json.loads((tmp_path / "comparison" / "comparison.json").read_text())
    assert res["runs"]["videorepa@oracle"]["label"] == "VideoREPA [oracle target]"
    assert res["primary_claims"]["claims"][0]["verdict"] == "holds"
    runs = tracking.search_runs([tracking.get_experiment_by_name(params["project"]["mlflow_experiment"]).experiment_id])
    (parent,) = [r for r in runs if r.info.run_name == "compare"]
    assert parent.data.metrics["compare/primary/1_videorepa-oracle_vs_videorepa/TA/holds"] == 1.0
    child = next(r for r in runs if r.info.run_name == "compare/videorepa@oracle/seed0")
    assert child.data.params["target"] == "oracle" and child.data.params["routing_op"] == "no routing"
    figs = tmp_path / "comparison" / "figures"  # one operator heatmap per TRD target: the oracle's never overwrites the lab's
    assert (figs / "operator_heatmap_grounded.png").is_file() and (figs / "operator_heatmap_grounded_oracle.png").is_file()
    from evaluation.comparison.figures import heatmap_targets

    assert heatmap_targets(res) == ["lab", "oracle"]
    assert "compare/grounded/vs_videorepa-oracle/TA_diff" in next(
        r for r in runs if r.info.run_name == "compare/sft/seed0").data.metrics


# -- the exploratory breakdown by how many subjects a prompt names -------------------------------------------------

def _subject_runs(n_prompts: int = 40) -> tuple[dict, dict[str, int]]:
    """sft and sara-or on n prompts, half naming 2 subjects and half 4; sara-or is sft + 0.5 on the 4-subject
    prompts only (plus the same per-prompt noise on both)."""
    from evaluation.statistics import RunScores

    rng = np.random.default_rng(0)
    units = tuple((f"p{i:02d}", 0) for i in range(n_prompts))
    subjects = {p: (2 if i % 2 else 4) for i, (p, _) in enumerate(units)}
    sft = rng.uniform(2, 3, (1, n_prompts, len(ALL_DIMS)))
    lift = np.array([0.5 if subjects[p] == 4 else 0.0 for p, _ in units])[None, :, None]
    sara = sft + lift + rng.normal(0, 0.05, sft.shape)
    return ({"sft": RunScores("sft", units, ALL_DIMS, (0,), sft), "sara-or": RunScores("sara-or", units, ALL_DIMS, (0,), sara)},
            subjects)


def test_the_breakdown_by_subjects_finds_an_effect_only_in_its_group() -> None:
    from evaluation.comparison.numbers import StatsConfig, compare

    runs, subjects = _subject_runs()
    res = compare(runs, ["sft"], StatsConfig(n_boot=400), subjects=subjects)
    block = res["by_subjects"]
    assert block["groups"] == {"2": {"n_prompts": 20, "n_videos": 20}, "4": {"n_prompts": 20, "n_videos": 20}}
    d = block["differences"]["sft"]["sara-or"]
    assert d["4"]["TA"]["verdict"] == "higher" and d["4"]["TA"]["estimate"] == pytest.approx(0.5, abs=0.03)
    assert d["2"]["TA"]["verdict"] == "no difference" and abs(d["2"]["TA"]["estimate"]) < 0.03
    assert d["4"]["TA"]["n_paired"] == 20 and 0 < d["4"]["TA"]["p_raw"] < 0.01
    # each group's run means are the means over that group's prompts only
    four = [i for i, (p, _) in enumerate(runs["sft"].units) if subjects[p] == 4]
    from evaluation.comparison.claims import dim_index
    from evaluation.statistics import metric_value

    want = float(metric_value(runs["sft"].values[:, four], dim_index("TA"))[0])
    assert block["runs"]["sft"]["4"]["TA"]["estimate"] == pytest.approx(want)
    assert block["left_out"] == 0
    # pooled over both groups the effect is halved: the breakdown is what shows where it is
    assert res["differences"]["sft"]["sara-or"]["TA"]["estimate"] == pytest.approx(0.25, abs=0.03)


def test_the_breakdown_by_subjects_leaves_out_unknown_prompts_and_needs_two_groups() -> None:
    from evaluation.comparison.numbers import StatsConfig, compare

    runs, subjects = _subject_runs()
    some = {p: k for p, k in list(subjects.items())[:30]}  # 10 prompts have no count
    assert compare(runs, ["sft"], StatsConfig(n_boot=100), subjects=some)["by_subjects"]["left_out"] == 10
    one_group = {p: 2 for p in subjects}
    assert "by_subjects" not in compare(runs, ["sft"], StatsConfig(n_boot=100), subjects=one_group)
    assert "by_subjects" not in compare(runs, ["sft"], StatsConfig(n_boot=100))


def test_the_breakdown_by_subjects_is_a_table_and_a_figure(tmp_path: Path) -> None:
    from evaluation.comparison.figures import plot_subjects
    from evaluation.comparison.markdown import render_markdown
    from evaluation.comparison.numbers import StatsConfig, compare

    runs, subjects = _subject_runs()
    res = compare(runs, ["sft"], StatsConfig(n_boot=100), subjects=subjects)
    md = render_markdown(res, "grounded", "test")
    section = md[md.index("## Exploratory: TA by number of subjects"):]
    assert "| Method | 2 subjects (20 prompts) | 4 subjects (20 prompts) |" in section
    assert "Paired ΔTA [CI] against SFT:" in section and "| SARA (OR) | " in section
    assert plot_subjects(res, tmp_path / "subjects.png", "t") and (tmp_path / "subjects.png").stat().st_size > 0
    no_groups = compare(runs, ["sft"], StatsConfig(n_boot=100))
    assert "by number of subjects" not in render_markdown(no_groups, "grounded", "test")
    assert not plot_subjects(no_groups, tmp_path / "none.png", "t") and not (tmp_path / "none.png").exists()
    one = {p: (1 if p == "p00" else 2) for p in subjects}  # a group of one prompt
    assert "| Method | 1 subject (1 prompt) | 2 subjects (39 prompts) |" in render_markdown(
        compare(runs, ["sft"], StatsConfig(n_boot=100), subjects=one), "grounded", "test")


def test_subject_counts_are_the_foreground_references_of_each_prompt() -> None:
    from evaluation.comparison.records import subject_counts
    from sara.data.prompts import load_prompt_set

    lab = load_prompt_set("lab")
    counts = subject_counts(lab)
    assert len(counts) == 274 and counts["held_002"] == 3  # a blue triangle, a pink stick figure, a purple ring
    assert all(counts[p.id] == len(p.spec.entities) for p in lab if p.spec is not None)  # the renderer's entities
    assert sorted(set(counts.values())) == [1, 2, 3, 4]


def test_the_compare_stage_groups_the_sampled_prompts_by_subjects() -> None:
    from sara.config import load_params
    from sara.stages.compare import SECTIONS, subjects

    assert "sample.prompt_set" in SECTIONS  # a new prompt set reruns compare (its groups change)
    lab = load_params(Path("configs/lab.yaml"))
    assert len(subjects(lab)) == 530  # lab530: the 18 synthetic prompts and 512 held-out scenes


def test_the_breakdown_by_subjects_goes_to_each_childs_mlflow_metrics() -> None:
    from evaluation.comparison.numbers import StatsConfig, compare
    from sara.stages.compare import child_metrics

    runs, subjects = _subject_runs()
    res = compare(runs, ["sft"], StatsConfig(n_boot=100), subjects=subjects)
    res["protocol"] = "grounded"
    m = child_metrics(res, "sara-or", "0")
    block = res["by_subjects"]
    pre = "compare/grounded/all_seeds/subjects_4/"
    assert m[f"{pre}TA_mean"] == pytest.approx(block["runs"]["sara-or"]["4"]["TA"]["estimate"])
    assert m[f"{pre}vs_sft/TA_diff"] == pytest.approx(block["differences"]["sft"]["sara-or"]["4"]["TA"]["estimate"])
    assert m[f"{pre}vs_sft/TA_diff_lo"] > 0 and "compare/grounded/all_seeds/subjects_2/vs_sft/TA_diff_hi" in m
    assert not any("subjects_" in k for k in child_metrics(compare(runs, ["sft"], StatsConfig(n_boot=100)) | {"protocol": "grounded"}, "sara-or", "0"))
