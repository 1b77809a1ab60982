"""Process-wide defaults that keep every tool offline and quiet.

Set by the project (at `import sara`) rather than left to the user: no model hub, no telemetry, and MLflow
writing to `mlflow.db` in the repository root. Values already in the environment win, so a user can point
MLflow at a server or a test at a temp database.
"""

from __future__ import annotations

import os
from pathlib import Path

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # nothing may download weights
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",  # otherwise a daemon tries the network and leaks temp files
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding dvc.yaml; cwd when there is none."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file():
            return d
    return here


def workspace_root(start: Path | None = None) -> Path:
    """The checkout a stage runs for: `repo_root()`, or, inside a DVC temporary experiment copy
    (`<checkout>/.dvc/tmp/exps/standalone/tmp*/`, one per sweep point), the checkout that copy was made from.

    For git-ignored tools built once per checkout (the VBench venv), so each sweep point does not build its own.
    """
    root = repo_root(start)
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 4] == (".dvc", "tmp", "exps", "standalone"):
            return Path(*parts[:i])
    return root


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{repo_root() / 'mlflow.db'}")
