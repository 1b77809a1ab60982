"""The deployment path once, as a user runs it from a fresh clone.

`python -m flows.services start` (Prefect server + `flows.serve`), then `prefect deployment run
sara/ablation-sweep --param ...`, on the real pipeline's cheap stages (data, masks) with the micro profile; then
the runs are checked in MLflow and the services stopped.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from flows.services import alive, port_free, read_state
from flows_testlib import PortTaken, clone_repo, on_a_free_port, port_taken

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow(wall_s=106)  # seconds on the 2-core machine, mostly waiting on servers: handed out first


def _clean_env(clone: Path) -> dict[str, str]:
    """The user's shell: nothing pointing at this checkout's database or another Prefect server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "SARA_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # an activated venv
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{clone / 'mlflow.db'}"
    return env


def _run(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="needs the project's git repository to clone")
def test_deployment_runs_a_sweep_from_a_fresh_clone(tmp_path: Path) -> None:
    clone = clone_repo(ROOT, tmp_path / "clone")
    env = _clean_env(clone)
    services = [sys.executable, "-m", "flows.services"]

    def start(port: int) -> subprocess.CompletedProcess[str]:
        started = _run([*services, "start", "--prefect-port", str(port), "--gpu-slots", "2", "--no-mlflow"],
                       clone, env, timeout=300)  # fmt: skip
        logs = [p.read_text(errors="replace") for p in (clone / ".prefect" / "services").glob("*.log")]
        if started.returncode != 0 and port_taken(started.stdout, started.stderr, *logs):
            _run([*services, "stop"], clone, env, timeout=120)  # whatever did start
            raise PortTaken(port)
        return started

    prefect_port, started = on_a_free_port(start)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert f"prefect  http://127.0.0.1:{prefect_port}" in started.stdout
        api = f"http://127.0.0.1:{prefect_port}/api"
        run = _run(
            [
                "prefect", "deployment", "run", "sara/ablation-sweep",
                "--param", 'ops=["and","or"]',
                "--param", "params_file=flows/profiles/micro.yaml",
                "--param", 'targets=["masks"]',
                "--param", "sweep_name=e2e",
                "--watch", "--watch-timeout", "400",
            ],
            clone, {**env, "PREFECT_API_URL": api}, timeout=450,
        )  # fmt: skip
        serve_log = (clone / ".prefect" / "services" / "serve.log").read_text()
        assert run.returncode == 0 and "Completed" in run.stdout, run.stdout + run.stderr + serve_log[-6000:]
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", run.stdout).group(1)

        client = MlflowClient(f"sqlite:///{clone / 'mlflow.db'}")
        exp = client.get_experiment_by_name("sara")
        (parent,) = client.search_runs([exp.experiment_id], "tags.`sara.kind` = 'sweep'")
        assert parent.info.status == "FINISHED" and parent.data.tags["prefect.flow_run_id"] == flow_run_id
        children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
        points = {r.data.tags["sara.routing_op"]: r for r in children if r.data.tags.get("sara.kind") == "sweep_point"}
        assert set(points) == {"and", "or"}
        for op, child in points.items():
            assert child.data.tags["dvc.stage"] == "masks" and child.data.params["data.n_train"] == "2"
            # Pair-budget coverage of every operator, from the masks stage the shared experiment ran.
            assert child.data.metrics[f"masks/coverage.{op}.fg_fg"] > 0
        shared = {r.data.tags["dvc.stage"] for r in children if "sara.kind" not in r.data.tags}
        assert shared == {"data", "masks"}  # reproduced once, under the sweep's parent run

        status = _run([*services, "status"], clone, env, timeout=60)
        assert status.returncode == 0 and "healthy" in status.stdout, status.stdout
    finally:
        recorded = read_state(clone)
        stopped = _run([*services, "stop"], clone, env, timeout=120)
    assert stopped.returncode == 0 and "prefect" in stopped.stdout, stopped.stdout + stopped.stderr
    assert recorded and not any(alive(s.pid) for s in recorded)
    assert port_free(prefect_port)
