"""MLflow runs of a sweep: one parent per sweep, one child per sweep point, stage runs nested below the child.

Each stage run is opened by the stage itself (`sara.tracking.stage_run`), nested under the point's child run
through `SARA_MLFLOW_PARENT_RUN_ID`. The child then receives a copy of its stages' metric histories under
`<stage>/<metric>` (e.g. `train_dit/loss`), so the MLflow compare view and metric charts put routing operators
side by side with one row per metric. A stage DVC restored from its run cache did not run again: its metrics
come from the earlier run of the same stage with the same params (recorded in `sara.metrics_from.<stage>`,
`@` written as `/`).
All calls use `MlflowClient` with explicit run ids: sweep points run in threads, and MLflow's fluent active-run
stack is per thread.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Run
from mlflow.tracking import MlflowClient

from flows.dag import stage_base
from flows.plan import PointPlan, SweepPlan
from sara.config import Params
from sara.tracking import EXPERIMENT_KIND, flatten, mark_model_development

METRIC_BATCH = 1000  # MLflow's log_batch limit on metrics per call
MAX_POINTS_PER_KEY = 5000  # keep copies bounded for long training curves


def ensure_experiment(client: MlflowClient, name: str, repo: Path) -> str:
    """Experiment id; a new one keeps artifacts in `<repo>/mlruns`.

    Created here, from the repository root, rather than by the first stage: a stage inside a temp experiment
    copy would otherwise put the artifact root inside a directory DVC deletes afterwards.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        mark_model_development(client, exp)
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=(repo / "mlruns").resolve().as_uri(), tags=EXPERIMENT_KIND)


def git_tags(repo: Path) -> dict[str, str]:
    def git(*args: str) -> str | None:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    tags: dict[str, str] = {}
    commit = git("rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
        tags["git.dirty"] = str(bool(git("status", "--porcelain", "--untracked-files=no")))
    return tags


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def start_sweep_run(
    client: MlflowClient, experiment_id: str, plan: SweepPlan, flow_run_id: str | None, spec: Mapping[str, Any]
) -> str:
    tags = {
        "sara.kind": "sweep",
        "sara.sweep_id": plan.sweep_id,
        "dvc.stage": ",".join(plan.shared_targets) or "-",
        **git_tags(plan.repo),
    }
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
    run = client.create_run(experiment_id, run_name=f"sweep/{plan.sweep_id}", tags=tags)
    _log_params(client, run.info.run_id, {f"sweep.{k}": v for k, v in spec.items()})
    _log_params(client, run.info.run_id, {f"override.{k}": v for k, v in plan.shared_overrides.items()})
    return run.info.run_id


def start_point_run(
    client: MlflowClient,
    experiment_id: str,
    parent_run_id: str,
    plan: SweepPlan,
    point: PointPlan,
    flow_run_id: str | None,
    task_run_id: str | None,
) -> str:
    p = point.point
    tags = {
        "mlflow.parentRunId": parent_run_id,
        "sara.kind": "sweep_point",
        "sara.sweep_id": plan.sweep_id,
        "sara.method": p.method,
        "sara.routing_op": p.op,
        "sara.run": p.run.name,
        "sara.seed": str(p.seed),
        "sara.lam_trd": f"{p.lam_trd:g}",
        "sara.scale": point.params.project.scale,
        "dvc.stage": ",".join(point.targets),
        "dvc.exp_name": point.exp_name,
        **git_tags(plan.repo),
    }
    if flow_run_id:
        tags["prefect.flow_run_id"] = flow_run_id
    if task_run_id:
        tags["prefect.task_run_id"] = task_run_id
    run = client.create_run(experiment_id, run_name=p.label, tags=tags)
    _log_params(
        client,
        run.info.run_id,
        {"method": p.method, "routing_op": p.op, "seed": p.seed, "lam_trd": p.lam_trd, **point.overrides},
    )
    return run.info.run_id


def _children(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Run]:
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000
    )


