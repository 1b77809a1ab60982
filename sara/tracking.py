"""MLflow: the one helper every stage uses to open a run, log params, metrics and artifacts.

A run is named `<stage>` or `<stage>/<variant>` (e.g. `train_dit/sara-or`), lives in the experiment named by
`project.mlflow_experiment`, carries the typed params of the sections the stage reads, the git revision, the
DVC stage name and the scale ("embedded" outputs prove plumbing, not science), and is marked FAILED when the
stage raises. Orchestration may pass a parent run id (Prefect sweeps) through `SARA_MLFLOW_PARENT_RUN_ID`.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from sara.config import Params
from sara.env import repo_root

# Environment variables set by orchestration (Prefect sweeps) -> MLflow tags on every stage run.
ORCHESTRATION_TAGS = {
    "SARA_PREFECT_FLOW_RUN_ID": "prefect.flow_run_id",
    "SARA_PREFECT_TASK_RUN_ID": "prefect.task_run_id",
    "SARA_SWEEP_ID": "sara.sweep_id",
}

SCALE_NOTE = {
    "embedded": "embedded default: tiny random-init models on synthetic clips; proves the plumbing, not the science",
    "gpu": "gpu scale: random-init models at real token counts; timings, not quality",
    "paper": "paper scale: real weights",
}


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def revision_tags() -> dict[str, str]:
    """git commit (+dirty flag) and the DVC lock hash, so a run can be traced back to code and data."""
    tags: dict[str, str] = {}
    commit = _git("rev-parse", "HEAD")
    if commit:
        tags["git.commit"] = commit
        tags["git.dirty"] = str(bool(_git("status", "--porcelain", "--untracked-files=no")))
    lock = repo_root() / "dvc.lock"
    if lock.is_file():
        import hashlib

        tags["dvc.lock_md5"] = hashlib.md5(lock.read_bytes()).hexdigest()
    return tags


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """Flatten nested params into `section.key` strings (MLflow params are flat strings)."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        out: dict[str, str] = {}
        for k, v in value.items():
            out.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return out
    if isinstance(value, list) and value and isinstance(value[0], Mapping):
        return {prefix: json.dumps(value, default=str)[:6000]}
    return {prefix: str(value)[:6000]}


@contextmanager
def stage_run(
    stage: str,
    params: Params,
    sections: list[str],
    *,
    variant: str | None = None,
    tags: Mapping[str, str] | None = None,
    extra_params: Mapping[str, Any] | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """Open the MLflow run for one stage; log `sections` of params; mark FAILED if the body raises.

    `sections` must list exactly the params sections the stage reads, the same ones dvc.yaml lists.
    """
    mlflow.set_experiment(params.project.mlflow_experiment)
    name = f"{stage}/{variant}" if variant else stage
    all_tags = {
        "sara.stage": stage,
        "sara.scale": params.project.scale,
        "sara.scale_note": SCALE_NOTE[params.project.scale],
        # DVC sets DVC_STAGE (the stage's address, e.g. `train_dit@sara-or`) for every command it runs.
        "dvc.stage": os.environ.get("SARA_DVC_STAGE")
        or os.environ.get("DVC_STAGE")
        or (f"{stage}@{variant}" if variant else stage),
        **revision_tags(),
        **(tags or {}),
    }
    for env_key, tag in ORCHESTRATION_TAGS.items():
        if os.environ.get(env_key):
            all_tags[tag] = os.environ[env_key]
    parent = os.environ.get("SARA_MLFLOW_PARENT_RUN_ID")
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    if variant:
        all_tags["sara.variant"] = variant
    run = mlflow.start_run(run_name=name, tags=all_tags)
    try:
        flat: dict[str, str] = {}
        for section in sections:
            flat.update(flatten(section, getattr(params, section)))
        flat.update(flatten("", dict(extra_params or {})))
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps one batch at 100 params
            mlflow.log_params(dict(items[i : i + 100]))
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log finite scalar metrics to the active run; non-finite values are logged as tags so nothing is lost."""
    finite = {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}
    if finite:
        mlflow.log_metrics(finite, step=step)
    bad = {k: str(v) for k, v in metrics.items() if v is not None and not math.isfinite(float(v))}
    if bad:
        mlflow.set_tags({f"nonfinite.{k}": v for k, v in bad.items()})


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path)
    elif path.is_file():
        mlflow.log_artifact(str(path), artifact_path)


def client() -> MlflowClient:
    return MlflowClient()


def run_identity(params: Params, run: str) -> tuple[dict[str, str], dict[str, str]]:
    """(MLflow params, MLflow tags) naming the model a per-run stage trains or evaluates.

    Every per-run stage run (`train_dit/<run>`, `sample/<run>`, `rubric/<run>`, ...) carries them, as the sweep's
    point runs do, so runs group by `routing_op` and filter by `method`, `seed` or `lam_trd` in the MLflow UI even
    outside a sweep. `<run>` is `sara-<op>`, a method without routing (`sft`: routing operator `none`), `base` (the
    untrained model) or `oracle` (the renderer's ground truth). seed and lam_trd are the run's `train.seed` and
    `trd.lam_trd`.
    """
    method, _, op = run.partition("-")
    identity = {
        "method": method,
        "routing_op": op if method == "sara" and op else "none",
        "seed": str(params.train.seed),
        "lam_trd": f"{params.trd.lam_trd:g}",
    }
    tags = {"sara.run": run, **{f"sara.{k}": v for k, v in identity.items()}}
    return identity, tags
