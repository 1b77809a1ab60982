"""`dvc repro` of the study stages (study_build, study_report) on fake sampled runs in a temp copy of the repo: the
scripted raters produce Fig. 5's table and metrics end to end, and a second repro is a no-op."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from flows_testlib import copy_tracked_files, run_ok
from study_testlib import BASELINES, PROMPTS, write_samples


@pytest.mark.slow(wall_s=31)
def test_dvc_repro_study_build_and_report_then_noop(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    copy_tracked_files(work)
    write_samples(work / "outputs" / "samples")  # what the sample-<run> stages would have written
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["study"].update({"raters": 2, "attention_checks": 1, "n_boot": 200})
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(work), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    run_ok(["git", "init", "-q"], work, env)
    run_ok(["git", "add", "-A"], work, env)
    run_ok(["git", "commit", "-q", "-m", "micro copy"], work, env)
    dvc = [sys.executable, "-m", "dvc"]

    first = run_ok([*dvc, "repro", "--single-item", "study_build", "study_report"], work, env)
    assert "Running stage 'study_build'" in first and "Running stage 'study_report'" in first
    metrics = json.loads((work / "outputs/study/metrics.json").read_text())["study"]
    assert set(BASELINES) <= set(metrics) and metrics["base"]["win"] == 100.0
    assert metrics["attention_pass_rate"] == 100.0 and metrics["votes"] == 2 * (len(PROMPTS) * len(BASELINES) + 1)
    assert (work / "outputs/study/plots/fig5.png").is_file() and (work / "outputs/study/report/votes.csv").is_file()
    shown = run_ok([*dvc, "metrics", "show", "outputs/study/metrics.json"], work, env)
    assert "study.sft.win" in shown
    lock = (work / "dvc.lock").read_text()

    second = run_ok([*dvc, "repro", "--single-item", "study_build", "study_report"], work, env)
    assert "Running stage" not in second
    assert (work / "dvc.lock").read_text() == lock
