"""Prefect flow `sara`: an ablation sweep over methods x routing operators x seeds x lambda_TRD, run by DVC.

The flow body reads top to bottom:
  1. plan      validate every point's params (fail before any work) and split the DAG: shared stages, per-point stages
  2. shared    one `dvc exp run --temp` reproduces the stages every point needs, once
  3. points    one `dvc exp run --temp -S ...` per sweep point, concurrently; each in its own copy (no shared lock)
  4. summary   a comparison table on the MLflow parent run; the flow's return value is persisted

GPU-bound tasks carry the tag `gpu`: a Prefect tag concurrency limit (`gpu_slots`) bounds how many run at once.
Lock races retry; a stage's own error does not (it would fail the same way again).
"""

# No `from __future__ import annotations`: Prefect builds the parameter schema from the evaluated hints.

import os
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run, task_run

from flows.dag import load_dag
from flows.dvc_runner import DvcError, exp_run
from flows.env import apply_orchestration_defaults
from flows.plan import PointPlan, SweepPlan, build_points, effective_params, params_file_overrides, plan_sweep, read_yaml
from sara.env import repo_root
from sara.runs import DAG_RUNS, MethodName, RoutingOp

GPU_TAG = "gpu"
RETRIES = 2
RETRY_DELAYS = [10, 60]  # seconds; a concurrent git/DVC/SQLite lock is released within seconds


def is_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry condition: only failures another process caused (a lock), never a stage's own error."""
    exc = state.data if isinstance(getattr(state, "data", None), BaseException) else None
    return isinstance(exc, DvcError) and exc.transient


def headline(metrics: dict[str, float]) -> str:
    """The point's headline evaluation numbers for the log, e.g. `rubric/grounded/TA_mean 2.31, ...`."""
    from flows.mlflow_runs import HEADLINE_METRICS

    shown = [f"{k} {metrics[k]:.4g}" for k in HEADLINE_METRICS if k in metrics]
    return ", ".join(shown) or f"{len(metrics)} metrics, no evaluation metric (targets without rubric/vbench)"


def failure_reason(exc: Any) -> str:
    """One line: the stage's own last words for a DVC failure (not DVC's `failed to reproduce` line)."""
    if isinstance(exc, DvcError):
        return exc.reason
    return str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__


def ensure_gpu_limit(slots: int | None) -> int:
    """Make sure the `gpu` tag concurrency limit exists: set it to `slots`, or keep the server's value (default 1)."""
    from prefect import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        if slots is not None:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=slots)  # upsert
            return slots
        try:
            return client.read_concurrency_limit_by_tag(GPU_TAG).concurrency_limit
        except ObjectNotFound:
            client.create_concurrency_limit(tag=GPU_TAG, concurrency_limit=1)
            return 1


