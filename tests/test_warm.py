"""Warm start (sara/warm.py): a stage run by DVC is forked from an interpreter that has imported MLflow, torch,
diffusers and transformers once, instead of importing them itself (2.5-15 CPU s per stage process at the embedded
scale, ~50 stages per `dvc repro`: benchmarks/stage_startup.md)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def warm_env(tmp_path: Path):
    """Environment for `sara` commands served warm from a server private to this test; the server is stopped after."""
    env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    env.update(SARA_WARM="1", SARA_WARM_DIR=str(tmp_path / "warm"), SARA_WARM_USAGE=str(tmp_path / "usage.jsonl"),
               PYTHONPATH=str(ROOT))
    yield env
    for lock in (tmp_path / "warm").glob("*.lock"):
        pid = lock.read_text().strip()
        if pid.isdigit():
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def sara(env: dict, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sara.cli", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def wait_for_server(env: dict) -> None:
    deadline = time.monotonic() + 90
    while not list(Path(env["SARA_WARM_DIR"]).glob("*.sock")):
        assert time.monotonic() < deadline, "the warm server did not start"
        time.sleep(0.2)


def served(env: dict) -> list[dict]:
    path = Path(env["SARA_WARM_USAGE"])
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


@pytest.mark.slow  # the server imports torch, MLflow, diffusers and transformers once (~10 CPU s)
def test_a_stage_after_the_first_is_forked_from_the_warm_server(warm_env: dict):
    """Every stage process imported MLflow, torch and the model libraries itself. The first command starts the
    server and runs itself; the next ones are served, with their own output, error line and exit status."""
    params = str(ROOT / "params.yaml")
    first = sara(warm_env, "check-params", "--params", params)
    assert first.returncode == 0 and served(warm_env) == []
    wait_for_server(warm_env)
    ok = sara(warm_env, "check-params", "--params", params)
    bad = sara(warm_env, "check-params", "--params", "/nonexistent/params.yaml")
    assert ok.returncode == 0 and ok.stdout == first.stdout
    assert bad.returncode == 2 and bad.stderr.strip() == "error: params file not found: /nonexistent/params.yaml"
    assert [u["argv"][0] for u in served(warm_env)] == ["check-params", "check-params"]


@pytest.mark.slow
def test_a_served_stage_runs_the_code_on_disk_and_gets_its_signals(warm_env: dict, tmp_path: Path):
    """First-party code is never kept by the server: an edit between two commands is seen by the second. A signal
    to the command reaches the stage (SIGTERM: exit 143, as a fresh process)."""
    src = tmp_path / "src"
    for package in ("sara", "evaluation", "flows"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {**warm_env, "PYTHONPATH": str(src)}
    sara(env, "check-params", "--params", str(ROOT / "params.yaml"), cwd=tmp_path)  # `-m` imports from the cwd first
    wait_for_server(env)
    stage = src / "sara" / "stages" / "check_params.py"
    stage.write_text(stage.read_text().replace("every section and key is valid", "EDITED"))
    assert "EDITED" in sara(env, "check-params", "--params", str(ROOT / "params.yaml"), cwd=tmp_path).stdout

    body = "def run(params: Params) -> None:\n"
    stage.write_text(stage.read_text().replace(body, body + "    import time\n\n    time.sleep(60)\n"))  # a stage that waits
    proc = subprocess.Popen([sys.executable, "-m", "sara.cli", "check-params", "--params", str(ROOT / "params.yaml")],
                            env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 143
    assert [u["argv"][0] for u in served(env)] == ["check-params"]  # the edited run; the stopped one died by SIGTERM


def test_torch_imported_before_the_scale_is_known_still_gets_one_thread():
    """torch reads OMP_NUM_THREADS when it is imported: in a process forked with torch already imported, setting the
    variable alone left the embedded stage on two threads."""
    code = ("import os, torch; torch.set_num_threads(2); from sara.env import one_cpu_thread_for_tiny_models; "
            "one_cpu_thread_for_tiny_models('embedded'); assert torch.get_num_threads() == 1, torch.get_num_threads()")
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)})


def test_the_warm_start_is_for_stages_run_by_dvc_on_a_machine_without_a_gpu():
    from sara.warm import enabled

    dvc = {"DVC_STAGE": "rubric-base"}
    assert enabled(dvc, gpu=False) and not enabled({}, gpu=False)
    assert not enabled(dvc, gpu=True)  # a CUDA driver initialised before a fork is unusable in the child
    assert not enabled({**dvc, "PYTEST_CURRENT_TEST": "t"}, gpu=False) and not enabled({**dvc, "LOCAL_RANK": "0"}, gpu=False)
    assert not enabled({**dvc, "SARA_WARM": "0"}, gpu=False) and enabled({"SARA_WARM": "1"}, gpu=True)
