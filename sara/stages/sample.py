"""`sara sample --run <run>`: Wan2.2 two-expert sampling of one run on the prompt set (see sara/sample.py).

`<run>` is `base` (the untrained starting point) or a Stage 2 run. Writes `<sample.out_dir>/<run>/` (built under
a temporary name, renamed at the end) and one MLflow run `sample/<run>` (metrics `sample/videos`, `sample/seconds`)
carrying the run's method, routing operator, seed and lambda_TRD.
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
    from sara.sample import checked_prompts, sample_run
    from sara.tracking import log_artifact, log_metrics, run_identity, stage_run

    checked_prompts(params)  # a bad prompt set or VBench suite: one line, before an MLflow run is opened
    out = Path(params.sample.out_dir) / run
    identity, tags = run_identity(params, run)
    with stage_run("sample", params, SECTIONS, variant=run, tags=tags, extra_params=identity):
        t0 = time.time()
        with atomic_dir(out) as tmp:
            index = sample_run(params, run, tmp)
        dt = time.time() - t0
        n = len(index["videos"])
        log_metrics({"sample/videos": n, "sample/seconds": dt, "sample/seconds_per_video": dt / max(1, n)})
        log_artifact(out / "index.json")
        print(f"[sample] {run}: {len(index['videos'])} videos in {dt:.1f} s -> {out}")
    return index
