"""Local services on loopback: Prefect server, the `ablation-sweep` serve process, and the MLflow UI.

    python -m flows.services start [--prefect-port 4200] [--mlflow-port 5000] [--gpu-slots 1]
    python -m flows.services status
    python -m flows.services env      # `eval "$(python -m flows.services env)"` points a shell at the server
    python -m flows.services stop

State (process ids, URLs) and logs live in `.prefect/services/` (git-ignored). Every process is started in its
own process group and stopped through it (SIGTERM, then SIGKILL after a timeout); nothing else is touched.
Everything binds to 127.0.0.1. Readiness is polled on each service's health endpoint, never waited out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from flows.env import orchestration_env
from flows.net import wait_http
from sara.env import repo_root
from sara.io import pid_alive

HOST = "127.0.0.1"
DEPLOYMENT = "sara/ablation-sweep"


@dataclass
class Service:
    name: str
    pid: int
    url: str
    health: str
    log: str


def state_dir(root: Path) -> Path:
    return root / ".prefect" / "services"


def _state_file(root: Path) -> Path:
    return state_dir(root) / "services.json"


def read_state(root: Path) -> list[Service]:
    path = _state_file(root)
    if not path.is_file():
        return []
    return [Service(**s) for s in json.loads(path.read_text())]


def _write_state(root: Path, services: list[Service]) -> None:
    path = _state_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([asdict(s) for s in services], indent=1))
    tmp.replace(path)


def alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    # A zombie child of this process still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def service_env(root: Path, prefect_port: int) -> dict[str, str]:
    env = orchestration_env(root)
    env["PREFECT_API_URL"] = f"http://{HOST}:{prefect_port}/api"
    env["PREFECT_SERVER_API_HOST"] = HOST
    env["PREFECT_SERVER_API_PORT"] = str(prefect_port)
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job workers for a local UI
    return env


def _spawn(name: str, args: list[str], root: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    log = state_dir(root) / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    return proc, log


def _bin(name: str) -> str:
    """An executable of this environment (works without activating the venv)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def _set_gpu_limit(api_url: str, slots: int, timeout: float = 60.0) -> None:
    """Create (or update) the `gpu` tag concurrency limit.

    A freshly started Prefect server can answer its health endpoint while its database is still migrating and
    answer 503 to writes, so a 5xx or a refused connection is retried until `timeout`.
    """
    body = json.dumps({"tag": "gpu", "concurrency_limit": slots}).encode()
    deadline = time.monotonic() + timeout
    delay = 0.2
    while True:
        req = urllib.request.Request(
            f"{api_url}/concurrency_limits/", data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                resp.read()
            return
        except urllib.error.HTTPError as err:
            if err.code < 500 or time.monotonic() > deadline:
                raise
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
        time.sleep(delay)  # polling interval while the server finishes starting
        delay = min(delay * 2, 2.0)


def start(
    root: Path,
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    gpu_slots: int = 1,
    serve: bool = True,
    mlflow: bool = True,
    timeout: float = 120.0,
) -> list[Service]:
    """Start the services that are not running yet; return all of them. Raises on a busy port or a failed start."""
    running = [s for s in read_state(root) if alive(s.pid)]
    names = {s.name for s in running}
    wanted = ["prefect"] + (["serve"] if serve else []) + (["mlflow"] if mlflow else [])
    env = service_env(root, prefect_port)
    api = env["PREFECT_API_URL"]
    started: list[Service] = []
    try:
        if "prefect" not in names:
            if not port_free(prefect_port):
                raise RuntimeError(f"port {prefect_port} on {HOST} is in use: pass --prefect-port")
            proc, log = _spawn(
                "prefect", [_bin("prefect"), "server", "start", "--host", HOST, "--port", str(prefect_port)], root, env
            )
            svc = Service("prefect", proc.pid, f"http://{HOST}:{prefect_port}", f"{api}/health", str(log))
            started.append(svc)
            wait_http(svc.health, timeout, proc)
        _set_gpu_limit(api, gpu_slots)
        if "serve" in wanted and "serve" not in names:
            proc, log = _spawn("serve", [sys.executable, "-m", "flows.serve"], root, env)
            svc = Service("serve", proc.pid, f"http://{HOST}:{prefect_port}/deployments", f"{api}/deployments/name/{DEPLOYMENT}", str(log))
            started.append(svc)
            # Ready once the serve process registered the deployment and unpaused it (a stop pauses it).
            wait_http(svc.health, timeout, proc, ready=lambda body: json.loads(body).get("paused") is False)
        if "mlflow" in wanted and "mlflow" not in names:
            if not port_free(mlflow_port):
                raise RuntimeError(f"port {mlflow_port} on {HOST} is in use: pass --mlflow-port")
            proc, log = _spawn("mlflow", mlflow_server_args(root, mlflow_port, env), root, env)
            svc = Service("mlflow", proc.pid, f"http://{HOST}:{mlflow_port}", f"http://{HOST}:{mlflow_port}/health", str(log))
            started.append(svc)
            wait_http(svc.health, timeout, proc)
    except BaseException:
        for svc in reversed(started):
            _terminate(svc.pid)
        raise
    services = running + started
    _write_state(root, services)
    return services


def mlflow_server_args(root: Path, port: int, env: dict[str, str]) -> list[str]:
    """`mlflow server` on loopback over the repository's tracking database, one worker (a local UI)."""
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if not uri.startswith("sqlite:"):
        uri = f"sqlite:///{root / 'mlflow.db'}"
    return [
        _bin("mlflow"), "server",
        "--backend-store-uri", uri,
        "--artifacts-destination", str(root / "mlartifacts"),
        "--host", HOST, "--port", str(port), "--workers", "1",
    ]  # fmt: skip


def _terminate(pid: int, timeout: float = 30.0) -> bool:
    """SIGTERM the process group started for a service, SIGKILL it if it is still there after `timeout`."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the exit of a process we signalled
    if alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def stop(root: Path) -> list[str]:
    """Stop every recorded service (serve first, the Prefect server last); return the names stopped."""
    stopped = []
    order = {"serve": 0, "mlflow": 1, "prefect": 2}
    for svc in sorted(read_state(root), key=lambda s: order.get(s.name, 9)):
        if alive(svc.pid) and _terminate(svc.pid):
            stopped.append(svc.name)
    path = _state_file(root)
    if path.exists():
        path.unlink()
    return stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.services", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start", help="start the Prefect server, the serve process and the MLflow UI on 127.0.0.1")
    p.add_argument("--prefect-port", type=int, default=int(os.environ.get("SARA_PREFECT_PORT", 4200)))
    p.add_argument("--mlflow-port", type=int, default=int(os.environ.get("SARA_MLFLOW_PORT", 5000)))
    p.add_argument("--gpu-slots", type=int, default=1, help="sweep points that may hold a GPU at once (tag `gpu`)")
    p.add_argument("--no-serve", action="store_true", help="server only: run `python -m flows.serve` yourself")
    p.add_argument("--no-mlflow", action="store_true")
    sub.add_parser("status", help="show which services run and answer")
    sub.add_parser("env", help="print export lines for PREFECT_API_URL and PREFECT_HOME")
    sub.add_parser("stop", help="stop every service started by `start`")
    args = parser.parse_args(argv)
    root = repo_root()
    if args.cmd == "start":
        try:
            services = start(
                root, args.prefect_port, args.mlflow_port, args.gpu_slots, not args.no_serve, not args.no_mlflow
            )
        except (RuntimeError, TimeoutError) as err:
            print(f"error: {err} (logs: {state_dir(root)})", file=sys.stderr)
            return 1
        for svc in services:
            print(f"{svc.name:8s} {svc.url}   (pid {svc.pid}, log {svc.log})")
        api = next(s for s in services if s.name == "prefect").url + "/api"
        print(f"\nexport PREFECT_API_URL={api}\nprefect deployment run {DEPLOYMENT} --param ops='[\"and\",\"or\",\"xor\"]'")
        return 0
    if args.cmd == "status":
        services = read_state(root)
        if not services:
            print("no services started (python -m flows.services start)")
            return 1
        ok = True
        for svc in services:
            up, answers = alive(svc.pid), healthy(svc.health)
            ok &= up and answers
            print(f"{svc.name:8s} {svc.url}   pid {svc.pid} {'running' if up else 'gone'}, {'healthy' if answers else 'not answering'}")
        return 0 if ok else 1
    if args.cmd == "env":
        prefect = next((s for s in read_state(root) if s.name == "prefect"), None)
        if prefect is None:
            print("no Prefect server started (python -m flows.services start)", file=sys.stderr)
            return 1
        print(f"export PREFECT_API_URL={prefect.url}/api")
        print(f"export PREFECT_HOME={root / '.prefect'}")
        return 0
    stopped = stop(root)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
