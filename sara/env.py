"""Process-wide defaults that keep every tool offline and quiet.

Set by the project (at `import sara`) rather than left to the user: no model hub, no telemetry, and MLflow
writing to `mlflow.db` in the workspace root (also from a DVC experiment's temporary copy). Values already in the environment win, so a user can point
MLflow at a server or a test at a temp database.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

OFFLINE_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # nothing may download weights
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DVC_NO_ANALYTICS": "1",  # otherwise a daemon tries the network and leaks temp files
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "TOKENIZERS_PARALLELISM": "false",
}


def repo_root(start: Path | None = None) -> Path:
    """The nearest directory at or above `start` (default: cwd) holding dvc.yaml; cwd when there is none."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").is_file():
            return d
    return here


def resolve_device(want: str | torch.device = "auto") -> torch.device:
    """`project.device` (or any device name) -> the torch device: "auto" is cuda when available, else cpu; asking
    for cuda on a machine without it is an error here rather than deep inside a model load."""
    import torch  # heavy: sara.env is imported by every `sara` command, most of which never touch a device

    if isinstance(want, torch.device):
        return want
    if want == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(want)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {want!r} was asked for (project.device) but CUDA is not available on this machine")
    return device


def workspace_root(start: Path | None = None) -> Path:
    """The checkout a stage runs for: `repo_root`, except inside a DVC experiment's temporary copy
    (`<workspace>/.dvc/tmp/exps/<tmp>/`: `dvc exp run --temp`, a queued run, one per sweep point), which is deleted
    afterwards: there it is the workspace the experiment was started from. The tracking store is logged there, and
    git-ignored tools built once per checkout (the VBench venv) are found there, so a sweep point builds none.
    """
    root = repo_root(start)
    parts = root.parts
    for i in range(len(parts) - 3):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return root


def apply_offline_defaults() -> None:
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{workspace_root() / 'mlflow.db'}")


def deterministic_kernels(on: bool) -> None:
    """`project.deterministic`: ask torch for deterministic kernels in this stage process, before it runs a kernel.

    Without it, GPU kernels that sum with atomics or pick an algorithm by timing (cuBLAS split-K, cuDNN benchmark,
    attention backwards) make two runs of the same command different draws: docs/lab/replicates.md measured a lab
    row move by 0.07 TA between two such runs.

    Strict, not `warn_only`: with `warn_only=True` torch keeps the non-deterministic kernel wherever a deterministic
    one exists only on request. Flash and memory-efficient attention's backwards are such kernels (they warn, and
    accumulate dQ with atomics), so on an H100 two lab trainings with `warn_only` differed in 197 of 237 tensors,
    exactly as without it (benchmarks/determinism.md). Strict mode switches those backwards to their deterministic
    variants, and an op with no deterministic kernel at all stops the stage with torch's error naming the op, rather
    than letting a run that promised to be reproducible quietly not be. cuBLAS is reproducible only with a fixed
    workspace, set here before CUDA starts (a value already in the environment wins).
    """
    if not on:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


# Set by `sara repro --jobs N` for each stage it starts: the stage's share of the machine's cores (cores // N). A stage
# that fans out over processes (the grounded judge) takes that many, not every core beside the other stages.
STAGE_CORES_ENV = "SARA_STAGE_CORES"


def runnable_tasks(path: Path = Path("/proc/loadavg")) -> int | None:
    """Tasks the kernel has running or ready to run right now, the caller included (the fourth field of
    /proc/loadavg, "5/1203"); None where there is no such file (macOS) or it cannot be read."""
    try:
        return int(path.read_text().split()[3].split("/")[0])
    except (OSError, IndexError, ValueError):
        return None


def one_cpu_thread_for_tiny_models(scale: str) -> None:
    """At the embedded scale, one intra-op thread per stage process (OMP_NUM_THREADS=1, unless already set).

    The embedded models are tiny, so torch's second thread buys little, and on shared cores the threads of one op
    spin waiting for each other: a tiny transformer step took 5x the wall time and 8x the CPU with 2 threads than
    with 1 at a load average of 9 on 2 cores (benchmarks/stage_startup.md). torch reads the variable when it is
    imported; in a process forked with torch already imported (sara/warm.py) the thread count is set here."""
    if scale == "embedded":
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        if "torch" in sys.modules:
            sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
