"""MLflow: the one helper every stage uses to open a run, log params, metrics and artifacts.

A run is named `<stage>` or `<stage>/<variant>` (e.g. `train_dit/sara-or`), lives in the experiment named by
`project.mlflow_experiment`, carries the typed params of the sections the stage reads, the git revision, the
DVC stage name and the scale ("embedded" outputs prove plumbing, not science), and is marked FAILED when the
stage raises. Orchestration may pass a parent run id (Prefect sweeps) through `SARA_MLFLOW_PARENT_RUN_ID`.

Faults: local weights named in params are checked before a run is opened (a missing one opens no run); SIGTERM
(what a cancelled sweep sends) and SIGINT end the run as KILLED; a run left RUNNING by a process that died
(kill -9) is marked KILLED by the next run of the same name, which links to it (`sara.continues_run_id`); the
first use of a new SQLite tracking database is serialised across processes (its schema migration races).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from sara.config import Params
from sara.runs import NO_ROUTING, Run, parse_row
from sara.errors import TrackingStoreError
from sara.weights import check_local_weights
from sara.env import repo_root

# Environment variables set by orchestration (Prefect sweeps) -> MLflow tags on every stage run.
ORCHESTRATION_TAGS = {
    "SARA_PREFECT_FLOW_RUN_ID": "prefect.flow_run_id",
    "SARA_PREFECT_TASK_RUN_ID": "prefect.task_run_id",
    "SARA_SWEEP_ID": "sara.sweep_id",
}

# The MLflow UI (3.x) opens an experiment by its kind: "custom_model_development" on the runs table, while an
# untagged one may land on the GenAI overview (traces, token usage). Every stage and sweep marks the experiment.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}

SCALE_NOTE = {
    "embedded": "embedded default: tiny random-init models on synthetic clips; proves the plumbing, not the science",
    "gpu": "gpu scale: random-init models at real token counts; timings, not quality",
    "lab": "lab scale: every base model pretrained here on the synthetic domain, judged against the renderer's ground truth",
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


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: the stage stops like on Ctrl-C and its MLflow run ends as KILLED."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` inside the block (main thread only: Python runs handlers there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


STORE_TIMEOUT_S = 10.0  # per check of the store: an unavailable one is reported well within 30 s


def open_store() -> None:
    """Check that the tracking store can be written, then create (or open) it under an inter-process lock.

    An unreachable server, a locked or read-only database is one TrackingStoreError line naming the URI, within
    seconds (MLflow itself retries a dead server for minutes and reports a locked database as a long SQLAlchemy
    traceback). MLflow creates and migrates a new SQLite database on first use; two processes doing that at the
    same moment race on the schema migration (`sqlite3.OperationalError: duplicate column name`). The store is
    cached per process, so holding the lock for the first open is enough."""
    uri = mlflow.get_tracking_uri()
    try:
        _check_store(uri)
        if not uri.startswith("sqlite:///"):
            client().search_experiments(max_results=1)
            return
        from filelock import FileLock

        db = Path(uri[len("sqlite:///"):])
        with FileLock(f"{db}.lock"):
            client().search_experiments(max_results=1)
    except TrackingStoreError:
        raise
    except Exception as err:  # noqa: BLE001 - SQLAlchemy, MLflow and HTTP errors all mean "store unavailable"
        cause = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrackingStoreError(f"MLflow tracking store {uri} cannot be used: {cause}") from None


def _check_store(uri: str) -> None:
    """Raise TrackingStoreError when the store at `uri` cannot take a write now (see `open_store`)."""
    import sqlite3
    import urllib.error
    import urllib.request

    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise TrackingStoreError(f"MLflow tracking store {uri}: cannot create {db.parent}: {err.strerror}") from None
        for path in (db, db.parent):  # SQLite writes its journal next to the database
            if path.exists() and not os.access(path, os.W_OK):
                raise TrackingStoreError(f"MLflow tracking store {uri}: {path} is read-only (or immutable); "
                                         "make it writable or set MLFLOW_TRACKING_URI to another store")
        if db.exists():
            con = sqlite3.connect(db, timeout=STORE_TIMEOUT_S)
            try:
                con.execute("BEGIN IMMEDIATE")  # the write lock every MLflow write needs
                con.rollback()
            except sqlite3.OperationalError as err:
                raise TrackingStoreError(f"MLflow tracking store {uri}: {err} (for {STORE_TIMEOUT_S:.0f} s): another "
                                         "process holds it; stop it or set MLFLOW_TRACKING_URI to another store") from None
            finally:
                con.close()
    elif uri.startswith(("http://", "https://")):
        try:
            urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=STORE_TIMEOUT_S).close()
        except urllib.error.HTTPError:
            pass  # the server answered: it is there (it may want credentials for /health)
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            raise TrackingStoreError(f"MLflow tracking store {uri} is unreachable ({reason}); start the server "
                                     "or set MLFLOW_TRACKING_URI to a reachable store") from None


def _process_gone(run: Any) -> bool:
    """A RUNNING run whose process is no longer alive (same host); runs from other hosts are left alone."""
    tags = run.data.tags
    if tags.get("sara.host", socket.gethostname()) != socket.gethostname():
        return False
    pid = tags.get("sara.pid")
    if pid is None or not pid.isdigit():
        return True  # a run opened before processes were recorded: nothing can still be writing it
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return int(pid) == os.getpid()


def close_orphans(experiment_id: str, name: str) -> str | None:
    """Mark runs named `name` left RUNNING by a dead process KILLED; return the newest interrupted one (KILLED or
    FAILED, not yet continued) for the new run to link to."""
    c = client()
    runs = c.search_runs([experiment_id], filter_string=f"attributes.run_name = '{name}'",
                         order_by=["attributes.start_time DESC"], max_results=50)
    previous = None
    for run in runs:
        status = run.info.status
        if status == "RUNNING" and _process_gone(run):
            _mark_killed(c, run.info.run_id, "the next run")
            status = "KILLED"
        if previous is None and status in ("KILLED", "FAILED") and "sara.continued_in" not in run.data.tags:
            previous = run.info.run_id
        if status == "FINISHED" and previous is None:
            break  # an interruption before the last finished run is history, not a predecessor
    return previous


def mark_model_development(c: MlflowClient, experiment: Any) -> None:
    """Tag the experiment as model development (EXPERIMENT_KIND), once: the UI then opens on its runs."""
    for key, value in EXPERIMENT_KIND.items():
        if experiment.tags.get(key) != value:
            c.set_experiment_tag(experiment.experiment_id, key, value)
def _mark_killed(c: MlflowClient, run_id: str, found_by: str) -> None:
    c.set_tag(run_id, "sara.killed_by", f"process gone (found RUNNING by {found_by})")
    c.set_terminated(run_id, "KILLED")


def sweep_orphans(experiment: str) -> list[str]:
    """Mark every run of `experiment` left RUNNING by a process that is gone (this host) KILLED; return their
    names. `sara repro` calls it before it starts, so a run killed before DVC's run cache restored its stage (the
    stage's command then never runs again) does not stay RUNNING."""
    c = client()
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = c.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    gone = [r for r in runs if _process_gone(r)]
    for r in gone:
        _mark_killed(c, r.info.run_id, "sara repro")
    return [r.info.run_name for r in gone]


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

    `sections` must list exactly the params sections the stage reads, the same ones dvc.yaml lists; the local
    weights those sections name are checked first, so a missing directory opens no run.
    """
    check_local_weights(params, sections)
    open_store()
    experiment = mlflow.set_experiment(params.project.mlflow_experiment)
    mark_model_development(client(), experiment)
    name = f"{stage}/{variant}" if variant else stage
    previous = close_orphans(experiment.experiment_id, name)
    all_tags = {
        "sara.stage": stage,
        "sara.scale": params.project.scale,
        "sara.scale_note": SCALE_NOTE[params.project.scale],
        # DVC sets DVC_STAGE (the stage's address, e.g. `train_dit-sara-or`) for every command it runs.
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
    all_tags.update({"sara.pid": str(os.getpid()), "sara.host": socket.gethostname()})
    if previous:
        all_tags["sara.continues_run_id"] = previous
    run = mlflow.start_run(run_name=name, tags=all_tags)
    if previous:
        client().set_tag(previous, "sara.continued_in", run.info.run_id)
    try:
        flat: dict[str, str] = {}
        for section in sections:  # a section (`dit`) or a dotted key (`train.out_dir`)
            value: Any = params
            for part in section.split("."):
                value = getattr(value, part)
            flat.update(flatten(section, value))
        flat.update(flatten("", dict(extra_params or {})))
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps one batch at 100 params
            mlflow.log_params(dict(items[i : i + 100]))
        with _sigterm_raises():
            yield run
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM through `Terminated`
        mlflow.set_tag("sara.killed_by", str(err) or "SIGINT")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


# Parent tags a child run does not inherit: MLflow's own, and the process / predecessor bookkeeping of the parent.
NOT_INHERITED = ("mlflow.", "sara.pid", "sara.host", "sara.continues_run_id", "sara.continued_in")


@contextmanager
def child_run(name: str, *, params: Mapping[str, Any], tags: Mapping[str, str]) -> Iterator[mlflow.ActiveRun]:
    """A run nested under the active stage run: one row per item the stage measures (a run and training seed of
    `compare`), grouped under the parent in the MLflow UI. It inherits the parent's scale, git, DVC and
    orchestration tags, logs `params` and ends FINISHED, or FAILED if the body raises."""
    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError(f"child run {name!r} needs an open stage run (sara.tracking.stage_run)")
    inherited = {k: v for k, v in client().get_run(parent.info.run_id).data.tags.items() if not k.startswith(NOT_INHERITED)}
    with mlflow.start_run(run_name=name, nested=True, tags={**inherited, **tags}) as run:
        items = list(flatten("", dict(params)).items())
        for i in range(0, len(items), 100):  # MLflow caps one batch at 100 params
            mlflow.log_params(dict(items[i : i + 100]))
        yield run


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


def run_identity(params: Params, run: Run | str, train_seed: int | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """(MLflow params, MLflow tags) naming the model a per-run stage trains or evaluates.

    Every per-run stage run (`train_dit/<run>`, `sample/<run>`, `rubric/<run>`, ...) carries them, as the sweep's
    point runs do, so runs group by `routing_op` and filter by `method`, `seed` or `lam_trd` in the MLflow UI even
    outside a sweep. `run` is a Stage 2 run or the name of a row (`base`: the untrained model, `oracle`: the
    renderer's ground truth; method = the row's name, no routing). A method without an operator has `routing_op`
    NO_ROUTING, never the operator `none` (`sara-none`); a run with a TRD target names it (`target`). seed and
    lam_trd are the run's `train.seed` (or `train_seed`, for a run trained with another seed) and `trd.lam_trd`.
    """
    row = parse_row(run) if isinstance(run, str) else run
    identity = {
        "method": row.method if isinstance(row, Run) else row,
        "routing_op": row.routing_op if isinstance(row, Run) else NO_ROUTING,
        **({"target": row.target} if isinstance(row, Run) and row.spec.target else {}),
        "seed": str(params.train.seed if train_seed is None else train_seed),
        "lam_trd": f"{params.trd.lam_trd:g}",
    }
    tags = {"sara.run": str(row), **{f"sara.{k}": v for k, v in identity.items()}}
    return identity, tags
