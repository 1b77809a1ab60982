"""The test suite's own rules: collected the same however pytest is started, and its shared helpers work."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

import pytest

from flows_testlib import PortTaken, on_a_free_port, port_taken

TESTS = Path(__file__).resolve().parent


def test_no_test_file_imports_another():
    """Shared helpers live in *_testlib.py. A test file imported as `tests.test_x` needs the repository root on
    sys.path, which `python -m pytest` adds and a bare `pytest` does not; imported as `test_x`, its tests are
    collected twice under two module names."""
    found = []
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.name}: {n}" for n in names if n.split(".")[-1].startswith("test_") or n == "tests"
                      or n.startswith("tests.")]
    assert not found, found


def test_a_server_whose_port_was_taken_starts_again_on_another():
    tried: list[int] = []

    def start(port: int) -> str:
        tried.append(port)
        if len(tried) == 1:
            raise PortTaken(port)
        return "up"

    port, result = on_a_free_port(start)
    assert result == "up" and len(tried) == 2 and port == tried[1]
    with pytest.raises(PortTaken):
        on_a_free_port(lambda port: (_ for _ in ()).throw(PortTaken(port)), attempts=2)


def test_a_taken_port_is_recognised_in_a_servers_output():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        with socket.socket() as second, pytest.raises(OSError) as err:
            second.bind(held.getsockname())
    assert port_taken(f"ERROR: [Errno 98] error while attempting to bind: {err.value.strerror.lower()}")
    assert port_taken("RuntimeError: port 4200 on 127.0.0.1 is in use: pass --prefect-port")  # flows.services
    assert not port_taken("Application startup complete.")


def test_every_heavy_fixture_named_in_conftest_exists():
    """conftest marks tests that use a heavy fixture `slow` by the fixture's name: a renamed fixture would silently
    move its tests into the fast tier."""
    from conftest import HEAVY_FIXTURES

    defined = {node.name for path in TESTS.glob("*.py") for node in ast.walk(ast.parse(path.read_text()))
               if isinstance(node, ast.FunctionDef)}
    assert HEAVY_FIXTURES.keys() <= defined, HEAVY_FIXTURES.keys() - defined


MODULE = '''
import os
import pytest

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return os.environ.get("PYTEST_XDIST_WORKER", "main")

@pytest.mark.parametrize("i", range(4))
def test_x(built, i):
    with open(os.environ["WORKERS_LOG"], "a") as log:
        log.write(f"{__name__} {built} {os.environ.get('PYTEST_XDIST_WORKER', 'main')}\\n")
'''


def _two_workers(tmp_path: Path, sizes: dict[str, int], *args: str) -> list[list[str]]:
    """pytest -n 2 with the suite's scheduling plugin (tests/xdist_files.py) over generated files of `sizes` tests;
    the rows (module, worker that built the module fixture, worker that ran the test) in the order they ran."""
    import os
    import subprocess
    import sys

    for name, n in sizes.items():
        (tmp_path / f"{name}.py").write_text(MODULE.replace("range(4)", f"range({n})"))
    log = tmp_path / "workers.log"
    env = {**os.environ, "WORKERS_LOG": str(log), "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "xdist_files", "-n", "2",
                        "--rootdir", str(tmp_path), *args, str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [line.split() for line in log.read_text().splitlines()]


@pytest.mark.slow  # pytest runs with two xdist workers
def test_under_two_workers_a_modules_tests_share_one_worker_and_its_module_fixtures(tmp_path: Path):
    """`-n 2` hands out whole test files: a module fixture (a Prefect server, a sweep, a micro lab build) is built
    once, not once per worker. Before: `--dist loadgroup` with `xdist_group` marks, which pytest-xdist 3.8 under
    pytest 9.2 ignores without a word (pytest-xdist issue 1386), so the flows_sweep module built its Prefect server
    and sweep on both workers."""
    rows = _two_workers(tmp_path, {"test_one": 4, "test_two": 4, "test_three": 4})
    assert len(rows) == 12
    for module in ("test_one", "test_two", "test_three"):
        workers = {(built, ran) for name, built, ran in rows if name == module}
        assert len(workers) == 1, (module, workers)  # every test of the module on the worker that built its fixture


def test_files_are_handed_out_longest_first_by_their_stated_wall_time():
    """A file with one long test goes before a file with many short ones (xdist's own file scheduler orders files
    by their number of tests, so test_flows_deployment's single 2-minute test started last, alone on one worker)."""
    from types import SimpleNamespace

    from xdist_files import longest_files_first

    def item(nodeid: str, slow: dict | None) -> SimpleNamespace:
        mark = None if slow is None else SimpleNamespace(kwargs=slow)
        return SimpleNamespace(nodeid=nodeid, get_closest_marker=lambda name, mark=mark: mark if name == "slow" else None)

    items = [*(item(f"tests/test_a.py::t{i}", None) for i in range(40)),
             item("tests/test_b.py::slow", {}), item("tests/test_b.py::fast", None),
             item("tests/test_c.py::deploy", {"wall_s": 110}),
             *(item(f"tests/test_d.py::t{i}", {}) for i in range(3))]
    longest_files_first(items)
    assert [i.nodeid for i in items][:6] == ["tests/test_c.py::deploy", "tests/test_d.py::t0", "tests/test_d.py::t1",
                                             "tests/test_d.py::t2", "tests/test_b.py::slow", "tests/test_b.py::fast"]
    assert items[-1].nodeid == "tests/test_a.py::t39"


def test_the_suite_runs_in_one_process_too(tmp_path: Path):
    """`python -m pytest -p no:xdist` (one process, the quickest way to run one file) still starts: the scheduling
    plugin's hook is optional, and no xdist option is in the project's addopts."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "--collect-only", str(TESTS / "test_suite.py")], capture_output=True, text=True, timeout=300,
                       cwd=TESTS.parent)
    assert r.returncode == 0 and "error" not in r.stderr.lower(), r.stdout[-2000:] + r.stderr[-2000:]


def test_the_vbench_worker_tests_leave_the_environment_as_they_found_it():
    """The VBench worker sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for its own process; called in a test's process it
    leaked into every later test of that worker (a Stage 2 resume in-process then failed in torch.load)."""
    import os
    import subprocess
    import sys

    code = ("import os, sys, pytest\n"
            "rc = pytest.main(['-q', '-p', 'no:cacheprovider', '-p', 'no:xdist', sys.argv[1], '-k', 'worker_runs'])\n"
            "print('LEAKED' if 'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD' in os.environ else 'CLEAN', rc)\n")
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    r = subprocess.run([sys.executable, "-c", code, str(TESTS / "test_vbench_runner.py")], capture_output=True,
                       text=True, timeout=300, cwd=TESTS.parent, env=env)
    assert "CLEAN 0" in r.stdout.splitlines(), r.stdout[-2000:] + r.stderr[-2000:]
