"""`sara sample --run <run>`: Wan2.2 two-expert sampling of one run on the prompt set (see sara/sample.py).

`<run>` is `base` (the untrained starting point) or a Stage 2 run. Writes `<sample.out_dir>/<run>/` (built under
a temporary name, renamed at the end) and one MLflow run `sample/<run>`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "dit", "sample", "train.out_dir"]  # train.out_dir: where the trained runs are


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sara.runs import SAMPLE_RUNS

    parser.add_argument("--run", required=True, choices=SAMPLE_RUNS, help="base (untrained) or a Stage 2 run")


def run(params: Params, run: str) -> dict:
    from sara.io import atomic_dir
    from sara.sample import sample_run
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.sample.out_dir) / run
    with stage_run("sample", params, SECTIONS, variant=run, tags={"sara.run": run}):
        t0 = time.time()
        with atomic_dir(out) as tmp:
            index = sample_run(params, run, tmp)
        dt = time.time() - t0
        log_metrics({"sample.videos": len(index["videos"]), "sample.seconds": dt, "sample.seconds_per_video": dt / max(1, len(index["videos"]))})
        log_artifact(out / "index.json")
        print(f"[sample] {run}: {len(index['videos'])} videos in {dt:.1f} s -> {out}")
    return index
