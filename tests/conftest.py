"""Fixtures shared by several test files, and the rule that makes a test `slow` by what it builds."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pytest

pytest_plugins = ["xdist_files"]  # under `-n 2`: whole test files per worker, the longest first


def pytest_configure(config: pytest.Config) -> None:
    """One torch intra-op thread in the test process and in every process it starts (OMP_NUM_THREADS, unless set).

    The suite's tensors are tiny, and on the shared 2-core CI machine torch's default (a thread per core) spins both
    threads against whatever else runs: test_conventions took 64 s with two threads and 10-14 s with one, one after
    the other at a load average of 2.6 (docs/testing.md). Under pytest-xdist each worker is one such process."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite database with its schema in place: creating one runs MLflow's migrations (1.5-2.5 s on
    the 2-core CI machine), so each test copies this file instead."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    mlflow.tracking.MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture()
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_template: Path):
    """MLflow pointed at a fresh SQLite database in the test's temp dir; yields a client for it.

    The project's experiment is created here with its artifacts in the temp dir too: created by a stage, MLflow's
    SQLite store would put them under ./mlruns of the working directory, the checkout."""
    from sara.config import load_params

    shutil.copy(mlflow_template, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    client = mlflow.tracking.MlflowClient(uri)
    experiment = load_params(Path(__file__).resolve().parents[1] / "params.yaml").project.mlflow_experiment
    client.create_experiment(experiment, artifact_location=(tmp_path / "mlartifacts").as_uri())
    yield client
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic clips and the tiny base DiT (stage2_testlib.make_workspace), built once for the whole session:
    every test that trains in it writes to its own subfolder and only reads `clips/` and `base/`."""
    from stage2_testlib import make_workspace

    return make_workspace(tmp_path_factory.mktemp("stage2"))


@pytest.fixture()
def metrics_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The per-run evaluation metrics files (`outputs/metrics/<run>/<stage>.json`) go to the test's temp dir."""
    import sara.stages.per_run as per_run

    path = tmp_path / "metrics"
    monkeypatch.setattr(per_run, "METRICS_DIR", path)
    return path


# Fixtures that build something heavy: a test that asks for one is `slow` whatever its own body does (one rule for
# every file, instead of a marker to remember per test). Measured set-up on the 2-core machine in docs/testing.md.
HEAVY_FIXTURES = {
    "workspace": "renders 4 clips and saves the tiny base DiT (stage2_testlib)",
    "micro_lab": "pretrains the micro lab corpus, VAE, encoder and base DiT (test_lab_pretrain)",
    "toy": "git + dvc init of the toy DAG (flows_testlib.make_toy_repo)",
    "prefect_harness": "starts a Prefect server",
    "tiny_project": "renders clips and writes masks, features and a tiny BERT (aligner_testlib)",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if set(getattr(item, "fixturenames", ())) & HEAVY_FIXTURES.keys():
            item.add_marker(pytest.mark.slow)
    # under xdist, tests/xdist_files.py then orders the files, the longest first (it runs after this hook)
