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
