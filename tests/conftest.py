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
