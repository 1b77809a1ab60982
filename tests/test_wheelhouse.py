"""scripts/wheelhouse.py: the dependency walk (preinstalled, left out, markers, extras, pins) on local stand-in wheels,
and the committed offline lists parse. No network: the fetcher is replaced by one that serves wheels from a dict."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "scripts" / "wheelhouse.py")
wh = importlib.util.module_from_spec(_spec)
sys.modules["wheelhouse"] = wh  # dataclasses look their module up while the script loads
_spec.loader.exec_module(wh)

ENV = wh.target_environment("3.12")


def test_markers_are_evaluated_for_the_target_python_and_the_requested_extras() -> None:
    assert wh.applies(Requirement('funcy>=1.14; python_version < "3.12"'), ENV, set()) is False
    assert wh.applies(Requirement('orjson<4; implementation_name == "cpython"'), ENV, set()) is True
    assert wh.applies(Requirement('pywin32; sys_platform == "win32"'), ENV, set()) is False
    assert wh.applies(Requirement('tqdm; extra == "tqdm"'), ENV, set()) is False
    assert wh.applies(Requirement('tqdm; extra == "tqdm"'), ENV, {"tqdm"}) is True


def test_a_preinstalled_version_counts_only_when_it_fits() -> None:
    pre = wh.parse_preinstalled(["certifi==2026.7.22", "Typing_Extensions==4.16.0", "anything"])
    assert wh.met_by_preinstalled(Requirement("typing-extensions>=4.16"), pre) is True
    assert wh.met_by_preinstalled(Requirement("certifi>=2026.10.19"), pre) is False  # a newer wheel must travel
    assert wh.met_by_preinstalled(Requirement("anything<1"), pre) is True  # no version listed: taken as fitting
    assert wh.met_by_preinstalled(Requirement("pydantic"), pre) is None


def test_list_files_drop_comments(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text("# header\n\npygit2   # why\ncelery\n")
    assert wh.read_list(f) == ["pygit2", "celery"]
    with pytest.raises(SystemExit, match="not name==version"):
        wh.parse_pins(["dvc>=3"])


def _index(tmp_path: Path, packages: dict[str, tuple[str, list[str]]]):
    """Stand-in wheels served by name (one version each) through the fetcher signature `collect` uses."""
    folder = tmp_path / "index"
    folder.mkdir()
    wheels = {name: wh.stub_wheel(folder, name, Version(v), reqs) for name, (v, reqs) in packages.items()}
    asked: list[str] = []

    def fetch(spec, python_version, platforms, scratch):
        asked.append(spec)
        return wheels[Requirement(spec).name], False

    return fetch, asked


def test_walk_skips_preinstalled_and_left_out_and_follows_markers_and_extras(tmp_path: Path) -> None:
    fetch, asked = _index(tmp_path, {
        "tool": ("1.0", ["lib[fast]>=2", "numpy>=1", "queue-pkg", 'old-shim; python_version < "3.12"']),
        "lib": ("2.1", ['speedup; extra == "fast"', 'docs-pkg; extra == "docs"']),
        "speedup": ("0.3", []),
    })
    picked, skipped = wh.collect(["tool==1.0"], {"numpy": Version("2.5.2")}, {"lib": Version("2.1")}, {"queue-pkg"},
                                 "3.12", ["manylinux_2_28_x86_64"], tmp_path / "scratch", log=lambda *_: None,
                                 fetch=fetch)
    assert sorted(picked) == ["lib", "speedup", "tool"]
    assert asked == ["tool==1.0", "lib==2.1", "speedup"]  # the pin is used; an unpinned need takes its specifier
    assert picked["lib"].needed_by == {"tool==1.0"}
    assert set(skipped["preinstalled"]) == {"numpy"} and set(skipped["left_out"]) == {"queue-pkg"}


def test_two_needs_that_disagree_on_a_version_stop_the_walk(tmp_path: Path) -> None:
    fetch, _ = _index(tmp_path, {"a": ("1.0", ["c<2"]), "b": ("1.0", ["c>=2"]), "c": ("1.5", [])})
    with pytest.raises(SystemExit, match="c: b==1.0 needs c>=2, but 1.5 was picked"):
        wh.collect(["a", "b"], {}, {}, set(), "3.12", ["manylinux_2_28_x86_64"], tmp_path / "s",
                   log=lambda *_: None, fetch=fetch)


def test_stand_in_for_a_left_out_package_fits_every_specifier() -> None:
    assert wh.stand_in_version("gto", {"<2,>=1.6.0"}, {}) == Version("1.6.0")
    assert wh.stand_in_version("pygit2", {">=1.14.0"}, {"pygit2": Version("1.21.0")}) == Version("1.21.0")
    assert wh.stand_in_version("celery", {""}, {}) == Version("0")


def test_committed_offline_lists_parse() -> None:
    offline = ROOT / "configs" / "offline"
    pre = wh.parse_preinstalled(wh.read_list(offline / "preinstalled.txt"))
    assert pre["torch"] is not None and "dvc" not in pre
    pins = wh.parse_pins(wh.read_list(offline / "pins.txt"))
    for line in wh.read_list(offline / "requirements.txt"):
        req = Requirement(line)
        assert req.specifier.contains(pins[req.name.lower()]), line
    assert not {n.lower() for n in wh.read_list(offline / "leave_out.txt")} & set(pre)
