"""A pytest plugin that records each test's wall time and CPU time, for the suite profile in docs/testing.md.

CPU is user + sys of the test process and of the children it reaped during the test (a `sara train-dit`, `dvc repro`
or torchrun it waited for), set-up and teardown included; a server a fixture starts and stops later counts when it
is reaped. Under pytest-xdist each worker writes its own file. pytest calls the two hooks by name:
pytest_runtest_protocol around each test, pytest_sessionfinish at the end.

    PYTHONPATH=$PWD:$PWD/benchmarks nice python -m pytest -q -n 2 -p pytest_cpu
    python benchmarks/pytest_cpu.py tmp/pytest_cpu.*.json     # per file: tests, wall, CPU; the 20 longest tests

Output: tmp/pytest_cpu.<worker>.json (PYTEST_CPU_OUT to change the prefix), rows [test id, wall s, CPU s, load].
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

_rows: list[tuple[str, float, float, float]] = []


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    wall, cpu = time.monotonic(), _cpu_seconds()
    yield
    _rows.append((item.nodeid, time.monotonic() - wall, _cpu_seconds() - cpu, os.getloadavg()[0]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _rows:  # the xdist controller runs no test
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        out = Path(f"{os.environ.get('PYTEST_CPU_OUT', 'tmp/pytest_cpu')}.{worker}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_rows))


def summary(paths: list[str]) -> None:
    rows = [row for p in paths for row in json.loads(Path(p).read_text())]
    files: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for test, wall, cpu, _ in rows:
        f = files[test.split("::")[0]]
        f[0] += 1
        f[1] += wall
        f[2] += cpu
    print(f"{len(rows)} tests, wall {sum(r[1] for r in rows):.0f} s, CPU {sum(r[2] for r in rows):.0f} s")
    print("| file | tests | wall s | CPU s |\n|---|---|---|---|")
    for name, (n, wall, cpu) in sorted(files.items(), key=lambda kv: -kv[1][1])[:20]:
        print(f"| {name} | {n} | {wall:.0f} | {cpu:.0f} |")
    print("\n| test | wall s | CPU s |\n|---|---|---|")
    for test, wall, cpu, _ in sorted(rows, key=lambda r: -r[1])[:20]:
        print(f"| {test} | {wall:.0f} | {cpu:.0f} |")


if __name__ == "__main__":
    summary(sys.argv[1:])
