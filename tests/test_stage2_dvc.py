"""The method registry against dvc.yaml and params: run list, params and deps per run, and DVC staleness."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sara.config import load_params
from sara.methods import COMMON_DEPS, parse_run, run_deps, run_names, run_params

REPO = Path(__file__).resolve().parents[1]


def _train_dit_entries() -> dict[str, dict[str, list[str]]]:
    """Each train_dit@<run> of dvc.yaml with its ${item.*} slots filled in (set semantics: repeats collapse)."""
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]["train_dit"]
    out = {}
    for run, item in stage["foreach"].items():
        fill = lambda s: re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), s)  # noqa: E731
        out[run] = {
            "params": sorted({fill(p) for p in stage["do"]["params"]}),
            "deps": sorted({fill(d) for d in stage["do"]["deps"]}),
            "cmd": fill(stage["do"]["cmd"].replace("${key}", run)),
        }
    return out


def test_dvc_runs_agree_with_methods_sara_ops_and_the_registry():
    params = load_params(REPO / "params.yaml")
    entries = _train_dit_entries()
    assert list(entries) == run_names(params)  # sft, videorepa, moalign, then one sara-<op> per methods.sara.ops
    for run, e in entries.items():
        assert e["params"] == sorted(set(run_params(run))), run
        assert e["deps"] == sorted(set(run_deps(run))), run
        assert e["cmd"] == f"sara train-dit --run {run}"


def test_sft_reads_no_alignment_params():
    assert run_params("sft") == ["project", "data", "dit", "train"]
    assert "trd" not in run_params("sft") and not any(k.startswith("methods") for k in run_params("sft"))
    assert "models/aligner" not in run_deps("sft") and "sara/losses" not in run_deps("sft")
    assert set(COMMON_DEPS) <= set(run_deps("sara-or"))


def test_run_names_are_parsed_strictly():
    assert parse_run("sara-xor") == ("sara", "xor") and parse_run("videorepa") == ("videorepa", None)
    with pytest.raises(ValueError, match="unknown run 'sara-nand'"):
        parse_run("sara-nand")
    with pytest.raises(ValueError, match="only sara takes a routing operator"):
        parse_run("sft-or")
    with pytest.raises(ValueError, match="unknown run 'repa'"):
        parse_run("repa")


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


@pytest.mark.slow
def test_changing_sara_params_does_not_make_sft_stale(tmp_path: Path):
    """Real DVC: record a lock for every train_dit run, then change trd and methods.sara.ops."""
    if shutil.which("dvc") is None:
        pytest.skip("dvc not installed")
    shutil.copy(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    entries = _train_dit_entries()
    stage = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    paths = {d for e in entries.values() for d in e["deps"]}
    paths |= {o for e in stage["init_dit"]["outs"] for o in [e]} | {f"models/dit/{r}" for r in entries}
    paths |= {f"models/dit_state/{r}" for r in entries}
    for p in sorted(paths):  # placeholder deps and outs: only their hashes matter here
        target = tmp_path / p
        if target.suffix == ".py":
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
    targets = [f"train_dit@{r}" for r in entries]
    dvc("commit", "-f", *targets)
    assert dvc("status", *targets).strip().endswith("up to date.")
    raw = yaml.safe_load((tmp_path / "params.yaml").read_text())
    raw["trd"]["lam_trd"] = 0.25
    raw["methods"]["sara"]["ops"] = ["or"]
    raw["methods"]["videorepa"]["margin"] = 0.2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    stale = dvc("status", *targets)
    assert "train_dit@sft" not in stale and "train_dit@moalign" in stale  # moalign reads trd
    assert "train_dit@videorepa" in stale and "train_dit@sara-or" in stale
    raw["train"]["lr"] = 0.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert "train_dit@sft" in dvc("status", *targets)