def _previous_stage_run(
    client: MlflowClient, experiment_id: str, stage: str, params: Params, identity: Mapping[str, str] | None = None
) -> Run | None:
    """Latest finished run of `stage` whose logged params equal `params` (and the run `identity`: method,
    routing_op, seed, lam_trd) on every key it logged."""
    mine = {**flatten("", params), **(identity or {})}
    candidates = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dvc.stage` = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    for run in candidates:
        if "sara.kind" in run.data.tags:  # a sweep or sweep-point run carries its targets' dvc.stage tag: not a stage
            continue
        if all(_same(mine[k], v) for k, v in run.data.params.items() if k in mine):
            return run
    return None


def _same(a: str, b: str) -> bool:
    """Logged param strings are equal, or the same number (`0.5` and `0.50`, `1` and `1.0`)."""
    if a == b:
        return True
    try:
        return float(a) == float(b)
    except ValueError:
        return False


def point_identity(point: PointPlan) -> dict[str, str]:
    """The identity params a point's per-run stage runs carry (`sara.tracking.run_identity`)."""
    p = point.point
    return {"method": p.method, "routing_op": p.op, "seed": str(p.seed), "lam_trd": f"{p.lam_trd:g}"}


def _copy_metrics(client: MlflowClient, source: Run, target_run_id: str, prefix: str) -> dict[str, float]:
    copied: list[Metric] = []
    finals: dict[str, float] = {}
    for key in metric_order(source.data.metrics):
        value = source.data.metrics[key]
        history = client.get_metric_history(source.info.run_id, key)[-MAX_POINTS_PER_KEY:]
        # Evaluation stages already log stable `<stage>/<metric>` names (rubric/grounded/TA_mean): kept as they are.
        name = key if key.startswith(f"{prefix}/") else f"{prefix}/{key}"
        copied.extend(Metric(name, m.value, m.timestamp, m.step) for m in history)
        finals[name] = value
    for i in range(0, len(copied), METRIC_BATCH):
        client.log_batch(target_run_id, metrics=copied[i : i + METRIC_BATCH])
    return finals


def metrics_from_tag(stage: str) -> str:
    """Tag naming the stage run a cached stage's metrics were copied from (`@` is not allowed in tag keys)."""
    return f"sara.metrics_from.{stage.replace('@', '/')}"


def collect_point_metrics(
    client: MlflowClient, experiment_id: str, child_run_id: str, point: PointPlan, stages: Iterable[str]
) -> dict[str, float]:
    """Copy each stage's metrics into the child run; return the final values by `<stage>/<metric>`."""
    nested = {r.data.tags.get("dvc.stage"): r for r in _children(client, experiment_id, child_run_id)}
    finals: dict[str, float] = {}
    provenance: dict[str, str] = {}
    # Evaluation stages first, headline metrics first: the MLflow compare view opens its parallel-coordinates plot
    # on the first metric the runs share, in the order the metrics were first logged.
    for stage in sorted(stages, key=lambda s: s.split("@", 1)[0] not in EVALUATION_STAGES):
        run = nested.get(stage)
        if run is not None and run.info.status != "FINISHED":
            continue
        if run is None:
            run = _previous_stage_run(client, experiment_id, stage, point.params, point_identity(point))
            if run is None:
                continue
            provenance[metrics_from_tag(stage)] = run.info.run_id
        finals.update(_copy_metrics(client, run, child_run_id, stage_base(stage)))
    for key, value in provenance.items():
        client.set_tag(child_run_id, key, value)
    return finals


def comparison_rows(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[dict[str, Any]]:
    """One row per sweep point: method, routing operator, seed, lam_trd and its final metrics."""
    rows = []
    for run in _children(client, experiment_id, parent_run_id):
        tags = run.data.tags
        if tags.get("sara.kind") != "sweep_point":
            continue
        rows.append(
            {
                "run": tags.get("sara.run"),
                "method": tags.get("sara.method"),
                "routing_op": tags.get("sara.routing_op"),
                "seed": int(tags.get("sara.seed", "0")),
                "lam_trd": float(tags.get("sara.lam_trd", "nan")),
                "status": run.info.status,
                "run_id": run.info.run_id,
                **run.data.metrics,
            }
        )
    return sorted(rows, key=lambda r: (r["method"], r["routing_op"], r["seed"], r["lam_trd"]))


EVALUATION_STAGES = ("rubric", "vbench", "clipscore")
# Evaluation metrics lead the comparison, in this order; then training, then bookkeeping (timings, counts).
EVALUATION_PREFIXES = ("rubric/", "vbench/", "clipscore/")
HEADLINE_METRICS = ("rubric/grounded/TA_mean", "rubric/grounded/MQ_mean", "rubric/vlm/TA_mean", "rubric/vlm/MQ_mean",
                    "vbench/quality", "vbench/semantic", "vbench/total", "clipscore/mean")
BOOKKEEPING = ("seconds", "wall_s", "videos", "_dims", "lr", "steps", "step_time")


def metric_order(names: Iterable[str]) -> list[str]:
    """Headline evaluation metrics, the other evaluation metrics, training metrics, then timings and counts."""

    def rank(name: str) -> tuple[int, int, str]:
        if name in HEADLINE_METRICS:
            return (0, HEADLINE_METRICS.index(name), name)
        leaf = name.rsplit("/", 1)[-1]
        if any(b in leaf for b in BOOKKEEPING) or name.startswith("sweep/"):
            return (3, 0, name)
        return (1 if name.startswith(EVALUATION_PREFIXES) else 2, 0, name)

    return sorted(names, key=rank)


def comparison_frame(rows: list[dict[str, Any]]):
    """One row per (method, routing operator, lam_trd): seeds listed, each metric mean ± spread over seeds."""
    import pandas as pd

    df = pd.DataFrame(rows)
    metric_cols = metric_order(c for c in df.columns if "/" in c)
    keys = ["method", "routing_op", "lam_trd"]
    out = []
    for key, group in df.groupby(keys, sort=True):
        row: dict[str, Any] = dict(zip(keys, key))
        row["seeds"] = ",".join(str(s) for s in sorted(group["seed"]))
        for col in metric_cols:
            values = group[col].dropna()
            row[col] = (float(values.mean()) if len(values) else None, float(values.std(ddof=0)) if len(values) > 1 else None)
        out.append(row)
    return out, keys, metric_cols


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown table: per (method, routing operator, lam_trd) the seeds it ran and every metric, evaluation first."""
    if not rows:
        return "no sweep points\n"
    table, keys, metric_cols = comparison_frame(rows)
    header = [*keys, "seeds", *metric_cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table:
        cells = [str(row[k]) for k in keys] + [row["seeds"]]
        for col in metric_cols:
            mean, spread = row[col]
            cells.append("-" if mean is None else f"{mean:.4g}" if spread is None else f"{mean:.4g} ± {spread:.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def comparison_plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    """Bar chart of the headline evaluation metrics per point group (method/op/lam), ± spread over seeds."""
    if not rows:
        return None
    table, keys, metric_cols = comparison_frame(rows)
    shown = [c for c in metric_cols if c in HEADLINE_METRICS] or [c for c in metric_cols if c.startswith(EVALUATION_PREFIXES)][:4]
    if not shown:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [f"{r['method']}/{r['routing_op']}/lam{r['lam_trd']:g}" for r in table]
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown) + 1, 3.6), squeeze=False)
    for ax, col in zip(axes[0], shown):
        means = [np.nan if r[col][0] is None else r[col][0] for r in table]
        errs = [0.0 if r[col][1] is None else r[col][1] for r in table]
        ax.bar(range(len(table)), means, yerr=errs, color="tab:blue")
        ax.set_xticks(range(len(table)), labels, rotation=30, ha="right", fontsize=7)
        ax.set_title(col, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# The MLflow UI's side panels that cover the page (the assistant); closed before a screenshot.
UI_PANELS_TO_CLOSE = ('button[aria-label="Close"]',)
# The compare view's parallel-coordinates plot (Plotly): drawn after the page's text, so a screenshot waits for it.
COMPARE_PLOT = ".js-plotly-plot"


def compare_url(base_url: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    """The MLflow UI's compare view of `run_ids`: parallel coordinates, params, metrics and tags side by side."""
    runs = json.dumps(run_ids, separators=(",", ":"))
    experiments = json.dumps(experiment_ids, separators=(",", ":"))
    return f"{base_url.rstrip('/')}/#/compare-runs?runs={runs}&experiments={experiments}"


def run_url(base_url: str, experiment_id: str, run_id: str) -> str:
    """One run's page in the MLflow UI (the sweep parent: its artifacts hold comparison.md and comparison.png)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
