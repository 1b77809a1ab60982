"""Deps of every stage in dvc.yaml at a git revision against the working tree's, as a markdown table.

    python benchmarks/dag_deps.py 6af25dd > benchmarks/dag_deps.md

"newly covered" lists first-party files (or data) the stage now depends on that no old dep covered (a folder
dep covers its files); "dropped" old deps no longer listed. Foreach stages of the old file are expanded.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml


def expand(stages: dict) -> dict[str, tuple[list[str], list[str]]]:
    out = {}
    for name, s in stages.items():
        if "foreach" not in s:
            out[name] = (s.get("deps", []), s.get("params", []))
            continue
        for key, item in s["foreach"].items():
            def fill(x: str) -> str:
                return re.sub(r"\$\{item\.(\w+)\}", lambda m: str(item[m.group(1)]), x.replace("${key}", key))
            out[f"{name}@{key}"] = ([*dict.fromkeys(fill(d) for d in s["do"]["deps"])],
                                    [*dict.fromkeys(fill(p) for p in s["do"]["params"])])
    return out


def main(rev: str) -> None:
    old = expand(yaml.safe_load(subprocess.run(["git", "show", f"{rev}:dvc.yaml"], capture_output=True, text=True,
                                               check=True).stdout)["stages"])
    new = expand(yaml.safe_load(Path("dvc.yaml").read_text())["stages"])
    print(f"Stage deps of dvc.yaml at {rev} and now (`python benchmarks/dag_deps.py {rev}`).\n")
    print("| stage before -> now | deps before | newly covered | dropped | params before -> now (if changed) |")
    print("|---|---|---|---|---|")
    for name, (deps, params) in new.items():
        before = name.replace("train_dit-", "train_dit@").replace("sample-", "sample@")
        od, op = old.get(before, ([], []))
        covered = lambda f, ds: any(f == d or f.startswith(d.rstrip("/") + "/") for d in ds)  # noqa: E731
        added = [d for d in deps if not covered(d, od)]
        dropped = [d for d in od if d not in deps and not any(x.startswith(d + "/") for x in deps)]
        change = "" if op == params else f"{', '.join(op)} -> {', '.join(params)}"
        print(f"| `{before}` -> `{name}` | {', '.join(od)} | {', '.join(added)} | {', '.join(dropped)} | {change} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "HEAD")
