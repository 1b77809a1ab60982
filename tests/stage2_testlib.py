"""Builders shared by the Stage 2 test files: synthetic clips on disk, params files pointing at a temp workspace,
the `sara` CLI as a subprocess with a clean launcher environment, and a run's exported weights.

Helpers live here, not in a test module: a test file that imports another test file is collected differently by
`pytest` and `python -m pytest` (the second puts the repository root on sys.path, the first does not).
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
LAUNCHER_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def make_clips(root: Path, n: int = 4, seed: int = 0) -> None:
    """A few synthetic train clips in the on-disk clip format (renderer of sara.data.synthetic)."""
    from sara.data.clips import write_clip, write_index
    from sara.data.synthetic import random_spec, render, spec_to_mtss

    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        spec = random_spec(rng)
        frames, masks, truth = render(spec, 16, 64, 64, 8)
        caption = spec_to_mtss(spec, frames=16, height=64, width=64, fps=8)
        ids = [r.ref_id for r in caption.structured_caption.english.references if r.type != "scene"]
        records.append(write_clip(root, f"clip{i:03d}", "train", frames, 8, caption, truth, masks, ids))
    write_index(root, records, "synthetic", "embedded")


def write_params(tmp: Path, name: str, **train: object) -> Path:
    """params.yaml with the clips, base model and every output of Stage 2 in `tmp` (or its parent); `train`
    overrides train.* (6 steps, a checkpoint every 2 unless given)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["data"]["out_dir"] = str(tmp.parent / "clips")
    raw["masks"]["out_dir"] = str(tmp / "masks")
    raw["dit"]["base_dir"] = str(tmp.parent / "base")
    raw["train"].update(steps=6, checkpoint_every=2, out_dir=str(tmp / "dit"), state_dir=str(tmp / "state"))
    raw["train"].update(train)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def make_workspace(root: Path) -> Path:
    """4 synthetic clips (`clips/`) and the tiny base model of params.yaml (`base/`) in `root`: what the
    session's `workspace` fixture (conftest.py) holds; runs go in subfolders."""
    from sara.config import load_params
    from sara.models.dit import save_base

    make_clips(root / "clips")
    save_base(load_params(REPO / "params.yaml"), root / "base")
    return root


def clean_env(tmp: Path) -> dict[str, str]:
    """This process's environment without a launcher's rank variables (an in-process run may have set them)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_ENV}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}")
    return env


def sara(tmp: Path, *args: str, fault: str | None = None, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    """`sara <args>` as its own process in `tmp` (or under `launcher`, e.g. torchrun); `fault` (tests/faultlib.py,
    e.g. "kill@3") runs it with that fault installed."""
    env = clean_env(tmp)
    if fault:
        launcher = [sys.executable, str(REPO / "tests" / "fault_cli.py"), fault]
    cmd = [*(launcher or [sys.executable, "-m", "sara.cli"]), *args]
    return subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=400)


@dataclass
class Ran:
    """What `sara_here` returns: the fields of a subprocess.CompletedProcess that the tests read."""

    returncode: int
    stdout: str
    stderr: str


def sara_here(tmp: Path, *args: str) -> Ran:
    """`sara <args>` in this process (`sara.cli.main`), run as `sara()` runs it: in `tmp`, logging to
    `tmp/mlflow.db`, without a launcher's rank variables. The same code path as the subprocess without a new
    interpreter's imports (about 8 CPU s per `sara train-dit`); use `sara()` where the test needs a process of its
    own (a kill, a signal, torchrun). The working directory, environment and MLflow's URI are put back."""
    import mlflow

    from sara.cli import main

    cwd, env = os.getcwd(), dict(os.environ)
    out, err = io.StringIO(), io.StringIO()
    try:
        os.environ.clear()
        os.environ.update(clean_env(tmp))  # the environment `sara()` gives its process
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        os.chdir(tmp)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        mlflow.set_tracking_uri(None)
    return Ran(code, out.getvalue(), err.getvalue())


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    """The exported transformer of a Stage 2 run folder."""
    from safetensors.torch import load_file

    return load_file(run_dir / "transformer" / "diffusion_pytorch_model.safetensors")


def save_random_aligner(params, out_dir: Path) -> Path:
    """A seeded random Stage 1 aligner in the trained-aligner format (`<out_dir>/aligner.pt`), with the tiny V-JEPA
    weights it was 'trained' on, as `sara.models.aligner.load_saliency_model` reads it."""
    from sara.models.aligner import SaliencyAligner, save_aligner
    from sara.models.encoders import build_text_model, build_vfm

    vfm, text = build_vfm(params.vfm), build_text_model(params.text)
    torch.manual_seed(0)
    return save_aligner(Path(out_dir) / "aligner.pt", SaliencyAligner(vfm.dim, text.dim, params.aligner), params,
                        {"vfm_tag": vfm.tag, "grid": list(vfm.grid), "text_kind": text.kind,
                         "vfm_state": {k: v.cpu() for k, v in vfm.model.state_dict().items()}})


@pytest.fixture()
def launcher_env():
    """Training in this process makes it a one-rank world (RANK, MASTER_PORT, ... in os.environ, set by
    `sara.train.engine.init_distributed`): put the environment back afterwards so later tests' subprocesses do not
    inherit a launcher's variables."""
    before = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(before)
