"""`sara clipscore --run <run>`: CLIP text-video score of one sampled run (evaluation/clipscore.py).

Reads `<sample.out_dir>/<run>/index.json` and writes `<clipscore.out_dir>/<run>/` atomically (built under a
temporary name, renamed at the end): `scores.csv` (one row per video: run, prompt_id, seed, video, frames_used,
clip_score, text) and `metrics.json` (mean / std / min / max / count, the model, the checkpoint and the
convention), plus `outputs/metrics/<run>/clipscore.json` (DVC metrics); one MLflow run `clipscore/<run>` with
`clipscore/mean`, `clipscore/std`, `clipscore/min`, `clipscore/max`, `clipscore/videos`. With
`clipscore.enabled: false` (the embedded default: no CLIP weights are shipped) `metrics.json` says
`{"status": "disabled", "reason": ...}` and holds no score.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

from sara.config import Params
from sara.env import resolve_device
from sara.stages.per_run import RUNS

SECTIONS = ["project", "sample", "clipscore"]
CSV_FIELDS = ["run", "prompt_id", "seed", "video", "frames_used", "clip_score", "text"]
DISABLED_REASON = (
    "clipscore.enabled is false: no CLIP weights are configured (set clipscore.enabled: true and "
    "clipscore.checkpoint to a local open_clip checkpoint of clipscore.model)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, choices=RUNS, help="a sampled run")


def run(params: Params, run: str) -> dict:
    from sara.integrity import verify
    from sara.io import atomic_dir, write_json
    from sara.stages.per_run import publish_metrics
    from sara.tracking import log_artifact, log_metrics, run_identity, stage_run

    from sara.sample import load_prompts

    c = params.clipscore
    if c.enabled:
        load_prompts(params.sample.prompt_set)  # a bad prompt set: one line, before an MLflow run is opened
    out = Path(c.out_dir) / run
    identity, tags = run_identity(params, run)
    tags = {**tags, "clipscore.status": "ok" if c.enabled else "disabled"}
    with stage_run("clipscore", params, SECTIONS, variant=run, tags=tags, extra_params=identity):
        if not c.enabled:
            metrics = {"status": "disabled", "reason": DISABLED_REASON, "scale": params.project.scale}
            with atomic_dir(out) as tmp:
                write_json(tmp / "metrics.json", metrics)
            publish_metrics("clipscore", run, {"status": "disabled"})
            log_artifact(out / "metrics.json")
            print(f"[clipscore] {run}: disabled: {DISABLED_REASON}")
            return metrics

        from evaluation.clipscore import CONVENTION, TEXT_FIELD, load_clip_model, score_run

        t0 = time.time()
        device = str(resolve_device(params.project.device))
        scorer = load_clip_model(c.model, c.checkpoint, device)  # fails before any work when the checkpoint is missing
        verify(Path(params.sample.out_dir) / run)  # the videos are the ones sampled, not a damaged copy
        rows, summary = score_run(scorer, Path(params.sample.out_dir) / run, c.frames, params.sample.prompt_set)
        metrics = {
            "status": "ok",
            "scale": params.project.scale,
            "run": run,
            "model": c.model,
            "checkpoint": scorer.checkpoint,
            "frames": c.frames,
            "text": TEXT_FIELD,
            "convention": CONVENTION,
            "device": device,
            **summary,
        }
        with atomic_dir(out) as tmp:
            with (tmp / "scores.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            write_json(tmp / "metrics.json", metrics)
        named = {"mean": summary["clip_score"], "std": summary["std"], "min": summary["min"], "max": summary["max"],
                 "videos": summary["n_videos"]}
        publish_metrics("clipscore", run, {k: v for k, v in named.items() if v is not None})
        log_metrics({"clipscore/seconds": time.time() - t0})
        log_artifact(out)
        print(f"[clipscore] {run:10s} {summary['clip_score']} over {summary['n_videos']} videos")
    return metrics
