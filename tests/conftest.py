"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with its schema in place: creating one runs MLflow's migrations (1.5-2.5 s on
    the 2-core CI machine), so each test copies this file instead."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.tracking.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path):
    """MLflow pointed at a fresh SQLite database in the test's temp dir; yields a client for it."""
    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
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
