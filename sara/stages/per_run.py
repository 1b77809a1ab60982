"""What the per-run evaluation stages (sample, rubric, vbench, clipscore) share: run names and metric files.

Each evaluation stage evaluates ONE run (`sara rubric --run sara-or`), so a sweep point evaluates its own model
and a changed run re-evaluates only itself; `sara report` aggregates whatever runs were evaluated.

Metric names are stable: they never contain the run. The run is who was measured, carried by the MLflow run's
params and tags (`sara.tracking.run_identity`) and by the metrics file's folder:
  MLflow (the stage run `<stage>/<run>`):  `rubric/grounded/TA_mean`, `vbench/quality`, `clipscore/mean`, ...
  DVC (`outputs/metrics/<run>/<stage>.json`, nested): `rubric.grounded.TA_mean`, `vbench.quality`, ...
so `dvc exp show` prints each sweep point's own values and MLflow can put routing operators side by side.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from sara.runs import SAMPLE_RUNS, Row

# Runs that can be sampled and evaluated: the untrained base model and every Stage 2 run (the run vocabulary);
# the rubric also scores `sara.runs.ORACLE`.
RUNS = SAMPLE_RUNS
METRICS_DIR = Path("outputs/metrics")  # one folder per run; one JSON file per evaluation stage (DVC metrics)


def metrics_path(stage: str, run: Row | str) -> Path:
    return METRICS_DIR / str(run) / f"{stage}.json"


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"grounded/TA_mean": 4.1}` -> `{"grounded": {"TA_mean": 4.1}}` (DVC prints nested keys as a.b)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        node = out
        *parents, leaf = key.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def publish_metrics(stage: str, run: str, metrics: dict[str, Any]) -> Path:
    """Write `outputs/metrics/<run>/<stage>.json` and log every numeric value as `<stage>/<key>` on the active run.

    `metrics` keys are relative to the stage (`grounded/TA_mean`); a string value (a status) goes to the file only.
    """
    from sara.io import write_json
    from sara.tracking import log_metrics

    path = metrics_path(stage, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {stage: nest(metrics)})
    log_metrics({f"{stage}/{k}": v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return path
