"""How the suite's tests are handed to pytest-xdist workers (`-n 2`): whole test files, the longest first.

Loaded by tests/conftest.py (`pytest_plugins`). Without `-n` (or with `-p no:xdist`) its hooks never run.

- **Whole files.** A worker gets all the tests of a file, so a module fixture (test_flows_sweep's Prefect server and
  sweep, test_lab_pretrain's micro lab, test_grounded_judge's scores) is built once, not once per worker. The
  `--dist loadgroup` with `xdist_group` marks used before did nothing under pytest 9.2: pytest-xdist 3.8 names a
  group by rewriting the test's node id, which pytest 9.2 no longer reads (pytest-xdist issue 1386).
- **Longest first.** Files are handed out by their expected wall time, largest first (the greedy rule that keeps
  the two workers' ends close): a file that starts last should be a short one. A test's expected time is the
  `wall_s` its `slow` mark states (measured on the 2-core machine, docs/testing.md), else `SLOW_S` for a slow test
  and `FAST_S` for the rest.

An explicit `--dist` other than `load` (xdist's default under `-n`) is left to xdist.
"""

from __future__ import annotations

from collections import defaultdict

import os

import pytest

SLOW_S = 8.0  # a slow test without a stated time: DVC, a `sara` process or a server, a few seconds to a minute
FAST_S = 0.15  # the fast tier: about 1,000 tests in 150 s of CPU


def expected_seconds(item: pytest.Item) -> float:
    """The wall time this test is expected to take on the 2-core machine."""
    mark = item.get_closest_marker("slow")
    if mark is None:
        return FAST_S
    return float(mark.kwargs.get("wall_s", SLOW_S))


def longest_files_first(items: list[pytest.Item]) -> None:
    """Sort `items` in place: the files in decreasing expected time, each file's tests in their own order. Every
    worker computes the same order from the same collection, as xdist requires."""
    per_file: dict[str, float] = defaultdict(float)
    for item in items:
        per_file[item.nodeid.split("::")[0]] += expected_seconds(item)
    items.sort(key=lambda item: -per_file[item.nodeid.split("::")[0]])  # stable: a file's tests stay together


@pytest.hookimpl(trylast=True)  # after conftest.py has marked the tests of heavy fixtures `slow`
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):  # a worker's collection: the order the scheduler hands out
        longest_files_first(items)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """xdist's file scheduler, handing out files in collection order (the order `longest_files_first` made)
    instead of by their number of tests."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadFileScheduling

    config.option.loadscopereorder = False
    return LoadFileScheduling(config, log)
