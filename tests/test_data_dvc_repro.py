"""`dvc repro` of the data and masks stages on a micro profile in a temp copy of the repo; a second repro is a no-op."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml

from flows_testlib import copy_tracked_files, run_ok

MICRO_DATA = {"n_train": 2, "n_heldout": 1, "frames": 4, "height": 32, "width": 32, "max_entities": 2}
MICRO_MASKS = {"budget_grid": [2, 2, 2]}


@pytest.mark.slow(wall_s=28)
def test_dvc_repro_data_and_masks_then_noop(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    copy_tracked_files(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"].update(MICRO_DATA)
    params["masks"].update(MICRO_MASKS)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = dict(os.environ)
    env.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(work),  # the copy's code, not the checkout's
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "DVC_NO_ANALYTICS": "1", "OMP_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid",
    })
    run_ok(["git", "init", "-q"], work, env)
    run_ok(["git", "add", "-A"], work, env)
    run_ok(["git", "commit", "-q", "-m", "micro copy"], work, env)
    dvc = [sys.executable, "-m", "dvc"]

    first = run_ok([*dvc, "repro", "masks"], work, env)
    assert "Running stage 'data'" in first and "Running stage 'masks'" in first
    index = json.loads((work / "data/clips/index.json").read_text())
    assert [c["split"] for c in index["clips"]] == ["train", "train", "heldout"]
    assert sorted(p.name for p in (work / "data/masks").glob("*.npz")) == [
        "heldout_0000.npz", "train_0000.npz", "train_0001.npz"]
    summary = json.loads((work / "data/masks/summary.json").read_text())
    assert summary["backend"] == "groundtruth" and summary["clips"] == 3
    lock = yaml.safe_load((work / "dvc.lock").read_text())
    assert {"data", "masks"} <= set(lock["stages"])
    assert "data/masks_metrics.json" in [o["path"] for o in lock["stages"]["masks"]["outs"]]
    lock_text = (work / "dvc.lock").read_text()
    stamp = (work / "data/clips/index.json").stat().st_mtime_ns

    second = run_ok([*dvc, "repro", "masks"], work, env)
    assert "Running stage" not in second
    assert "Stage 'data' didn't change" in second and "Stage 'masks' didn't change" in second
    assert (work / "dvc.lock").read_text() == lock_text
    assert (work / "data/clips/index.json").stat().st_mtime_ns == stamp