def tracking_uri(repo: Path) -> str:
    """MLflow URI with an absolute path: a temp experiment's stages run in another directory."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo / 'mlflow.db'}"
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = f"sqlite:///{(repo / uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _stage_env(uri: str, parent_run_id: str, sweep_id: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MLFLOW_TRACKING_URI=uri,
        SARA_MLFLOW_PARENT_RUN_ID=parent_run_id,
        SARA_SWEEP_ID=sweep_id,
        SARA_PREFECT_FLOW_RUN_ID=str(flow_run.id or ""),
        SARA_PREFECT_TASK_RUN_ID=str(task_run.id or ""),
    )
    return env


@task(name="plan", cache_policy=NO_CACHE, persist_result=False)  # the plan is rebuilt from its inputs
def plan_task(
    repo: Path,
    sweep_id: str,
    methods: list[MethodName],
    ops: list[RoutingOp],
    seeds: list[int],
    lam_trd: list[float],
    params_file: str,
    overrides: dict[str, Any],
    targets: list[str] | None,
) -> SweepPlan:
    logger = get_run_logger()
    dag = load_dag(repo)
    points = build_points(methods, ops, seeds, lam_trd)
    plan = plan_sweep(repo, dag, sweep_id, points, params_file, overrides, targets)
    logger.info("DAG: %s", ", ".join(dag.topological(set(dag.stages))))
    logger.info("shared stages (once): %s", ", ".join(plan.shared_stages) or "-")
    if plan.rerun_per_point:
        logger.warning(
            "stages with a `persist` output cannot be restored from DVC's run cache and run again in every point: %s",
            ", ".join(plan.rerun_per_point),
        )
    for p in plan.points:
        logger.info("point %s: targets %s, own stages %s", p.point.label, p.targets, p.stages or "-")
    return plan


@task(
    name="shared-stages",
    tags=[GPU_TAG],
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
)
def shared_task(plan: SweepPlan, uri: str, parent_run_id: str) -> dict[str, Any]:
    logger = get_run_logger()
    result = exp_run(
        plan.repo,
        f"{plan.sweep_id}-shared",
        plan.shared_targets,
        plan.shared_overrides,
        _stage_env(uri, parent_run_id, plan.sweep_id),
        logger.info,
    )
    return {"exp_name": result.name, "exp_rev": result.rev, "ran": result.ran, "cached": result.cached}


@task(
    name="sweep-point",
    tags=[GPU_TAG],
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_condition_fn=is_transient,
    cache_policy=NO_CACHE,
    task_run_name="{point.point.label}",
)
def point_task(plan: SweepPlan, point: PointPlan, uri: str, experiment_id: str, parent_run_id: str) -> dict[str, Any]:
    from flows.mlflow_runs import collect_point_metrics, start_point_run

    logger = get_run_logger()
    client = _client(uri)
    child = _existing_child(client, experiment_id, parent_run_id, point.exp_name) or start_point_run(
        client, experiment_id, parent_run_id, plan, point, str(flow_run.id or ""), str(task_run.id or "")
    )
    env = _stage_env(uri, child, plan.sweep_id)
    started = time.perf_counter()
    try:
        result = exp_run(plan.repo, point.exp_name, point.targets, point.overrides, env, logger.info)
        metrics = collect_point_metrics(client, experiment_id, child, point, point.stages or point.targets)
        client.set_tag(child, "dvc.exp_rev", result.rev or "-")
        client.set_tag(child, "dvc.ran", ",".join(result.ran) or "-")
        client.set_tag(child, "dvc.cached", ",".join(result.cached) or "-")
        client.log_metric(child, "sweep/point_wall_s", time.perf_counter() - started)
    except BaseException:
        client.set_terminated(child, "FAILED")
        raise
    client.set_terminated(child, "FINISHED")
    logger.info("point %s: %d metrics, ran %s", point.point.label, len(metrics), result.ran or "nothing (cached)")
    return {
        "label": point.point.label,
        "run": point.point.run.name,
        "method": point.point.method,
        "routing_op": point.point.op,
        "seed": point.point.seed,
        "lam_trd": point.point.lam_trd,
        "mlflow_run_id": child,
        "exp_name": result.name,
        "exp_rev": result.rev,
        "ran": result.ran,
        "cached": result.cached,
        "metrics": metrics,
    }


def _existing_child(client: Any, experiment_id: str, parent_run_id: str, exp_name: str) -> str | None:
    """The child run a previous attempt of the same task opened (a retry continues it)."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`dvc.exp_name` = '{exp_name}'",
    )
    if not runs:
        return None
    client.update_run(runs[0].info.run_id, status="RUNNING")
    return runs[0].info.run_id


@task(name="summary", cache_policy=NO_CACHE)
def summary_task(uri: str, experiment_id: str, parent_run_id: str, sweep_id: str, repo: Path) -> str:
    """The comparison by routing operator: on the MLflow parent (table + plot), as a Prefect artifact, in the log."""
    import tempfile

    from prefect.artifacts import create_markdown_artifact

    from flows.mlflow_runs import comparison_markdown, comparison_plot, comparison_rows, run_url

    client = _client(uri)
    rows = comparison_rows(client, experiment_id, parent_run_id)
    table = comparison_markdown(rows)
    client.log_text(parent_run_id, table, "comparison.md")
    client.log_dict(parent_run_id, {"points": rows}, "comparison.json")
    with tempfile.TemporaryDirectory() as tmp:
        plot = comparison_plot(rows, Path(tmp) / "comparison.png")
        if plot is not None:
            client.log_artifact(parent_run_id, str(plot))
    link = run_url(mlflow_ui_url(repo), experiment_id, parent_run_id)
    create_markdown_artifact(
        key=f"comparison-{_artifact_key(sweep_id)}",
        markdown=f"## Sweep {sweep_id}: comparison by routing operator\n\n{table}\n"
        f"MLflow sweep run (comparison.md, comparison.png, one child run per point): [{link}]({link})\n",
        description=f"sweep {sweep_id}: evaluation metrics per method x routing operator x lambda_TRD",
    )
    get_run_logger().info("comparison by routing operator (MLflow: %s):\n%s", link, table)
    return table


