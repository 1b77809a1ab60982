"""The isolated VBench-1.0 environment, created on demand (vbench 0.1.5 cannot share the project's pins).

vbench 0.1.5 pins numpy<2 and transformers==4.33.2, so it lives in its own venv (`vbench.venv`, default
`.venv-vbench`) with torch 2.13.0 / torchvision 0.28.0 (the CPU torch stays; setuptools<81 keeps
pkg_resources for its third-party code) and the same torchvision CPU import hook as the main environment.
`ensure_env` builds it once (a few minutes) and records a stamp of the pins, so later calls return at once.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

from sara.env import repo_root, workspace_root

# scenedetect and moviepy<2 (moviepy.editor): VBench-Long's imports, not among the wheel's requirements
VBENCH_PINS = ["vbench==0.1.5", "torch==2.13.0", "torchvision==0.28.0", "setuptools<81", "scenedetect==0.6.5.2",
               "moviepy==1.0.3"]
HOOK = "scripts/torchvision_cpu_hook.py"  # relative to the source tree this module lives in
STAMP = ".sara-vbench-stamp"


def env_python(venv: str | Path) -> Path:
    return Path(venv) / "bin" / "python"


def _hook_path() -> Path:
    return Path(__file__).resolve().parents[2] / HOOK


def _want_stamp(root: Path) -> str:
    hook = _hook_path().read_bytes() if _hook_path().is_file() else b""
    return hashlib.sha256(("\n".join(VBENCH_PINS)).encode() + hook).hexdigest()


def install_commands(venv: Path, python: str = sys.executable) -> list[list[str]]:
    """The commands that build the environment, in order (torch first so nothing replaces the CPU build)."""
    py = str(env_python(venv))
    return [
        [python, "-m", "venv", str(venv)],
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", "torch==2.13.0", "torchvision==0.28.0", "setuptools<81"],
        [py, "-m", "pip", "install", "-q", "--disable-pip-version-check", *VBENCH_PINS],
    ]


def is_ready(venv: str | Path, root: Path | None = None) -> bool:
    stamp = Path(venv) / STAMP
    return env_python(venv).is_file() and stamp.is_file() and stamp.read_text().strip() == _want_stamp(root or repo_root())


def ensure_env(venv: str | Path, root: Path | None = None, log=print) -> Path:
    """Create or update the VBench venv; return its python. Raises RuntimeError with pip's output tail on failure."""
    root = root or repo_root()
    # A relative venv belongs to the checkout, shared with its sweep points' temporary experiment copies.
    venv = Path(venv) if Path(venv).is_absolute() else workspace_root(root) / venv
    if is_ready(venv, root):
        return env_python(venv)
    log(f"[vbench] building the isolated environment in {venv} (one time, a few minutes)")
    for cmd in install_commands(venv):
        if cmd[1:3] == ["-m", "venv"] and env_python(venv).is_file():
            continue
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building the VBench environment failed at `{' '.join(cmd)}`:\n{(proc.stdout + proc.stderr)[-3000:]}")
    site = subprocess.run(
        [str(env_python(venv)), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    (Path(site) / "_sara_torchvision_cpu_hook.py").write_bytes(_hook_path().read_bytes())
    (Path(site) / "_sara_torchvision_cpu_hook.pth").write_text("import _sara_torchvision_cpu_hook\n")
    (venv / STAMP).write_text(_want_stamp(root) + "\n")
    return env_python(venv)
