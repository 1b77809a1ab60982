"""`sara rubric --run <run>`: the 13-dimension rubric on one sampled run, or `oracle` (evaluation/rubric/evaluate.py).

Grounded judge (synthetic prompts, no model) and/or the VLM judges of `rubric.judges`. Writes
`<rubric.out_dir>/<run>/` atomically (per-video scores + summary.json) and `outputs/metrics/<run>/rubric.json`
(DVC metrics); one MLflow run `rubric/<run>` with the metrics `rubric/<protocol>/TA_mean`, `.../MQ_mean`,
`.../<dimension>` (protocol `grounded` or `vlm`) and the run's method, routing operator, seed and lambda_TRD.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sara.config import Params
from sara.runs import ORACLE
from sara.stages.per_run import RUNS

SECTIONS = ["project", "sample", "rubric"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, choices=(ORACLE, *RUNS), help="a sampled run, or oracle (the ground truth)")


def run_metrics(summary: dict) -> dict[str, float]:
    """`<protocol>/<TA|MQ>_<mean|vote>` and `<protocol>/<dimension>` (mean over judges) of one run's summary."""
    out: dict[str, float] = {}
    for proto, block in summary.get("protocols", {}).items():
        res = block["result"]
        for g in ("TA", "MQ"):
            for k in ("mean", "vote"):
                if res[g][k] is not None:
                    out[f"{proto}/{g}_{k}"] = round(res[g][k], 4)
        for dim, v in res["dims"].items():
            if v["mean"] is not None:
                out[f"{proto}/{dim}"] = round(v["mean"], 4)
        out[f"{proto}/videos"] = res["n_videos"]
    return out


def run(params: Params, run: str) -> dict:
    from evaluation.rubric.evaluate import evaluate_run
    from sara.io import atomic_dir
    from sara.sample import load_prompts
    from sara.stages.per_run import publish_metrics
    from sara.tracking import log_artifact, run_identity, stage_run

    load_prompts(params.sample.prompt_set)  # a bad prompt set: one line, before an MLflow run is opened
    out = Path(params.rubric.out_dir) / run
    identity, tags = run_identity(params, run)
    with stage_run("rubric", params, SECTIONS, variant=run, tags=tags, extra_params=identity):
        with atomic_dir(out) as tmp:
            summary = evaluate_run(params, run, tmp)
        publish_metrics("rubric", run, run_metrics(summary))
        log_artifact(out / "summary.json")
        for proto, block in summary["protocols"].items():
            res = block["result"]
            print(f"[rubric] {proto:8s} {run:10s} TA {res['TA']['mean']} MQ {res['MQ']['mean']} ({res['n_videos']} videos)")
    return summary
