"""Time a `dvc repro` of the DAG: its wall and CPU time as a whole, every stage command's, and the load average.

The CPU time counts every process the run starts, the warm-start server and the stages it forks included
(sara/warm.py): this script is a child subreaper (Linux), so they are its descendants even after their parent
exits, and it waits for all of them (the server exits `sara.warm.IDLE_S` after the last stage). Each stage
command goes through a `sara` wrapper put first on PATH, which records its wall and CPU time; a stage forked by the
warm server reports its own CPU through `SARA_WARM_USAGE` (the command's process only waits for it).

Run from the repository root of a fresh clone, after `bash scripts/install.sh && . .venv/bin/activate`:
    python benchmarks/dag_repro.py --out tmp/dag_repro -- dvc repro
It writes `<out>/stages.tsv` (start, wall, user, sys, exit status, command), `<out>/served.jsonl` and prints a JSON
summary and a markdown table per kind of stage (the benchmarks/*.md tables).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

PR_SET_CHILD_SUBREAPER = 36
WRAPPER = """#!/bin/bash
start=$(date +%s.%N)
/usr/bin/time -f "%e %U %S" -o "{out}/t.$$" {python} -m sara.cli "$@"
rc=$?
printf "%s\\t%s\\t%s\\t%s\\n" "$start" "$(tail -1 "{out}/t.$$")" "$rc" "$*" >> "{out}/stages.tsv"
rm -f "{out}/t.$$"
exit $rc
"""


def kind(command: str) -> str:
    """`rubric --run base` -> `rubric`; `train-dit --run sft` -> `train-dit`."""
    return command.split()[0]


def table(stages: list[dict], served: dict[str, float]) -> str:
    rows: dict[str, list[dict]] = defaultdict(list)
    for s in stages:
        rows[kind(s["command"])].append(s)
    lines = ["| stage kind | count | wall s (total) | wall s (each) | CPU s (total) |", "|---|---|---|---|---|"]
    for name, items in rows.items():
        walls = [s["wall"] for s in items]
        cpu = sum(served.get(s["command"], s["cpu"]) for s in items)
        each = f"{min(walls):.1f}-{max(walls):.1f}" if len(walls) > 1 else f"{walls[0]:.1f}"
        lines.append(f"| {name} | {len(items)} | {sum(walls):.1f} | {each} | {cpu:.1f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("tmp/dag_repro"))
    parser.add_argument("command", nargs="+", help="the command to time, after --: dvc repro")
    args = parser.parse_args()
    out = args.out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    (out / "bin").mkdir(parents=True)
    wrapper = out / "bin" / "sara"
    wrapper.write_text(WRAPPER.format(out=out, python=sys.executable))
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{out / 'bin'}{os.pathsep}{os.environ['PATH']}",
           "SARA_WARM_USAGE": str(out / "served.jsonl")}
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    loads: list[float] = []
    done = threading.Event()

    def sample_load() -> None:
        while not done.is_set():
            loads.append(os.getloadavg()[0])
            done.wait(15)

    threading.Thread(target=sample_load, daemon=True).start()
    start = time.time()
    rc = subprocess.call(args.command, env=env)
    wall = time.time() - start
    done.set()
    while True:  # the warm server and anything else the run left behind
        try:
            os.wait()
        except ChildProcessError:
            break
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    stages = []
    for line in (out / "stages.tsv").read_text().splitlines() if (out / "stages.tsv").is_file() else []:
        started, times, status, command = line.split("\t")
        w, u, s = (float(x) for x in times.split())
        stages.append({"start": float(started), "wall": w, "cpu": u + s, "rc": int(status), "command": command})
    served = {}
    if (out / "served.jsonl").is_file():
        for line in (out / "served.jsonl").read_text().splitlines():
            item = json.loads(line)
            served[" ".join(item["argv"])] = item["cpu_s"]
    summary = {"rc": rc, "wall_s": round(wall, 1), "user_s": round(usage.ru_utime, 1), "sys_s": round(usage.ru_stime, 1),
               "stages": len(stages), "served_warm": len(served), "stage_wall_s": round(sum(s["wall"] for s in stages), 1),
               "load_min": round(min(loads), 2) if loads else None, "load_max": round(max(loads), 2) if loads else None,
               "load_mean": round(sum(loads) / len(loads), 2) if loads else None}
    print(json.dumps(summary))
    print(table(stages, served))
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
