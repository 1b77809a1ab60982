"""`dvc repro` of the data and masks stages on a micro profile in a temp copy of the repo; a second repro is a no-op."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
MICRO_DATA = {"n_train": 2, "n_heldout": 1, "frames": 4, "height": 32, "width": 32, "max_entities": 2}
MICRO_MASKS = {"budget_grid": [2, 2, 2]}


def _copy_tracked_files(dst: Path) -> None:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = REPO / rel
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


@pytest.mark.slow
def test_dvc_repro_data_and_masks_then_noop(tmp_path: Path) -> None:
    work = tmp_path / "repo"
    _copy_tracked_files(work)
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
    _run(["git", "init", "-q"], work, env)
    _run(["git", "add", "-A"], work, env)
    _run(["git", "commit", "-q", "-m", "micro copy"], work, env)
    dvc = [sys.executable, "-m", "dvc"]

    first = _run([*dvc, "repro", "masks"], work, env)
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

    second = _run([*dvc, "repro", "masks"], work, env)
    assert "Running stage" not in second
    assert "Stage 'data' didn't change" in second and "Stage 'masks' didn't change" in second
    assert (work / "dvc.lock").read_text() == lock_text
    assert (work / "data/clips/index.json").stat().st_mtime_ns == stamp
