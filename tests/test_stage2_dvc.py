"""The method registry against dvc.yaml and params: run list, params and deps per run, and DVC staleness."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sara.config import Params, ParamsError, load_params, params_from_dict
from sara.runs import Run, dag_run_names

REPO = Path(__file__).resolve().parents[1]


def _train_dit_entries() -> dict[str, dict[str, list[str]]]:
    """Each train_dit-<run> stage of dvc.yaml."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    return {name.split("-", 1)[1]: stage for name, stage in stages.items() if name.startswith("train_dit-")}


def test_dvc_runs_are_the_registry_runs():
    entries = _train_dit_entries()
    assert list(entries) == dag_run_names() == ["sft", "videorepa", "moalign", "sara-and", "sara-or", "sara-xor"]
    params = load_params(REPO / "params.yaml")
    for run, e in entries.items():
        parsed = Run.parse(run)
        assert e["params"] == list(parsed.params), run
        assert e["deps"][: len(parsed.inputs(params))] == list(parsed.inputs(params)), run
        assert e["cmd"] == f"sara train-dit --run {run}"


def test_methods_sara_ops_is_gone_the_registry_picks_the_runs():
    """`methods.sara.ops` had no effect on the DAG: it is no param any more (the registry is the one run list)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert "sara" not in raw["methods"]
    raw["methods"]["sara"] = {"ops": ["or"]}
    with pytest.raises(ParamsError, match=r"methods\.sara: unknown key"):
        params_from_dict(raw)


def test_report_labels_sampling_and_sweep_runs_come_from_the_registry():
    from evaluation.report import METHOD_OP, RUN_LABEL
    from flows.plan import build_points
    from sara.runs import ALL_RUNS, DEFAULT_TARGET, SAMPLE_RUNS

    assert set(RUN_LABEL) == {"oracle", "base", *(r.name for r in ALL_RUNS)}
    assert RUN_LABEL["sara-or"] == "SARA (OR)" and METHOD_OP["sft"] == ("SFT", "no TRD")
    # the method x operator tables hold the default target's runs; a control target's runs get their own heatmap
    assert set(METHOD_OP) == {"base", *(r.name for r in ALL_RUNS if r.target == DEFAULT_TARGET)}
    assert SAMPLE_RUNS == ("base", *(r.name for r in ALL_RUNS))
    points = build_points(["sft", "videorepa", "moalign", "sara"], ["and", "or", "xor"], [1], [0.5])
    assert [p.run.name for p in points] == dag_run_names()


def test_sft_reads_no_alignment_params():
    assert Run.parse("sft").params == ("project", "data", "dit", "train")
    assert not any(k.startswith(("trd", "methods", "aligner")) for k in Run.parse("sft").params)
    assert "models/aligner" not in Run.parse("sft").inputs(Params())
    assert {"models/aligner", "data/masks"} <= set(Run.parse("sara-or").inputs(Params()))


def test_run_names_are_parsed_strictly():
    assert Run.parse("sara-xor") == Run("sara", "xor") and Run.parse("videorepa") == Run("videorepa")
    assert str(Run("sara", "or")) == "sara-or" and Run.parse("sara-none").label == "SARA (none)"
    with pytest.raises(ValueError, match="unknown run 'sara-nand'"):
        Run.parse("sara-nand")
    with pytest.raises(ValueError, match="only sara takes a routing operator"):
        Run.parse("sft-or")
    with pytest.raises(ValueError, match="unknown run 'repa'"):
        Run.parse("repa")
    with pytest.raises(ValueError, match="sara needs a routing operator"):
        Run("sara")


def test_paper_config_validates_and_carries_table_11():
    p = load_params(REPO / "configs" / "paper.yaml")
    assert p.project.scale == "paper" and p.dit.kind == "local" and p.vfm.kind == "local"
    t = p.train
    assert (t.lr, t.warmup_steps, t.weight_decay, t.grad_clip, t.batch_size, t.steps, t.seed) == (5e-6, 500, 0.01, 1.0, 1, 3000, 1024)
    assert (t.shift, t.t_min, t.t_max, t.precision) == (12.0, 0.875, 1.0, "bf16")
    assert (p.trd.layer, p.trd.lam_trd, p.trd.lam_tmp, p.trd.eps, p.trd.projector_hidden) == (18, 0.5, 1.0, 1e-6, 2048)
    assert (p.dit.frames, p.dit.height, p.dit.width, p.dit.text_max_tokens) == (81, 480, 848, 512)
    assert p.methods.moalign.tau == 10.0 and p.methods.moalign.dim == 64
    raw = yaml.safe_load((REPO / "configs" / "paper.yaml").read_text())
    assert set(raw) == set(p.model_dump())  # every section written out


@pytest.mark.slow(wall_s=45)
def test_changing_sara_params_does_not_make_sft_stale(tmp_path: Path):
    """Real DVC: record a lock for every train_dit run, then change trd and a method's own params."""
    if shutil.which("dvc") is None:
        pytest.skip("dvc not installed")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    targets = [name for name in stages if name.startswith("train_dit-")]
    code = "code"  # every per-run kind's import closure, listed once; the train_dit stages read their kind's digest
    digest = "tmp/code/train_dit.json"
    assert digest in stages[code]["outs"]
    assert all(digest in stages[t]["deps"] for t in targets)
    paths = {d for t in [code, *targets] for d in stages[t]["deps"]} | {o for t in targets for o in stages[t]["outs"]}
    paths |= set(stages["init_dit"]["outs"]) | set(stages[code]["outs"])
    paths |= {m for t in targets for item in stages[t].get("metrics", []) for m in item}  # the run's timings
    for p in sorted(paths):  # placeholder deps and outs: only their hashes matter here
        target = tmp_path / p
        if target.suffix in (".py", ".json"):
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("# placeholder\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "f").write_text(p)

    def dvc(*args: str) -> str:
        r = subprocess.run(["dvc", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    dvc("init", "-q")
    dvc("commit", "-f", *targets)
    assert dvc("status", *targets).strip().endswith("up to date.")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["trd"]["lam_trd"] = 0.25
    raw["methods"]["videorepa"]["margin"] = 0.2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    stale = dvc("status", *targets)
    assert "train_dit-sft:" not in stale and "train_dit-moalign:" in stale  # moalign reads trd
    assert "train_dit-videorepa:" in stale and "train_dit-sara-or:" in stale
    raw["train"]["lr"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "train_dit-sft:" in dvc("status", *targets)
    raw["train"]["lr"] = 0.0001
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dvc("commit", "-f", code, *targets)
    assert "train_dit-sft:" not in dvc("status", *targets)
    # finding: the caption builder was no dep. A change to it makes the code stage stale, whose new digest then
    # makes every train_dit stage stale
    (tmp_path / "sara/data/mtss.py").write_text("# the caption builder changed\n")
    assert "sara/data/mtss.py" in dvc("status", code)
    (tmp_path / digest).write_text("# the closure's new digest\n")
    assert all(f"{t}:" in dvc("status", *targets) for t in targets)
