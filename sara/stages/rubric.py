"""`sara rubric`: the 13-dimension rubric on every sampled run and the oracle (evaluation/rubric/evaluate.py).

Grounded judge (synthetic prompts, no model) and/or the VLM judges of `rubric.judges`. Writes `rubric.out_dir`
atomically and `<out_dir>_metrics.json` (DVC metrics); one MLflow run `rubric`.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "sample", "rubric"]


def flat_metrics(summary: dict) -> dict[str, float]:
    """`<protocol>.<run>.<TA|MQ>_<mean|vote>` and per-dimension means, for MLflow and DVC metrics."""
    out: dict[str, float] = {}
    for proto, block in summary.get("protocols", {}).items():
        for run, res in block["runs"].items():
            for g in ("TA", "MQ"):
                for k in ("mean", "vote"):
                    if res[g][k] is not None:
                        out[f"{proto}.{run}.{g}_{k}"] = round(res[g][k], 4)
            for dim, v in res["dims"].items():
                if v["mean"] is not None:
                    out[f"{proto}.{run}.{dim}"] = round(v["mean"], 4)
    return out


def run(params: Params) -> dict:
    from sara.io import atomic_dir, write_json
    from evaluation.rubric.evaluate import evaluate_all
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.rubric.out_dir)
    with stage_run("rubric", params, SECTIONS):
        with atomic_dir(out) as tmp:
            summary = evaluate_all(params, tmp)
        metrics = flat_metrics(summary)
        write_json(out.with_name(out.name + "_metrics.json"), metrics)
        log_metrics(metrics)
        log_artifact(out / "summary.json")
        for proto, block in summary["protocols"].items():
            for run_name, res in block["runs"].items():
                print(f"[rubric] {proto:8s} {run_name:10s} TA {res['TA']['mean']} MQ {res['MQ']['mean']}")
    return summary
