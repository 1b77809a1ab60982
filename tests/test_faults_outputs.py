"""An output changes only when the model does (issue: faults, round 2, finding 9).

Before: Stage 2's exported `metrics.json` held `step_time_s` and `tokens_per_s` (and the aligner's model folder its
training seconds), so a rerun with bit-identical weights changed the output's hash and marked every sampling and
mechanism stage stale. Now a model folder holds only what determines the model; the timings go to MLflow and to a
separate uncached metrics file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aligner_testlib import tiny_project  # noqa: F401  (fixture)
from stage2_testlib import sara, sara_here, write_params

TIMING_KEYS = {"step_time_s", "tokens_per_s", "peak_mem_gb", "resumed_from", "train_seconds", "resumed_from_step"}


def _files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow(wall_s=20)
def test_a_rerun_that_trains_the_same_weights_exports_the_same_bytes(workspace: Path):
    tmp = workspace / "rerun"
    tmp.mkdir()
    params = str(write_params(tmp, "p", steps=2))
    exported = []
    # `dvc repro -f train_dit-sft`: the same run again; the first in a process of its
    # own, the second in this one (another process, whatever its imports and hash seed, exports the same bytes)
    for run in (sara, sara_here):
        r = run(tmp, "train-dit", "--params", params, "--run", "sft")
        assert r.returncode == 0, r.stderr[-3000:]
        exported.append(_files(tmp / "dit" / "sft"))
    first, again = exported
    assert first == again  # the folder DVC hashes: identical, so nothing downstream turns stale
    assert "SHA256SUMS" in first
    metrics = json.loads(first["metrics.json"])
    assert not TIMING_KEYS & metrics.keys() and "loss" in metrics
    timings = json.loads((tmp / "outputs" / "metrics" / "sft" / "train_dit.json").read_text())["train_dit"]
    assert {"step_time_s", "tokens_per_s", "peak_mem_gb", "resumed_from"} <= timings.keys()


@pytest.mark.parametrize("tiny_project", [{}], indirect=True)
def test_the_aligner_folder_holds_no_timings(tiny_project):
    import torch

    from sara.stages import train_aligner

    root, params = tiny_project
    out = train_aligner.run(params, progress=False)
    assert not TIMING_KEYS & json.loads((out / "train_metrics.json").read_text()).keys()
    payload = torch.load(out / "aligner.pt", map_location="cpu", weights_only=True)
    assert not TIMING_KEYS & payload["train_summary"].keys()
    timings = json.loads(train_aligner.timings_path(params).read_text())["train_aligner"]
    assert set(timings) == {"train_seconds", "resumed_from_step"}
