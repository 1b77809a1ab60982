"""Start-up cost of a stage process: what `sara <stage>` imports before its work, per stage module.

A DVC stage is one process: `sara <stage>` parses its arguments (sara/cli.py), then the stage's `run` imports what
it needs (torch, MLflow, diffusers, ...) and only then works. At the embedded scale that start-up is a large share
of a stage, and the embedded DAG runs ~50 stages. This script measures, per stage module, a fresh interpreter that
imports `sara.cli` and every module the stage file names in an import statement (top level and inside functions:
what `run` reaches on its usual path), as CPU seconds (user + sys; on a shared machine less noisy than wall time)
and wall seconds, the median of `--repeat` runs. `python -c pass` is measured alongside as the floor.

Run from the repository root:  PYTHONPATH=. python benchmarks/stage_startup.py [--repeat 3] [--stages rubric ...]
Compare two revisions by running it in a checkout of each (the numbers belong to one machine and one moment).
"""

from __future__ import annotations

import argparse
import ast
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def stage_imports(module: str) -> list[str]:
    """`import x` / `from x import y` statements of sara/stages/<module>.py, anywhere in the file, as code."""
    tree = ast.parse((ROOT / "sara" / "stages" / f"{module}.py").read_text())
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines += [f"import {a.name}" for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level and node.module != "__future__":
            lines.append(f"import {node.module}")
    return sorted(set(lines))


def measure(code: str, repeat: int) -> tuple[float, float]:
    """(median CPU s, median wall s) of `python -c code` in a fresh process."""
    cpu, wall = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True)
        wall.append(time.perf_counter() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", nargs="*", help="stage modules (default: every module the CLI dispatches to)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from sara.cli import STAGES

    modules = args.stages or sorted(set(STAGES.values()))
    floor = measure("pass", args.repeat)
    print(f"| stage module | CPU s | wall s |\n|---|---|---|\n| (python -c pass) | {floor[0]:.2f} | {floor[1]:.2f} |")
    for m in modules:
        code = "; ".join(["import sara.cli", *stage_imports(m)])
        cpu, wall = measure(code, args.repeat)
        print(f"| {m} | {cpu:.2f} | {wall:.2f} |", flush=True)


if __name__ == "__main__":
    main()
