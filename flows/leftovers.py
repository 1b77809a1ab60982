"""What a killed run leaves behind, cleared before `sara repro` starts.

A stage killed with -9 cannot clean up: its MLflow run stays RUNNING and the folder it was building stays as
`<output parent>/.<name>.tmp<pid>`. The stage's next run clears both (`sara.tracking.close_orphans`,
`sara.io.atomic_dir`), but when DVC restores that stage from its run cache the stage's command never runs again.
So `sara repro` sweeps first: every RUNNING run whose process is gone (on this host) is marked KILLED, and every
temporary sibling of a pipeline output whose process is gone is removed.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from sara.env import workspace_root
from sara.io import remove_stale_temps


def pipeline_outputs(repo: Path) -> list[str]:
    """Every path dvc.yaml declares as an output (outs, metrics, plots) of a stage."""
    stages = (yaml.safe_load((repo / "dvc.yaml").read_text()) or {}).get("stages", {})
    paths: list[str] = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key, []) or []:
                paths.append(next(iter(item)) if isinstance(item, dict) else str(item))
    return paths


def tracking_uri(repo: Path) -> str:
    """The tracking store the stages of `repo` log to: the user's MLFLOW_TRACKING_URI, else `<repo>/mlflow.db`
    (what `import sara` sets for a process started in the repository; this one may run elsewhere)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not uri or uri == f"sqlite:///{workspace_root() / 'mlflow.db'}":
        uri = f"sqlite:///{workspace_root(repo) / 'mlflow.db'}"
    return uri


def sweep(repo: Path, experiment: str, log=print) -> None:
    """Mark orphaned MLflow runs KILLED and remove stale temporary output folders (see the module docstring)."""
    removed = [p for out in pipeline_outputs(repo) for p in remove_stale_temps(repo / out)]
    for p in removed:
        log(f"[repro] removed {p.relative_to(repo)}: left by a process that is gone")
    uri = tracking_uri(repo)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        return  # no store yet: nothing can be left RUNNING
    import mlflow

    from sara.tracking import open_store, sweep_orphans

    mlflow.set_tracking_uri(uri)
    open_store()
    for name in sweep_orphans(experiment):
        log(f"[repro] MLflow run {name} was left RUNNING by a process that is gone: marked KILLED")
