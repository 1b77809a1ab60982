"""`sara clipscore`: CLIP text-video score of every sampled run (evaluation/clipscore.py).

Reads `<sample.out_dir>/*/index.json` and writes `clipscore.out_dir` atomically (built under a temporary name,
renamed at the end): `scores.csv` (one row per video: run, prompt_id, seed, video, frames_used, clip_score, text)
and `metrics.json` (per-run mean / std / min / max / count, the model, the checkpoint and the convention); one
MLflow run `clipscore`. With `clipscore.enabled: false` (the embedded default: no CLIP weights are shipped)
`metrics.json` says `{"status": "disabled", "reason": ...}` and holds no score.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sara.config import Params
from sara.env import resolve_device

SECTIONS = ["project", "sample", "clipscore"]
CSV_FIELDS = ["run", "prompt_id", "seed", "video", "frames_used", "clip_score", "text"]
DISABLED_REASON = (
    "clipscore.enabled is false: no CLIP weights are configured (set clipscore.enabled: true and "
    "clipscore.checkpoint to a local open_clip checkpoint of clipscore.model)"
)


def run(params: Params) -> dict:
    from sara.io import atomic_dir, write_json
    from sara.tracking import log_artifact, log_metrics, stage_run

    c = params.clipscore
    out = Path(c.out_dir)
    with stage_run("clipscore", params, SECTIONS, tags={"clipscore.status": "ok" if c.enabled else "disabled"}):
        if not c.enabled:
            metrics = {"status": "disabled", "reason": DISABLED_REASON, "scale": params.project.scale}
            with atomic_dir(out) as tmp:
                write_json(tmp / "metrics.json", metrics)
            log_artifact(out / "metrics.json")
            print(f"[clipscore] disabled: {DISABLED_REASON}")
            return metrics

        from evaluation.clipscore import CONVENTION, TEXT_FIELD, load_clip_model, score_runs

        t0 = time.time()
        device = str(resolve_device(params.project.device))
        scorer = load_clip_model(c.model, c.checkpoint, device)  # fails before any work when the checkpoint is missing
        rows, per_run = score_runs(scorer, params.sample.out_dir, c.frames, params.sample.prompt_set)
        metrics = {
            "status": "ok",
            "scale": params.project.scale,
            "model": c.model,
            "checkpoint": scorer.checkpoint,
            "frames": c.frames,
            "text": TEXT_FIELD,
            "convention": CONVENTION,
            "device": device,
            "runs": per_run,
        }
        with atomic_dir(out) as tmp:
            with (tmp / "scores.csv").open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
                writer.writeheader()
                writer.writerows(rows)
            write_json(tmp / "metrics.json", metrics)
        flat = {f"clipscore.{r}": s["clip_score"] for r, s in per_run.items() if s["clip_score"] is not None}
        log_metrics({**flat, "clipscore.videos": len(rows), "clipscore.seconds": time.time() - t0})
        log_artifact(out)
        for r, s in per_run.items():
            print(f"[clipscore] {r:10s} {s['clip_score']} over {s['n_videos']} videos")
    return metrics
