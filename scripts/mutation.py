"""Mutation testing of the core with mutmut: does a test fail when the code is changed?

    python scripts/mutation.py                      # every group below
    python scripts/mutation.py losses statistics    # some groups
    python scripts/mutation.py losses --max-children 2
    python scripts/mutation.py losses --survivors   # after adding tests: re-test only the last run's survivors

mutmut (mutmut.readthedocs.io) rewrites one operator, constant or call at a time (a "mutant") and runs the tests
that reach the mutated function; a mutant is killed when one of them fails. Each group mutates a few files and
runs only the fast tests written for them, in its own copy of the repository under `tmp/mutation/<group>/`
(mutmut works in the current directory and writes `mutants/` there; the checkout stays untouched).

Per group the script writes `tmp/mutation/<group>/summary.json` (killed / survived / timeout / ... per file) and
`survivors.txt` (the diff of every surviving mutant), and prints the score per file. docs/testing.md holds the
scores and, for every survivor, the test that now kills it or why it is equivalent (no test can tell it apart).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "tmp" / "mutation"
COPY = ["sara", "evaluation", "flows", "configs", "tests", "params.yaml", "pyproject.toml"]


@dataclass(frozen=True)
class Group:
    files: list[str]  # mutated
    tests: list[str]  # run against each mutant (mutmut picks those that reach the mutated function)
    functions: list[str] = field(default_factory=list)  # only these functions' mutants (default: every function)


GROUPS = {
    "losses": Group(
        ["sara/losses/aligner.py", "sara/losses/budget.py", "sara/losses/diffusion.py", "sara/losses/moalign.py",
         "sara/losses/routing.py", "sara/losses/trd/api.py", "sara/losses/trd/chunked.py", "sara/losses/trd/common.py",
         "sara/losses/trd/reference.py"],  # trd_triton / _trd_kernel: CUDA only, checked on the GPU
        ["tests/test_trd_losses.py", "tests/test_trd_routing_budget.py", "tests/test_diffusion_flow.py",
         "tests/test_aligner_losses.py", "tests/test_trd_grid_motion.py", "tests/test_losses_contract.py"]),
    "methods": Group(["sara/methods.py"], ["tests/test_methods.py"]),
    "stream": Group(["sara/train/stage2.py"], ["tests/test_stage2_stream.py"],
                    ["sample_seed", "stream_positions", "batch_indices", "fg_on_grid"]),
    "statistics": Group(["evaluation/statistics.py"], ["tests/test_eval_statistics.py"]),
    "grounded": Group(["evaluation/grounded/scores.py"], ["tests/test_grounded_judge.py", "tests/test_grounded_boundaries.py"]),
}


def prepare(name: str, group: Group) -> Path:
    """A fresh copy of the repository for one group, with mutmut's settings in its setup.cfg."""
    work = WORK / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, work / item)
    lines = ["[mutmut]", "source_paths =", "    sara", "    evaluation", "    flows", "only_mutate ="]
    lines += [f"    {f}" for f in group.files]
    lines += ["pytest_add_cli_args_test_selection ="] + [f"    {t}" for t in group.tests]
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -q"]
    lines += ["timeout_constant = 10.0"]  # seconds on top of 15x the test's own time: a busy shared machine
    (work / "setup.cfg").write_text("\n".join(lines) + "\n")
    return work


def mutant_names(group: Group) -> list[str]:
    """mutmut's name patterns for the group's functions (`sara.train.stage2.x_sample_seed__mutmut_*`)."""
    out = []
    for f in group.files:
        module = f.removesuffix(".py").replace("/", ".")
        out += [f"{module}.x_{fn}__mutmut_*" for fn in group.functions]
    return out


def results(work: Path) -> dict[str, str]:
    """{mutant name: status} from `mutmut results --all true`."""
    out = subprocess.run(["mutmut", "results", "--all", "true"], cwd=work, capture_output=True, text=True, check=True)
    found = {}
    for line in out.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def summarise(name: str, group: Group, work: Path) -> dict:
    statuses = results(work)
    per_file: dict[str, Counter] = defaultdict(Counter)
    for mutant, status in statuses.items():
        if status == "not checked":  # outside the group's functions (a group naming functions runs only theirs)
            continue
        module = mutant.split(".x")[0].split(".xǁ")[0]
        per_file[module.replace(".", "/") + ".py"][status] += 1
    survivors = [m for m, s in statuses.items() if s not in ("killed", "not checked")]  # survived, timeout, ...
    diffs = []
    for mutant in survivors:
        shown = subprocess.run(["mutmut", "show", mutant], cwd=work, capture_output=True, text=True)
        diffs.append(f"### {mutant} ({statuses[mutant]})\n{shown.stdout.strip()}\n")
    (work / "survivors.txt").write_text("\n".join(diffs))
    summary = {"group": name, "tests": group.tests,
               "files": {f: dict(c) for f, c in sorted(per_file.items())},
               "total": dict(sum(per_file.values(), Counter()))}
    (work / "summary.json").write_text(json.dumps(summary, indent=2))
    for f, c in sorted(per_file.items()):
        total = sum(c.values())
        print(f"{name:10s} {f:40s} killed {c['killed']:4d} / {total:4d} = {100 * c['killed'] / total:5.1f}%  {dict(c)}")
    return summary


def refresh(work: Path) -> list[str]:
    """Bring an existing group copy up to the checkout (tests into mutmut's copy too, sources into the group copy,
    where mutmut regenerates the mutants of changed functions and forgets their results); the names of the mutants
    that were not killed there, for `mutmut run` to test again."""
    names = [m for m, s in results(work).items() if s not in ("killed", "not checked")]
    for dst in (work / "tests", work / "mutants" / "tests"):
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(ROOT / "tests", dst, ignore=shutil.ignore_patterns("__pycache__"))
    for item in COPY:
        if item not in ("tests", "pyproject.toml") and (ROOT / item).is_dir():  # copy2 keeps mtimes: unchanged files stay
            shutil.copytree(ROOT / item, work / item, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)  # which tests reach which function: again
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("groups", nargs="*", help=f"groups to run: {', '.join(GROUPS)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2, help="mutants tested at once (default 2)")
    parser.add_argument("--survivors", action="store_true",
                        help="re-test only the survivors of the group's last run, against the current tests")
    args = parser.parse_args(argv)
    unknown = [g for g in args.groups if g not in GROUPS]
    if unknown:
        parser.error(f"unknown group {unknown[0]!r}: expected one of {', '.join(GROUPS)}")
    for name in args.groups or list(GROUPS):
        group = GROUPS[name]
        # one intra-op thread: mutmut forks a process per mutant, and a forked child of a process whose OpenMP pool
        # already ran hangs in its first parallel op (every mutant would time out)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        env.pop("PYTHONPATH", None)  # the mutants' copy, not the checkout, must be imported
        run = ["mutmut", "run", "--max-children", str(args.max_children)]
        if args.survivors:
            work = WORK / name
            names = refresh(work)
            if not group.functions:  # (a group naming functions would re-test all of theirs here)
                # first the mutants without a result (those of functions changed since the last run) ...
                subprocess.run(run, cwd=work, env=env, check=False)
                names = [m for m in names if m in results(work)]  # ... then the survivors that still exist
        else:
            work, names = prepare(name, group), mutant_names(group)
        print(f"[mutation] {name}: {' '.join(run)} ({len(names) or 'all'} mutants) in {work}", flush=True)
        subprocess.run([*run, *names], cwd=work, env=env, check=False)
        summarise(name, group, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
