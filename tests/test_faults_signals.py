"""Ctrl-C stops a whole run cleanly, one trainer per run state, orphans swept (issue: faults, round 2, 2-4).

Before: SIGTERM or Ctrl-C to `sara repro` killed the runner without a word while its stages (in their own
sessions) went on, and their MLflow runs ended FAILED; kill -9 of `dvc` alone left the stage training unlocked; a
run killed before DVC's run cache restored its stage stayed RUNNING, and a killed sampler's
`outputs/samples/.<run>.tmp<pid>` stayed forever.

The toy repository's stages open their MLflow run and build their output folder as every stage does
(`sara.tracking.stage_run`, `sara.io.atomic_dir`) and then wait, so a test can stop them mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml

from flows_testlib import init_repo
from stage2_testlib import write_params

REPO = Path(__file__).resolve().parents[1]

SLOW_STAGE = '''"""Toy stage: opens its MLflow run, builds its output folder, then waits SARA_TOY_SECONDS."""
import os, sys, time
from pathlib import Path
from sara.config import load_params
from sara.io import atomic_dir
from sara.tracking import stage_run

name = sys.argv[1]
with stage_run("slow", load_params("params.yaml"), ["project"], variant=name):
    with atomic_dir(f"out/{name}") as tmp:
        Path("pids").mkdir(exist_ok=True)
        Path(f"pids/{name}").write_text(str(os.getpid()))
        deadline = time.monotonic() + float(os.environ.get("SARA_TOY_SECONDS", "0"))
        while time.monotonic() < deadline:
            time.sleep(0.05)
        (tmp / "done").write_text(name)
'''


def _env(repo: Path, seconds: float) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DVC_STAGE", "RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "PYTHONPATH": str(REPO), "DVC_NO_ANALYTICS": "1", "SARA_TOY_SECONDS": str(seconds),
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", "OMP_NUM_THREADS": "1"}


def toy_repo(path: Path) -> Path:
    """Two independent slow stages `a` and `b`, each writing `out/<name>`."""
    path.mkdir(parents=True)
    (path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    (path / "slow_stage.py").write_text(SLOW_STAGE)
    stages = {n: {"cmd": f"python slow_stage.py {n}", "deps": ["slow_stage.py"], "outs": [f"out/{n}"]} for n in "ab"}
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (path / ".gitignore").write_text("mlflow.db\nmlflow.db.lock\npids/\ntmp/\n")
    init_repo(path)
    return path


def _runs(repo: Path) -> list[tuple[str, str]]:
    """(run name, status) of every MLflow run of the toy repository, sorted."""
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    exp = client.get_experiment_by_name("sara")
    return [] if exp is None else sorted((r.info.run_name, r.info.status) for r in client.search_runs([exp.experiment_id]))


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)  # polling for a state change of another process, not timing anything


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie has exited: only its parent has not reaped it yet
        return fh.read().split(")")[-1].split()[0] != "Z"


def _dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_to_sara_repro_stops_every_running_stage_and_says_so(tmp_path: Path, signum: int, code: int):
    repo = toy_repo(tmp_path / "repo")
    proc = subprocess.Popen([sys.executable, "-m", "sara.cli", "repro", "--jobs", "2"], cwd=repo,
                            env=_env(repo, 600), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # a signal for sara repro alone, as `kill <pid>` sends it
    try:
        _wait_for(lambda: all((repo / "pids" / n).is_file() for n in "ab"), 240, "both stages to start")
        pids = [int((repo / "pids" / n).read_text()) for n in "ab"]
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == code, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"[repro] stopped by {signal.Signals(signum).name}: "), err
    assert "a, b" in lines[0] and "run `sara repro` again to resume" in lines[0]
    assert not any(_alive(p) for p in pids)  # every stage ended before sara repro did
    assert _runs(repo) == [("slow/a", "KILLED"), ("slow/b", "KILLED")]
    assert not (repo / "out").exists() or list((repo / "out").iterdir()) == []  # no output, no temp folder


@pytest.mark.slow
def test_a_stage_stops_when_dvc_is_killed_alone(tmp_path: Path):
    """kill -9 of the `dvc` process: the `sara <stage>` it ran stops within seconds (its run KILLED) instead of
    going on unlocked. The stage is a real `sara data` rendering many clips (minutes of work)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"].update(n_train=100_000, out_dir="data/clips")
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"data": {"cmd": f"{sys.executable} -m sara.cli data",
                                                                       "outs": ["data/clips"]}}}))
    (repo / ".gitignore").write_text("mlflow.db\nmlflow.db.lock\n")
    init_repo(repo)
    dvc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=_env(repo, 0),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    temp = []
    try:
        def building() -> bool:
            temp[:] = list((repo / "data").glob(".clips.tmp*")) if (repo / "data").is_dir() else []
            return bool(temp) and _runs(repo) == [("data", "RUNNING")]

        _wait_for(building, 240, "the data stage to start building")
        stage = int(temp[0].name.rsplit("tmp", 1)[1])
        os.kill(dvc.pid, signal.SIGKILL)
        dvc.wait()
        _wait_for(lambda: not _alive(stage), 30, "the orphaned stage to stop")
    finally:
        os.killpg(dvc.pid, signal.SIGKILL) if dvc.poll() is None else None
        for p in temp:
            try:
                os.kill(int(p.name.rsplit("tmp", 1)[1]), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    assert _runs(repo) == [("data", "KILLED")]
    assert not (repo / "data" / "clips").exists() and not list((repo / "data").glob(".clips.tmp*"))


def test_the_cli_watches_its_dvc_parent(monkeypatch, tmp_path: Path):
    """`sara <stage>` under DVC (DVC_STAGE set) starts the watcher; run by hand it does not."""
    import sara.cli as cli
    import sara.lifeline as lifeline

    started = []
    monkeypatch.setattr(lifeline, "die_with_parent", lambda: started.append(True))
    (tmp_path / "p.yaml").write_text("")
    monkeypatch.delenv("DVC_STAGE", raising=False)
    assert cli.main(["check-params", "--params", str(tmp_path / "p.yaml")]) == 0 and not started
    monkeypatch.setenv("DVC_STAGE", "check_params")
    assert cli.main(["check-params", "--params", str(tmp_path / "p.yaml")]) == 0 and started


@pytest.mark.slow
def test_a_second_trainer_of_the_same_run_state_is_refused_in_one_line(workspace: Path):
    from stage2_testlib import sara

    tmp = workspace / "two_trainers"
    tmp.mkdir()
    params = write_params(tmp, "p", steps=2)
    holder = subprocess.Popen(  # what a first trainer holds for its whole run
        [sys.executable, "-c", "import sys, time\nfrom sara.io import exclusive\n"
         "with exclusive(sys.argv[1], 'first'):\n    print('held', flush=True)\n    time.sleep(600)\n",
         str(tmp / "state" / "sft")], env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = sara(tmp, "train-dit", "--params", str(params), "--run", "sft")
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 2, r.stderr[-3000:]
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [f"error: train_dit/sft: {tmp / 'state' / 'sft'} is in use by another live process "
                      f"(pid {holder.pid}); wait for it or stop it before starting this one"], r.stderr[-3000:]
    assert not (tmp / "dit").exists() and not (tmp / "state" / "sft").exists()  # nothing trained or wiped


def test_the_next_build_of_an_output_removes_temp_folders_of_dead_processes(tmp_path: Path):
    from sara.io import atomic_dir

    stale = tmp_path / "samples" / f".sara-or.tmp{_dead_pid()}"
    live = tmp_path / "samples" / f".sara-or.tmp{os.getppid()}"  # a live process's build is left alone
    for d in (stale, live):
        d.mkdir(parents=True)
    with atomic_dir(tmp_path / "samples" / "sara-or") as tmp:
        (tmp / "index.json").write_text("{}")
    assert not stale.exists() and live.exists()


@pytest.mark.slow(wall_s=24)
def test_sara_repro_sweeps_what_killed_runs_left_even_when_every_stage_is_cached(tmp_path: Path):
    repo = toy_repo(tmp_path / "repo")
    env = _env(repo, 0)
    first = subprocess.run([sys.executable, "-m", "sara.cli", "repro"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    killed = subprocess.run(  # a stage run killed with -9 before it finished: its MLflow run stays RUNNING
        [sys.executable, "-c", "import os, signal\nfrom sara.config import load_params\n"
         "from sara.tracking import stage_run\nwith stage_run('slow', load_params('params.yaml'), ['project'], "
         "variant='a'):\n    os.kill(os.getpid(), signal.SIGKILL)\n"], cwd=repo, env=env, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert _runs(repo) == [("slow/a", "FINISHED"), ("slow/a", "RUNNING"), ("slow/b", "FINISHED")]
    stale = repo / "out" / f".a.tmp{_dead_pid()}"
    stale.mkdir()
    again = subprocess.run([sys.executable, "-m", "sara.cli", "repro"], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0 and "0 of 2 stages to run" in again.stdout, again.stdout + again.stderr
    assert _runs(repo) == [("slow/a", "FINISHED"), ("slow/a", "KILLED"), ("slow/b", "FINISHED")]
    assert not stale.exists()


LOST_FIRST_SIGTERM = """
import os, signal, sys, time
import sara.lifeline as lifeline
seen = []
def handler(signum, frame):  # the first SIGTERM is lost, as one handled inside a finalizer is
    seen.append(signum)
    if len(seen) == 2:
        os._exit(0)
signal.signal(signal.SIGTERM, handler)
lifeline.die_with_parent(poll_s=0.05, resend_s=0.2)
os.getppid = lambda: 1  # the parent is gone: this process was re-parented
time.sleep(20)
os._exit(1)  # the lifeline gave up after one signal: the orphan would have gone on
"""


def test_the_lifeline_signals_again_when_the_first_sigterm_is_lost():
    """An orphaned stage whose first SIGTERM is swallowed (raised inside a `__del__`, printed as "Exception ignored")
    still stops: the watcher sends SIGTERM again until the process is gone."""
    proc = subprocess.run([sys.executable, "-c", LOST_FIRST_SIGTERM], env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=60)
    assert proc.returncode == 0
