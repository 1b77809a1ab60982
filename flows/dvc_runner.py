"""Run DVC from orchestration: `dvc exp run --temp` for sweep points, output streamed to a logger.

DVC does the work (it runs `sara <stage>`); this module only starts it, streams its output, tells which stages ran
and which were restored from the run cache, and classifies a failure as transient (worth a retry: a lock held
by a concurrent process) or not (a stage's own error: retrying would fail the same way).
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.plan import dvc_value

# Failures caused by another process at the same moment, not by the stage: retrying later can succeed.
TRANSIENT_PATTERNS = (
    "Unable to acquire lock",  # DVC's repo or rwlock held by a concurrent dvc command
    "is locked",  # a DVC lock file, or SQLite (DVC state db, MLflow) under concurrent writers
    "index.lock",  # git updated a ref for a concurrent experiment at the same moment
    "cannot lock ref",
    "Connection refused",  # a tracking server restarting
    "Connection reset by peer",
)

_RAN = re.compile(r"^Running stage '([^']+)'")
_CACHED = re.compile(r"^Stage '([^']+)' (?:is cached - skipping run|didn't change, skipping)")


class DvcError(RuntimeError):
    """A dvc command failed; `transient` says whether a retry may succeed."""

    def __init__(self, args: list[str], returncode: int, tail: str) -> None:
        self.returncode = returncode
        self.tail = tail
        self.transient = any(p in tail for p in TRANSIENT_PATTERNS)
        kind = "transient " if self.transient else ""
        super().__init__(f"{kind}failure of `dvc {' '.join(args)}` (exit {returncode}): {self.reason}\n{tail}")

    @property
    def reason(self) -> str:
        """The failing stage and its last output line (the error), e.g. `train_dit@sara-or: ValueError: ...`."""
        lines = [ln.strip() for ln in self.tail.splitlines() if ln.strip()]
        stage = next((m.group(1) for ln in reversed(lines) if (m := _RAN.match(ln))), None)
        own = [ln for ln in lines if not ln.startswith(("ERROR: failed to reproduce", "ERROR: failed to run", "Running stage", "> "))]
        last = own[-1] if own else (lines[-1] if lines else f"exit {self.returncode}")
        return f"{stage}: {last}" if stage else last


class Stopped(RuntimeError):
    """The run was told to stop (SIGTERM / SIGINT to `sara repro`): no further dvc command starts."""


# The dvc processes running now (each the leader of its own process group), so a signal to the orchestrator can be
# passed on to every stage it started; once `stop` was called, no new one starts.
_RUNNING: dict[subprocess.Popen[str], str] = {}
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()


def _stage_of(args: list[str]) -> str:
    """`['--wait-for-lock', 'repro', '-s', 'masks']` -> `masks`: what a dvc command works on, for messages."""
    return args[-1] if args else "dvc"


def stop(signum: int, grace_s: float = 120.0) -> list[str]:
    """Send `signum` to the process group of every running dvc command (its stage's command included), so each
    stage ends as on Ctrl-C (its MLflow run KILLED); a group still alive after `grace_s` gets SIGKILL. Returns the
    stages signalled. Every later `run_dvc` raises Stopped instead of starting."""
    _STOPPING.set()
    with _RUNNING_LOCK:
        procs = dict(_RUNNING)
    for proc in procs:
        _signal_group(proc, signum)

    def kill_left() -> None:
        deadline = time.monotonic() + grace_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)

    threading.Thread(target=kill_left, name="dvc-stop", daemon=True).start()
    return sorted(procs.values())


def allow_starts() -> None:
    """Undo `stop` for a new run of the orchestrator in this process."""
    _STOPPING.clear()


def _signal_group(proc: subprocess.Popen[str], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _libc_prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl  # resolved here: no dlopen in a forked child
    except (OSError, AttributeError):
        return None


_PRCTL = _libc_prctl() if sys.platform.startswith("linux") else None
PR_SET_PDEATHSIG = 1


def _die_with_this_process() -> None:
    """In the dvc child before exec: SIGTERM when the thread that started it dies (the orchestrator killed with
    -9), so no stage trains on without it. The stage, in turn, stops when dvc is gone (sara.lifeline)."""
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ExpResult:
    name: str
    rev: str | None  # commit of the experiment ref (None when DVC kept no experiment)
    ran: list[str] = field(default_factory=list)  # stages executed by this experiment
    cached: list[str] = field(default_factory=list)  # stages restored from the run cache or unchanged
    reused: bool = False  # the experiment already existed (a retried task): nothing was run again


def stage_env(env: Mapping[str, str]) -> dict[str, str]:
    """Environment of the dvc process: stage commands use this venv and the `sara` package of their tree.

    A temp experiment runs in a copy of the repository; `PYTHONPATH=.` (stage commands run at the repository
    root) makes `sara <stage>` execute that copy's code, the same code DVC hashed as the stage's dependency.
    """
    out = dict(env)
    # `sara` and `python` in stage commands resolve to this environment even when it was never activated.
    out["PATH"] = os.pathsep.join(p for p in (str(Path(sys.executable).parent), out.get("PATH", "")) if p)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (".", out.get("PYTHONPATH", "")) if p)
    return out


def run_dvc(args: list[str], repo: Path, env: Mapping[str, str], log: Callable[[str], Any] = print) -> str:
    """Run `dvc <args>` in `repo`, streaming each output line to `log`; return the output or raise DvcError
    (Stopped once `stop` was called)."""
    with _RUNNING_LOCK:
        if _STOPPING.is_set():
            raise Stopped(f"not starting `dvc {' '.join(args)}`: stopping")
        proc = subprocess.Popen(
            [sys.executable, "-m", "dvc", *args],
            cwd=repo,
            env=stage_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group: a cancelled flow run stops the stage commands too
            preexec_fn=_die_with_this_process if _PRCTL is not None else None,
        )
        _RUNNING[proc] = _stage_of(args)
    try:
        return _stream(proc, args, log)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.pop(proc, None)


def _stream(proc: subprocess.Popen[str], args: list[str], log: Callable[[str], Any]) -> str:
    lines: list[str] = []
    tail: collections.deque[str] = collections.deque(maxlen=60)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            tail.append(line)
            log(line)
        proc.wait()
    except BaseException:
        _stop(proc)
        raise
    if proc.returncode != 0:
        raise DvcError(args, proc.returncode, "\n".join(tail))
    return "\n".join(lines)


def _stop(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def exp_ref(repo: Path, name: str) -> str | None:
    """Commit of the experiment named `name` on the current baseline, if DVC saved one."""
    head = _git(repo, "rev-parse", "HEAD")
    if not head:
        return None
    ref = f"refs/exps/{head[:2]}/{head[2:]}/{name}"
    return _git(repo, "rev-parse", "--verify", "--quiet", ref)


def _git(repo: Path, *args: str) -> str | None:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None


def exp_run(
    repo: Path,
    name: str,
    targets: list[str],
    overrides: Mapping[str, Any],
    env: Mapping[str, str],
    log: Callable[[str], Any] = print,
) -> ExpResult:
    """`dvc exp run --temp -n NAME -S k=v ... TARGETS`: an isolated copy, so sweep points never share a lock.

    Idempotent per name: when the experiment already exists (a retry after it was saved), it is reused.
    """
    existing = exp_ref(repo, name)
    if existing:
        log(f"experiment {name} already exists at {existing[:10]}: reusing it")
        return ExpResult(name, existing, reused=True)
    args = ["exp", "run", "--temp", "-n", name]
    for key, value in overrides.items():
        args += ["-S", f"{key}={dvc_value(value)}"]
    args += list(targets)
    output = run_dvc(args, repo, env, log)
    result = ExpResult(name, exp_ref(repo, name))
    for line in output.splitlines():
        if m := _RAN.match(line.strip()):
            result.ran.append(m.group(1))
        elif m := _CACHED.match(line.strip()):
            result.cached.append(m.group(1))
    return result
