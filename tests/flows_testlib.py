"""Small repositories and helpers for exercising the flow without the full pipeline.

`make_toy_repo` builds a git+DVC repository whose dvc.yaml has the shape of the real one (a shared `data` stage,
a per-run `train_dit@<run>` foreach) with stages that finish in a second and log through `sara.tracking`
like every real stage. Their metrics are a known function of (routing operator, seed, lambda_TRD), so a test can
check that each MLflow child run got its own point's numbers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FAILING_SEED = 13  # the toy train_dit stage fails for this train.seed (a stage error, not a transient one)
TOY_RUNS = ["sft", "videorepa", "moalign", "sara-and", "sara-or", "sara-xor"]
OP_FACTOR = {"none": 0.0, "and": 1.0, "or": 2.0, "xor": 3.0}

TOY_STAGE = '''"""Toy stage: opens its MLflow run like a real stage, writes its output folder, logs a known metric."""
import json, sys
from pathlib import Path
from sara.config import load_params
from sara.tracking import log_metrics, stage_run

OP_FACTOR = {"none": 0.0, "and": 1.0, "or": 2.0, "xor": 3.0}
FAILING_SEED = 13


def toy_loss(op, seed, lam, step):
    return OP_FACTOR[op] * lam + seed / 1000 + 1.0 / (step + 1)


stage = sys.argv[1]
variant = sys.argv[2] if len(sys.argv) > 2 else None
params = load_params("params.yaml")
sections = {"data": ["project", "data"], "train_dit": ["project", "train", "trd", "methods"]}[stage]
with stage_run(stage, params, sections, variant=variant):
    if stage == "data":
        out = Path(params.data.out_dir)
        log_metrics({"clips": params.data.n_train + params.data.n_heldout})
    else:
        if params.train.seed == FAILING_SEED:
            raise SystemExit(f"toy stage fails on purpose for train.seed={FAILING_SEED}")
        out = Path(params.train.out_dir) / variant
        op = variant.split("-", 1)[1] if variant.startswith("sara-") else "none"
        for step in range(3):
            log_metrics({"loss": toy_loss(op, params.train.seed, params.trd.lam_trd, step)}, step=step)
    out.mkdir(parents=True, exist_ok=True)
    (out / "done.json").write_text(json.dumps({"stage": stage, "variant": variant}))
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
""" % ", ".join(TOY_RUNS)


def toy_loss(op: str, seed: int, lam: float, step: int) -> float:
    """The toy `train_dit` metric: distinct for every (operator, seed, lambda_TRD)."""
    return OP_FACTOR[op] * lam + seed / 1000 + 1.0 / (step + 1)


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
