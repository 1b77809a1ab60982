"""Environment for orchestration processes: quiet, offline, local.

Everything here is a default (values already in the environment win), so a test can point Prefect at a temp
home and MLflow at a temp database. `PREFECT_HOME` lives in the repository's git-ignored `.prefect/`, so a fresh
clone needs no global Prefect state.
"""

from __future__ import annotations

import os
from pathlib import Path

from sara.env import OFFLINE_DEFAULTS, repo_root

PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # the serve process picks a new flow run up in ~1 s instead of 10 s
    "PREFECT_UI_ENABLED": "true",
    "PREFECT_LOGGING_LEVEL": "INFO",
}


def prefect_home(root: Path | None = None) -> Path:
    return (root or repo_root()) / ".prefect"


def orchestration_env(root: Path | None = None, base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of `base` (default: os.environ) with the offline, quiet and local defaults filled in."""
    root = root or repo_root()
    env = dict(os.environ if base is None else base)
    for key, value in {**OFFLINE_DEFAULTS, **PREFECT_DEFAULTS}.items():
        env.setdefault(key, value)
    env.setdefault("PREFECT_HOME", str(prefect_home(root)))
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    return env


def apply_orchestration_defaults(root: Path | None = None) -> None:
    """Fill this process's environment with `orchestration_env` defaults (never overriding a set value)."""
    for key, value in orchestration_env(root).items():
        os.environ.setdefault(key, value)
