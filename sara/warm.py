"""Warm start for stage processes: a `sara <stage>` run by DVC is forked from an interpreter that has already
imported the heavy libraries, instead of importing them itself.

Every DVC stage is its own `sara <stage>` process, and at the embedded scale most of a stage's time is imports:
MLflow and its SQLite store (~2.5 CPU s), torch (~1.5 s), diffusers and transformers (~3 s), for ~50 stages per
`dvc repro` (benchmarks/stage_startup.md). The first stage run by DVC starts a server (`python -m sara.warm`) and
runs cold itself; the server imports the third-party libraries of `PRELOAD` once, then forks one child per later
`sara <stage>` command, which runs `sara.cli.main` there with the command's arguments, environment, working
directory and standard streams (passed over a Unix socket), so its output, exit status and signals are the
command's own.

What keeps a forked stage the same as a fresh process:
- first-party code is never imported by the server before a fork, and the child drops any `sara`, `evaluation` or
  `flows` module it inherited: every stage imports the code on disk now;
- one server per interpreter, import path and environment (a hash of them names its socket); it exits after
  `IDLE_S` without a command, so a reinstalled library is picked up by the next server;
- no thread, CUDA context or store connection exists in the server when it forks (imports only);
- the child re-seeds numpy's global generator (Python's `random` re-seeds itself after a fork), stops when the
  command's process is gone (the socket closes), and `sara.env.one_cpu_thread_for_tiny_models` sets torch's
  threads itself since torch is already imported.

On by default for commands run by DVC (`DVC_STAGE` set) on a machine without a GPU, except under pytest and in
distributed launches; `SARA_WARM=0` turns it off, `SARA_WARM=1` on for any command. With `SARA_WARM_USAGE=<file>` the server appends each child's
CPU time there: the CPU of a forked stage is the server's child's, not the command's (`/usr/bin/time dvc repro`
does not see it).
"""

from __future__ import annotations

import hashlib
import json
import os
import selectors
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

IDLE_S = 30.0  # a server without a command for this long exits (DVC starts the next stage within seconds)
CONNECT_S = 2.0
# Third-party modules a stage may import: imported once by the server (an unavailable one is skipped).
PRELOAD = (
    "numpy", "scipy", "pandas", "pydantic", "yaml", "filelock", "tqdm", "imageio", "cv2",
    "mlflow", "mlflow.tracking", "mlflow.store.tracking.sqlalchemy_store",
    "torch", "torchvision", "transformers", "diffusers",
    "diffusers.models.autoencoders.autoencoder_kl_wan", "diffusers.models.transformers.transformer_wan",
    "diffusers.pipelines.wan.pipeline_wan",
)
FIRST_PARTY = ("sara", "evaluation", "flows")
# Environment variables that differ between the commands one server may run (they are the command's, set in the
# child); every other variable is part of the server's identity.
PER_COMMAND_ENV = ("DVC_", "SARA_DVC_STAGE", "SARA_MLFLOW_PARENT_RUN_ID", "SARA_PREFECT_", "SARA_SWEEP_ID",
                   "SARA_WARM_USAGE", "PWD", "OLDPWD", "SHLVL", "_")


def enabled(env: dict[str, str] | None = None, gpu: bool | None = None) -> bool:
    """Whether this command goes to the warm server. Not on a GPU machine: a library that initialises the CUDA
    driver while the server imports it (a device query) would leave it unusable in every forked child, and there a
    stage's work dwarfs its imports."""
    env = os.environ if env is None else env
    if env.get("SARA_WARM") in ("0", "1"):
        return env["SARA_WARM"] == "1"
    gpu = Path("/dev/nvidiactl").exists() if gpu is None else gpu
    distributed = "LOCAL_RANK" in env or "WORLD_SIZE" in env  # one process per GPU: each rank starts itself
    return bool(env.get("DVC_STAGE")) and "PYTEST_CURRENT_TEST" not in env and not distributed and not gpu


def _identity() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(PER_COMMAND_ENV)}
    return {"python": sys.executable, "path": [p for p in sys.path if p], "env": env}


