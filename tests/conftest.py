"""Fixtures shared by several test files."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest


@pytest.fixture()
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """MLflow pointed at a fresh SQLite database in the test's temp dir; yields a client for it."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield mlflow.tracking.MlflowClient(uri)
    mlflow.set_tracking_uri(None)


@pytest.fixture()
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-run evaluation metrics files (`outputs/metrics/<run>/<stage>.json`) go to the test's temp dir."""
    import sara.stages.per_run as per_run

    path = tmp_path / "metrics"
    monkeypatch.setattr(per_run, "METRICS_DIR", path)
    return path