def _artifact_key(sweep_id: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    import re

    return re.sub(r"[^a-z0-9-]", "-", sweep_id.lower())


def mlflow_ui_url(repo: Path) -> str:
    """The MLflow UI the services helper started for this checkout, else `SARA_MLFLOW_UI_URL`, else port 5000."""
    from flows.services import read_state

    ui = next((s.url for s in read_state(repo) if s.name == "mlflow"), None)
    return os.environ.get("SARA_MLFLOW_UI_URL") or ui or "http://127.0.0.1:5000"


@flow(name="sara", persist_result=True, result_serializer="json", log_prints=True)
def sara(
    methods: list[MethodName] | None = None,
    ops: list[RoutingOp] | None = None,
    seeds: list[int] | None = None,
    lam_trd: list[float] | None = None,
    params_file: str = "params.yaml",
    overrides: dict[str, Any] | None = None,
    targets: list[str] | None = None,
    sweep_name: str | None = None,
    gpu_slots: int | None = None,
    repo: str | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Run an ablation sweep through DVC and track it in MLflow.

    Args:
        methods: methods to train (default ["sara"]).
        ops: routing operators of method sara (default: those of the run registry's DAG runs, sara.runs.DAG_RUNS).
        seeds: values of train.seed (default: the params' train.seed).
        lam_trd: values of trd.lam_trd (default: the params' trd.lam_trd).
        params_file: params file relative to the repository; its differences from params.yaml become overrides.
        overrides: dotted params keys -> values applied to every point (e.g. {"train.steps": 2}).
        targets: DVC stages each point reproduces; may use {run}, {method}, {op}, {seed}
            (default: the per-run stages of dvc.yaml, e.g. train_dit-{run}, or the whole pipeline while there are none).
        sweep_name: names the MLflow parent run and the DVC experiments (default: time and flow run id).
        gpu_slots: sets the `gpu` tag concurrency limit (default: keep the server's, 1 when unset).
        repo: repository root (default: the serve process's repository).
        dry_run: plan and validate only.
    """
    started = time.perf_counter()
    root = Path(repo).resolve() if repo else repo_root()
    apply_orchestration_defaults(root)
    logger = get_run_logger()
    overrides = dict(overrides or {})
    # Defaults of the swept axes come from the params the points would otherwise see.
    base = effective_params(
        read_yaml(root / "params.yaml", "params file"),
        {**params_file_overrides(root, params_file), **overrides},
        f"{params_file} + overrides",
    )
    methods = list(methods or ["sara"])
    ops = list(ops or [r.op for r in DAG_RUNS if r.uses_saliency])
    seeds = list(seeds or [base.train.seed])
    lam_trd = list(lam_trd or [base.trd.lam_trd])
    sweep_id = sweep_name or f"{time.strftime('%Y%m%d-%H%M%S')}-{str(flow_run.id or 'local')[:8]}"
    spec = {"methods": methods, "ops": ops, "seeds": seeds, "lam_trd": lam_trd, "params_file": params_file}

    plan = plan_task(root, sweep_id, methods, ops, seeds, lam_trd, params_file, overrides, targets)
    if dry_run:
        return {
            "sweep_id": sweep_id,
            "dry_run": True,
            "shared_stages": plan.shared_stages,
            "points": {p.point.label: {"targets": p.targets, "stages": p.stages} for p in plan.points},
        }

    slots = ensure_gpu_limit(gpu_slots)
    logger.info("sweep %s: %d points, gpu slots %d", sweep_id, len(plan.points), slots)
    uri = tracking_uri(root)
    from flows.mlflow_runs import ensure_experiment, start_sweep_run

    client = _client(uri)
    experiment_id = ensure_experiment(client, plan.experiment, root)
    parent = start_sweep_run(client, experiment_id, plan, str(flow_run.id or ""), spec)
    try:
        shared = shared_task(plan, uri, parent) if plan.shared_targets else None
        futures = [point_task.submit(plan, p, uri, experiment_id, parent) for p in plan.points]
        label_of = {id(f): p.point.label for p, f in zip(plan.points, futures)}
        reasons: dict[str, str] = {}
        for done, future in enumerate(as_completed(futures), 1):  # progress as each point finishes
            label = label_of[id(future)]
            if future.state.is_completed():
                logger.info("[%d/%d] point %s finished: %s", done, len(futures), label, headline(future.result()["metrics"]))
            else:
                reasons[label] = failure_reason(future.result(raise_on_failure=False))
                logger.error("[%d/%d] point %s FAILED: %s", done, len(futures), label, reasons[label])
        points = [f.result() for f in futures if f.state.is_completed()]
        failed = [f"{p.point.label} ({reasons[p.point.label]})" for p, f in zip(plan.points, futures) if not f.state.is_completed()]
        table = summary_task(uri, experiment_id, parent, sweep_id, root)
    except BaseException:
        client.set_terminated(parent, "FAILED")
        raise
    wall_s = time.perf_counter() - started
    client.log_metric(parent, "sweep/wall_s", wall_s)
    client.log_metric(parent, "sweep/points", len(points))
    client.set_terminated(parent, "FAILED" if failed else "FINISHED")
    if failed:
        raise RuntimeError(f"sweep {sweep_id}: points failed: {'; '.join(failed)}")
    return {
        "sweep_id": sweep_id,
        "experiment": plan.experiment,
        "experiment_id": experiment_id,
        "parent_run_id": parent,
        "tracking_uri": uri,
        "shared": shared,
        "points": points,
        "comparison": table,
        "wall_s": wall_s,
    }
