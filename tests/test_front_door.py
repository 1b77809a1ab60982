"""The front door: the README's Quickstart (`bash scripts/install.sh && . .venv/bin/activate && dvc repro`) runs the
embedded DAG from a fresh clone within 10 minutes on 2 CPU cores (measured: docs/benchmarks.md). Timings are not
tested here; what is tested is what that measurement rests on, so a change that undoes it fails."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from sara.config import load_params

REPO = Path(__file__).resolve().parents[1]


def test_embedded_training_budgets_prove_the_plumbing_only():
    """Stage 1 and each of the six Stage 2 runs are the DAG's longest stages; at the embedded scale they show that
    training runs, checkpoints and logs, not what training reaches (lab and paper budgets are their own files)."""
    p = load_params(REPO / "params.yaml")
    assert p.project.scale == "embedded"
    assert p.aligner.steps <= 50, "aligner.steps: the embedded Stage 1 budget the front door was measured with"
    assert p.train.steps <= 100, "train.steps: the embedded Stage 2 budget per run the front door was measured with"


def test_embedded_sampling_is_one_pipeline_call_per_run():
    """The tiny models are launch-bound: one call of 18 videos costs about what one call of one video does
    (benchmarks/sample_batch.md), and seven sample stages run per `dvc repro`."""
    p = load_params(REPO / "params.yaml")
    assert p.sample.videos_per_call is not None and p.sample.videos_per_call >= 18 * len(p.sample.seeds)


def test_install_brings_the_c_yaml_loader_dvc_reads_its_files_with():
    """DVC reads dvc.yaml and the ~0.3 MB dvc.lock with ruamel's safe loader before and after every stage; its
    C parser (ruamel.yaml.clib) is about 8x faster than the pure-Python one ruamel falls back to without it."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "ruamel-yaml-clib" in {Requirement(d).name.lower().replace(".", "-") for d in deps}


def test_install_builds_the_vbench_environment_the_embedded_dag_uses():
    """The vbench stages run VBench-1.0 in its own venv; the install builds it, so `dvc repro` does not pip-install
    torch into a second venv in the middle of the DAG."""
    p = load_params(REPO / "params.yaml")
    assert p.vbench.enabled and p.vbench.venv == ".venv-vbench"
    install = (REPO / "scripts" / "install.sh").read_text()
    assert "ensure_env('.venv-vbench')" in install


def test_dvc_lock_holds_only_stages_of_dvc_yaml():
    """DVC rewrites dvc.lock after every stage and never drops the entry of a stage dvc.yaml no longer has; such
    entries (the old `train_dit@<run>` names, the clipscore stages) only made every rewrite slower."""
    import yaml

    lock = yaml.safe_load((REPO / "dvc.lock").read_text())["stages"]
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert not sorted(set(lock) - set(stages))


def test_an_embedded_stage_runs_torch_on_one_thread(monkeypatch):
    """On 2 shared cores torch's intra-op threads spin against each other on the tiny embedded models; each stage
    process of the embedded scale gets one (a value already in the environment wins)."""
    from sara.cli import main

    monkeypatch.setenv("OMP_NUM_THREADS", "")  # recorded first: the session's own value is restored afterwards
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert main(["check-params", "--params", str(REPO / "params.yaml")]) == 0
    assert os.environ.get("OMP_NUM_THREADS") == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert main(["check-params", "--params", str(REPO / "params.yaml")]) == 0
    assert os.environ["OMP_NUM_THREADS"] == "2"
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert main(["check-params", "--params", str(REPO / "configs" / "lab.yaml")]) == 0
    assert "OMP_NUM_THREADS" not in os.environ