def socket_path() -> Path:
    """The socket of the server for this interpreter, import path and environment (private to this user)."""
    folder = Path(os.environ.get("SARA_WARM_DIR") or Path(tempfile.gettempdir()) / f"sara-warm-{os.getuid()}")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = hashlib.sha256(json.dumps(_identity(), sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{key}.sock"


def run(argv: list[str]) -> int | None:
    """Run `sara <argv>` in the warm server; None when there is none yet (one is started for the next command and
    the caller runs this one itself)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(CONNECT_S)
    try:
        sock_path = socket_path()
        conn.connect(str(sock_path))
    except OSError:  # no server (or no place for one): this command runs cold
        conn.close()
        try:
            _start_server(socket_path())
        except OSError:
            pass
        return None
    conn.settimeout(None)
    request = {"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "path": sys.path, "client": os.getpid()}
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
    replies = conn.makefile("r")
    child = int(json.loads(replies.readline())["pid"])
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # Ctrl-C, a cancelled sweep: the stage's own
        signal.signal(signum, lambda s, _frame: os.kill(child, s))
    if os.environ.get("DVC_STAGE"):  # DVC gone (kill -9): this process stops, and with it the stage (forwarded)
        from sara.lifeline import die_with_parent

        die_with_parent()
    line = replies.readline()
    return int(json.loads(line)["code"]) if line else 1


def _start_server(sock_path: Path) -> None:
    """Start a detached server unless one is starting (it holds `<socket>.lock` while it lives)."""
    import fcntl
    import subprocess

    with open(f"{sock_path}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return  # a server is importing; the command after this one uses it
        fcntl.flock(lock, fcntl.LOCK_UN)
    subprocess.Popen([sys.executable, "-m", "sara.warm", str(sock_path)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)


def serve(sock_path: Path) -> None:
    import fcntl
    import importlib

    lock = open(f"{sock_path}.lock", "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server for this identity
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")  # who serves this socket (to stop it: kill this pid)
    lock.flush()
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a library this environment lacks: its stages import it themselves
            pass
    for name in [m for m in sys.modules if m.split(".")[0] in FIRST_PARTY]:
        del sys.modules[name]  # this module stays running; a child imports first-party code from disk
    sock_path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(sock_path))
    server.listen(64)
    wake_r, wake_w = os.pipe()  # a finished child wakes the loop at once: its command waits for the exit status
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    events = selectors.DefaultSelector()
    events.register(server, selectors.EVENT_READ)
    events.register(wake_r, selectors.EVENT_READ)
    running: dict[int, socket.socket] = {}
    idle_since = time.monotonic()
    try:
        while running or time.monotonic() - idle_since < IDLE_S:
            if running:
                idle_since = time.monotonic()  # idle counts from the end of the last command
            ready = [key.fileobj for key, _ in events.select(timeout=1.0)]
            if wake_r in ready:
                os.read(wake_r, 4096)
            _reap(running)
            if server not in ready:
                continue
            conn, _ = server.accept()
            idle_since = time.monotonic()
            conn.settimeout(None)
            message, fds, _, _ = socket.recv_fds(conn, 1 << 22, 3)
            while not message.endswith(b"\n"):  # the rest of a request longer than one read
                message += conn.recv(1 << 22)
            request = json.loads(message)
            pid = os.fork()
            if pid == 0:
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                for f in (server, lock, events):
                    f.close()
                os.close(wake_r)
                os.close(wake_w)
                _child(conn, fds, request)  # never returns
            for fd in fds:
                os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")
            running[pid] = conn
    finally:
        sock_path.unlink(missing_ok=True)


def _reap(running: dict[int, socket.socket]) -> None:
    """Send each finished child's exit status to its command (and its CPU time to SARA_WARM_USAGE)."""
    while running:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = running.pop(pid, None)
        if conn is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        try:
            conn.sendall(json.dumps({"code": code if code >= 0 else 128 - code}).encode() + b"\n")
        except OSError:
            pass  # the command is gone
        conn.close()


def _child(conn: socket.socket, fds: list[int], request: dict) -> None:
    code, started = 1, time.monotonic()
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # The server's own streams now write to the command's (libraries may hold them since their import).
        sys.stdin, sys.stdout, sys.stderr = sys.__stdin__, sys.__stdout__, sys.__stderr__
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[:] = request["path"]
        sys.argv = ["sara", *request["argv"]]
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()  # as a fresh process: not the state every child shares
        threading.Thread(target=_stop_when_closed, args=(conn,), daemon=True).start()
        from sara.cli import main_here

        code = main_here(request["argv"], lifeline=False)  # the socket is the lifeline (`_stop_when_closed`)
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:  # noqa: BLE001 - reported as a fresh process would
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        _record_usage(request, started)
    os._exit(code)


def _stop_when_closed(conn: socket.socket) -> None:
    """The command's process is gone when its end of the socket closes: stop as on SIGTERM."""
    try:
        while conn.recv(1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)


def _record_usage(request: dict, started: float) -> None:
    path = request["env"].get("SARA_WARM_USAGE")
    if not path:
        return
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = {"argv": request["argv"], "wall_s": round(time.monotonic() - started, 3),
            "cpu_s": round(usage.ru_utime + usage.ru_stime + children.ru_utime + children.ru_stime, 3)}
    with open(path, "a") as f:
        f.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
