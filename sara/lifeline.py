"""A stage process stops when the process that started it is gone.

`dvc repro` runs `sara <stage>` as its child (through `$SHELL -c`, which bash replaces by the command and dash
keeps as a parent). When the `dvc` process died alone (kill -9, a crashed terminal), the stage used to train on
as an orphan: unlocked, it overwrote the output of the run that replaced it. Here a daemon thread watches the
parent, and the grandparent when the parent is a shell; once either is gone, the stage sends itself SIGTERM,
which ends it as a Ctrl-C does (its MLflow run KILLED, its temporary output removed, exit 143), and again
every few seconds until it is gone (a SIGTERM handled inside a finalizer is lost).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from sara.io import pid_alive

POLL_S = 1.0  # how often the parent is looked at: an orphan stops within about a second
RESEND_S = 5.0  # SIGTERM again after this long if the process is still there (a first one can be lost)
SHELLS = {"sh", "dash", "bash", "zsh", "ksh", "fish"}


def _name_and_parent(pid: int) -> tuple[str, int]:
    """(command name, parent pid) of a process from /proc (Linux); ("", 0) where /proc is not there."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "", 0
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    return name, int(stat[stat.rindex(")") + 2 :].split()[1])


def die_with_parent(poll_s: float = POLL_S, resend_s: float = RESEND_S) -> threading.Thread:
    """Start the watcher; returns its thread."""
    parent = os.getppid()
    name, grandparent = _name_and_parent(parent)
    starter = grandparent if name in SHELLS and grandparent > 1 else None  # dvc, behind `sh -c`

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(poll_s):
            if os.getppid() != parent or (starter is not None and not pid_alive(starter)):
                break
        # Python runs a signal's handler between two bytecodes of the main thread; when those are a finalizer's
        # (`__del__`, a weakref callback), the exception the handler raises is printed as "Exception ignored" and
        # lost, and the orphan would go on. So the signal is sent again until the process is gone, spaced so that
        # the first one's clean-up (the MLflow run marked KILLED, the temporary output removed) has time to finish.
        while True:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(resend_s)

    thread = threading.Thread(target=watch, name="sara-lifeline", daemon=True)
    thread.start()
    return thread
