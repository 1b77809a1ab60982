"""Loopback helpers: a free port, and polling an HTTP endpoint until it is ready (never a fixed wait)."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(
    url: str,
    timeout: float,
    proc: subprocess.Popen | None = None,
    ready: Callable[[bytes], bool] | None = None,
) -> None:
    """Poll `url` until it answers 200 (and `ready(body)` holds); fail early if `proc` exits.

    Raises TimeoutError after `timeout` seconds, RuntimeError when `proc` died first.
    """
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for {url} exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200 and (ready is None or ready(resp.read())):
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} was not ready within {timeout:.0f} s")
        time.sleep(delay)  # polling interval of a readiness check
        delay = min(delay * 2, 0.5)
