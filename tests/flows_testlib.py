"""Small repositories and helpers for exercising the flow without the full pipeline.

`make_toy_repo` builds a git+DVC repository whose dvc.yaml has the shape of the real one (a shared `data` stage,
a per-run `train_dit@<run>` foreach, a per-run evaluation `rubric@<run>` writing `outputs/metrics/<run>/rubric.json`)
with stages that finish in a second and log through `sara.tracking`
like every real stage. Their metrics are a known function of (routing operator, seed, lambda_TRD), so a test can
check that each MLflow child run got its own point's numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAILING_SEED = 13  # the toy train_dit stage fails for this train.seed (a stage error, not a transient one)
TOY_RUNS = ["sft", "videorepa", "moalign", "sara-and", "sara-or", "sara-xor"]
OP_FACTOR = {"no routing": 0.0, "none": 0.0, "and": 1.0, "or": 2.0, "xor": 3.0}  # "no routing": sft, videorepa, moalign

TOY_STAGE = '''"""Toy stage: opens its MLflow run like a real stage, writes its output folder, logs a known metric."""
import json, sys
from pathlib import Path
from sara.config import load_params
from sara.stages.per_run import publish_metrics
from sara.tracking import log_metrics, run_identity, stage_run

OP_FACTOR = {"no routing": 0.0, "none": 0.0, "and": 1.0, "or": 2.0, "xor": 3.0}  # "no routing": sft, videorepa, moalign
FAILING_SEED = 13


def toy_loss(op, seed, lam, step):
    return OP_FACTOR[op] * lam + seed / 1000 + 1.0 / (step + 1)


def toy_ta(final_loss):
    return round(5.0 - final_loss, 6)


stage = sys.argv[1]
variant = sys.argv[2] if len(sys.argv) > 2 else None
params = load_params("params.yaml")
sections = {"data": ["project", "data"], "train_dit": ["project", "train", "trd", "methods"], "rubric": ["project", "rubric"]}[stage]
identity, tags = run_identity(params, variant) if variant else ({}, {})
loss = None
with stage_run(stage, params, sections, variant=variant, tags=tags, extra_params=identity):
    if stage == "data":
        out = Path(params.data.out_dir)
        log_metrics({"clips": params.data.n_train + params.data.n_heldout})
    elif stage == "rubric":  # evaluates the trained model only: a function of its final loss
        final_loss = json.loads((Path(params.train.out_dir) / variant / "done.json").read_text())["final_loss"]
        loss = final_loss  # the rubric folder records which model it judged
        out = Path(params.rubric.out_dir) / variant
        publish_metrics("rubric", variant, {"grounded/TA_mean": toy_ta(final_loss), "grounded/MQ_mean": 1.0 + final_loss})
    else:
        if params.train.seed == FAILING_SEED:
            raise SystemExit(f"toy stage fails on purpose for train.seed={FAILING_SEED}")
        out = Path(params.train.out_dir) / variant
        op = variant.split("-", 1)[1] if variant.startswith("sara-") else "none"
        for step in range(3):
            loss = toy_loss(op, params.train.seed, params.trd.lam_trd, step)
            log_metrics({"loss": loss}, step=step)
    out.mkdir(parents=True, exist_ok=True)
    (out / "done.json").write_text(json.dumps({"stage": stage, "variant": variant, "final_loss": loss}))
'''


TOY_DVC_YAML = """stages:
  data:
    cmd: python toy_stage.py data
    deps:
      - toy_stage.py
    params:
      - project
      - data
    outs:
      - data/clips
  train_dit:
    foreach: [%s]
    do:
      cmd: python toy_stage.py train_dit ${item}
      deps:
        - toy_stage.py
        - data/clips
      params:
        - project
        - train
        - trd
        - methods
      outs:
        - models/dit/${item}
  rubric:
    foreach: [%s]
    do:
      cmd: python toy_stage.py rubric ${item}
      deps:
        - toy_stage.py
        - models/dit/${item}
      params:
        - project
        - rubric
      outs:
        - outputs/rubric/${item}
      metrics:
        - outputs/metrics/${item}/rubric.json:
            cache: false
""" % (", ".join(TOY_RUNS), ", ".join(TOY_RUNS))


def toy_loss(op: str, seed: int, lam: float, step: int) -> float:
    """The toy `train_dit` metric: distinct for every (operator, seed, lambda_TRD)."""
    return OP_FACTOR[op] * lam + seed / 1000 + 1.0 / (step + 1)


def toy_ta(final_loss: float) -> float:
    """The toy `rubric@<run>` metric `rubric/grounded/TA_mean`, a function of the evaluated model's final loss."""
    return round(5.0 - final_loss, 6)


def _run(args: list[str], cwd: Path) -> None:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    subprocess.run(args, cwd=cwd, env=env, check=True, capture_output=True, text=True)


def init_repo(path: Path) -> None:
    """git init + dvc init + one commit of everything in `path`."""
    _run(["git", "init", "-q", "-b", "main"], path)
    _run(["git", "config", "user.email", "sweep@localhost"], path)
    _run(["git", "config", "user.name", "sweep"], path)
    _run([sys.executable, "-m", "dvc", "init", "-q"], path)
    _run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], path)
    _run(["git", "add", "-A"], path)
    _run(["git", "commit", "-q", "-m", "fixture"], path)


def make_toy_repo(path: Path, params_yaml: Path) -> Path:
    """A git+DVC repository at `path` with the toy DAG and a copy of `params_yaml`."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(params_yaml, path / "params.yaml")
    (path / "toy_stage.py").write_text(TOY_STAGE)
    (path / "dvc.yaml").write_text(TOY_DVC_YAML)
    (path / ".gitignore").write_text("mlflow.db\nmlruns/\n.prefect/\n")
    init_repo(path)
    return path


def clone_repo(source: Path, path: Path) -> Path:
    """A fresh clone of `source`'s committed HEAD (what a user gets), with DVC ready to run."""
    _run(["git", "clone", "-q", str(source), str(path)], source.parent)
    _run(["git", "config", "user.email", "sweep@localhost"], path)
    _run(["git", "config", "user.name", "sweep"], path)
    return path


class PortTaken(RuntimeError):
    """The server could not bind the port it was given: another process took it first."""


def on_a_free_port(start, attempts: int = 3):
    """`start(port)` on a port the OS just reported free; on `PortTaken`, again on another one. Returns
    (port, whatever `start` returned).

    A Prefect or MLflow server binds its port itself and takes it by number, so between `free_port()` and the
    server's bind another process may take it; the test then starts the server again instead of failing."""
    from flows.net import free_port

    for attempt in range(1, attempts + 1):
        port = free_port()
        try:
            return port, start(port)
        except PortTaken:
            if attempt == attempts:
                raise


def port_taken(*texts: str) -> bool:
    """Whether a server's output says its address was in use (uvicorn, Prefect's check, the OS's errno text)."""
    return any("address already in use" in t.lower() or " is in use" in t for t in texts)


def copy_tracked_files(dst: Path) -> None:
    """Every file git tracks in this checkout, copied to `dst` (a temp repository for `dvc repro` tests)."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, listed.decode().split("\0")):
        src = ROOT / rel
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def run_ok(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run `cmd`; its output, or a failed assertion showing it."""
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr
