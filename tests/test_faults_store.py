"""An unavailable MLflow store is one line naming the URI, within 30 s (issue: faults, round 2, finding 6).

Before: an immutable or locked `mlflow.db` gave 88-219-line SQLAlchemy tracebacks, and an unreachable
MLFLOW_TRACKING_URI printed nothing for minutes (MLflow retries a dead server with backoff).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT_S = 30.0


def _sara_check(tmp: Path, uri: str) -> tuple[subprocess.CompletedProcess, float]:
    """`sara data` with tiny params against the store `uri`: the first thing it does is open its MLflow run."""
    (tmp / "p.yaml").write_text(f"data:\n  out_dir: {tmp / 'clips'}\n  n_train: 1\n  n_heldout: 1\n")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "sara.cli", "data", "--params", str(tmp / "p.yaml")], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=240)
    return r, time.monotonic() - t0


def _assert_one_line(r: subprocess.CompletedProcess, uri: str, cause: str) -> None:
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert len(errors) == 1 and uri in errors[0] and cause in errors[0], errors


def _new_store(tmp: Path) -> str:
    """A tracking database that exists (MLflow's schema created), as after the first stage of a pipeline."""
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    code = ("from sara.config import Params\nfrom sara.tracking import stage_run\n"
            "with stage_run('first', Params(), ['project']): pass\n")
    subprocess.run([sys.executable, "-c", code], cwd=tmp, check=True, capture_output=True, timeout=240,
                   env={**os.environ, "MLFLOW_TRACKING_URI": uri, "PYTHONPATH": str(REPO)})
    return uri


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_a_read_only_tracking_database_is_one_line(tmp_path: Path):
    uri = _new_store(tmp_path)
    db = tmp_path / "mlflow.db"
    root = os.geteuid() == 0
    if root and subprocess.run(["chattr", "+i", str(db)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here")
    if not root:
        db.chmod(0o444)
    try:
        r, seconds = _sara_check(tmp_path, uri)
    finally:
        subprocess.run(["chattr", "-i", str(db)], capture_output=True) if root else db.chmod(0o644)
    _assert_one_line(r, uri, "read-only")
    assert seconds < LIMIT_S + 20  # the process start and imports included
    assert not (tmp_path / "clips").exists()


@pytest.mark.slow  # waits out MLflow's lock timeout
def test_a_locked_tracking_database_is_one_line_within_30_s(tmp_path: Path):
    uri = _new_store(tmp_path)
    holder = sqlite3.connect(tmp_path / "mlflow.db", check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing and never finishing
    try:
        r, seconds = _sara_check(tmp_path, uri)
    finally:
        holder.rollback()
        holder.close()
    _assert_one_line(r, uri, "locked")
    assert seconds < LIMIT_S + 20


@pytest.mark.slow  # waits out MLflow's connection retries
def test_an_unreachable_tracking_server_is_one_line_within_30_s(tmp_path: Path):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections into its backlog, never answers: a hung or firewalled server
    uri = f"http://127.0.0.1:{server.getsockname()[1]}"
    try:
        r, seconds = _sara_check(tmp_path, uri)
    finally:
        server.close()
    _assert_one_line(r, uri, "unreachable")
    assert seconds < LIMIT_S + 20
