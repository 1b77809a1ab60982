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
from sara.tracking import flatten

METRIC_BATCH = 1000  # MLflow's log_batch limit on metrics per call
MAX_POINTS_PER_KEY = 5000  # keep copies bounded for long training curves


def ensure_experiment(client: MlflowClient, name: str, repo: Path) -> str:
    """Experiment id; a new one keeps artifacts in `<repo>/mlruns`.

    Created here, from the repository root, rather than by the first stage: a stage inside a temp experiment
    copy would otherwise put the artifact root inside a directory DVC deletes afterwards.
    """
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    return client.create_experiment(name, artifact_location=(repo / "mlruns").resolve().as_uri())


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
        "sara.run": p.run,
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


def _previous_stage_run(client: MlflowClient, experiment_id: str, stage: str, params: Params) -> Run | None:
    """Latest finished run of `stage` whose logged params equal `params` on every key it logged."""
    mine = flatten("", params)
    candidates = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`dvc.stage` = '{stage}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=200,
    )
    for run in candidates:
        if "sara.kind" in run.data.tags:  # a sweep or sweep-point run carries its targets' dvc.stage tag: not a stage
            continue
        if all(mine[k] == v for k, v in run.data.params.items() if k in mine):
            return run
    return None


def _copy_metrics(client: MlflowClient, source: Run, target_run_id: str, prefix: str) -> dict[str, float]:
    copied: list[Metric] = []
    finals: dict[str, float] = {}
    for key, value in source.data.metrics.items():
        history = client.get_metric_history(source.info.run_id, key)[-MAX_POINTS_PER_KEY:]
        copied.extend(Metric(f"{prefix}/{key}", m.value, m.timestamp, m.step) for m in history)
        finals[f"{prefix}/{key}"] = value
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
    for stage in stages:
        run = nested.get(stage)
        if run is not None and run.info.status != "FINISHED":
            continue
        if run is None:
            run = _previous_stage_run(client, experiment_id, stage, point.params)
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


def comparison_markdown(rows: list[dict[str, Any]]) -> str:
    """Markdown table: every metric per (method, routing operator, lam_trd), mean ± spread over seeds."""
    import pandas as pd

    if not rows:
        return "no sweep points\n"
    df = pd.DataFrame(rows)
    metric_cols = sorted(c for c in df.columns if "/" in c)
    keys = ["method", "routing_op", "lam_trd"]
    header = [*keys, "seeds", *metric_cols]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for key, group in df.groupby(keys, sort=True):
        cells = [str(k) for k in key] + [str(len(group))]
        for col in metric_cols:
            values = group[col].dropna()
            if values.empty:
                cells.append("-")
            elif len(values) == 1:
                cells.append(f"{values.iloc[0]:.4g}")
            else:
                cells.append(f"{values.mean():.4g} ± {values.std(ddof=0):.2g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# The MLflow UI's side panels that cover the page (the assistant); closed before a screenshot.
UI_PANELS_TO_CLOSE = ('button[aria-label="Close"]',)


def compare_url(base_url: str, run_ids: list[str], experiment_ids: list[str]) -> str:
    """The MLflow UI's compare view of `run_ids`: parallel coordinates, params, metrics and tags side by side."""
    runs = json.dumps(run_ids, separators=(",", ":"))
    experiments = json.dumps(experiment_ids, separators=(",", ":"))
    return f"{base_url.rstrip('/')}/#/compare-runs?runs={runs}&experiments={experiments}"


def runs_url(base_url: str, experiment_id: str) -> str:
    """The experiment's runs table (sweeps expand into their points, points into their stages)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs"
