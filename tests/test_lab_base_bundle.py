"""scripts/lab_base_bundle.py: a built base carried to another checkout, checked against its params and sources,
and frozen there so that only the stages below it run. A three-stage DVC repository stands in for the lab DAG:
corpus (too large to carry) -> base -> down."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from flows_testlib import init_repo

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1"}

DVC_YAML = {"stages": {
    "corpus": {"cmd": "python src/corpus.py", "deps": ["src/corpus.py"], "params": ["corpus"], "outs": ["data/corpus"]},
    "base": {"cmd": "python src/base.py", "deps": ["src/base.py", "data/corpus"], "params": ["base"],
             "outs": ["models/base"]},
    "down": {"cmd": "python src/down.py", "deps": ["src/down.py", "models/base"], "outs": ["out/down.txt"]},
}}
SOURCES = {
    "corpus.py": "import os\nos.makedirs('data/corpus', exist_ok=True)\nopen('data/corpus/a.txt', 'w').write('corpus')\n",
    "base.py": "import os\nos.makedirs('models/base/e2', exist_ok=True)\n"
               "w = open('data/corpus/a.txt').read() + ' trained'\n"
               "open('models/base/w.txt', 'w').write(w)\nopen('models/base/e2/w.txt', 'w').write(w)\n",
    "down.py": "import os\nos.makedirs('out', exist_ok=True)\n"
               "open('out/down.txt', 'w').write(open('models/base/w.txt').read() + ' below')\n",
}


def _bundle_module():
    spec = importlib.util.spec_from_file_location("lab_base_bundle", ROOT / "scripts" / "lab_base_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkout(path: Path) -> Path:
    """The toy repository's committed files: sources, params, dvc.yaml; no outputs, no dvc.lock."""
    (path / "src").mkdir(parents=True)
    for name, text in SOURCES.items():
        (path / "src" / name).write_text(text)
    (path / "params.yaml").write_text(yaml.safe_dump({"corpus": {"n": 3}, "base": {"width": 2}}))
    (path / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    init_repo(path)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """A checkout whose base is built (`dvc repro base`), and its bundle."""
    work = _checkout(tmp_path_factory.mktemp("built"))
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "base"], cwd=work, env=ENV, check=True,
                   capture_output=True)
    bundle = work.parent / "base.tar"
    assert _bundle_module().main(["pack", str(work), str(bundle), "--stages", "base"]) == 0
    return work, bundle


def test_the_bundle_carries_what_the_stages_below_read_and_not_the_corpus(built):
    """...and a file whose bytes it already holds (the base DiT saved as both experts) once, the second as a link."""
    _, bundle = built
    with tarfile.open(bundle) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert "bundle.json" in members and members["models/base/e2/w.txt"].isfile()
    assert members["models/base/w.txt"].islnk() and members["models/base/w.txt"].linkname == "models/base/e2/w.txt"
    assert not any(n.startswith("data/corpus") for n in members)


def test_an_unpacked_base_is_frozen_and_only_the_stages_below_it_run(built, tmp_path: Path):
    from flows.dag import load_dag
    from flows.repro import changed_stages, plan

    _, bundle = built
    other = _checkout(tmp_path / "other")
    assert _bundle_module().main(["unpack", str(bundle), str(other)]) == 0
    assert (other / "models" / "base" / "w.txt").read_text() == "corpus trained"
    assert (other / "models" / "base" / "e2" / "w.txt").read_text() == "corpus trained"
    stages = yaml.safe_load((other / "dvc.yaml").read_text())["stages"]
    assert stages["corpus"].get("frozen") and stages["base"].get("frozen") and not stages["down"].get("frozen")
    todo = plan(load_dag(other), changed_stages(other, ENV))
    assert todo == ["down"]  # not corpus, whose output is absent here, nor base
    subprocess.run([sys.executable, "-m", "dvc", "repro", "-q", "-s", "down"], cwd=other, env=ENV, check=True,
                   capture_output=True)
    assert (other / "out" / "down.txt").read_text() == "corpus trained below"
    assert not (other / "data" / "corpus").exists()


def test_both_ends_name_the_base_their_runs_were_trained_on(built, tmp_path: Path, capsys):
    """base_origin.json in the packing and the unpacking work folder holds the same identity, which `id` prints:
    the results of runs trained on one base say so (scripts/lab_collect.sh returns it), and
    `lab_merge_seeds.py --same-base` checks it. Before, nothing in a run's results said which base it used."""
    import json

    work, bundle = built
    other = _checkout(tmp_path / "other")
    assert _bundle_module().main(["unpack", str(bundle), str(other)]) == 0
    capsys.readouterr()
    assert _bundle_module().main(["id", str(bundle)]) == 0
    ident = capsys.readouterr().out.strip()
    assert len(ident) == 64
    for folder in (work, other):
        origin = json.loads((folder / "base_origin.json").read_text())
        assert origin == {"base": ident, "bundle": "base.tar", "outputs": ["models/base"]}


def _stage_params(path: Path, stage: str, keys: list[str]) -> None:
    """The checkout's dvc.yaml with `stage` listing the params `keys`."""
    stages = {**DVC_YAML["stages"], stage: {**DVC_YAML["stages"][stage], "params": keys}}
    (path / "dvc.yaml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))


@pytest.mark.parametrize("change, named", [
    (lambda p: (p / "params.yaml").write_text(yaml.safe_dump({"corpus": {"n": 3}, "base": {"width": 3}})),
     "base was built with base = {'width': 2}"),
    (lambda p: (p / "params.yaml").write_text(yaml.safe_dump({"corpus": {"n": 4}, "base": {"width": 2}})),
     "corpus was built with corpus = {'n': 3}"),
    (lambda p: (p / "src" / "base.py").write_text(SOURCES["base.py"] + "# changed\n"),
     "base was built from another src/base.py"),
    # the stage's params list changed (its code says which keys it reads): named as such, narrower or wider
    (lambda p: _stage_params(p, "base", ["base.width"]),
     "base lists the params ['base.width'] here; it was built listing ['base']"),
    (lambda p: _stage_params(p, "base", ["base", "corpus.n"]),
     "base lists the params ['base', 'corpus.n'] here; it was built listing ['base']"),
])
def test_a_bundle_built_with_other_params_or_code_is_one_line_and_writes_nothing(built, tmp_path: Path, capsys,
                                                                                 change, named):
    _, bundle = built
    other = _checkout(tmp_path / "other")
    change(other)
    dvc_yaml = (other / "dvc.yaml").read_text()
    assert _bundle_module().main(["unpack", str(bundle), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bundle}: {named}") and "\n" not in err
    assert not (other / "models").exists() and (other / "dvc.yaml").read_text() == dvc_yaml


def test_packing_an_unbuilt_base_names_the_missing_output(tmp_path: Path, capsys):
    work = _checkout(tmp_path / "work")
    assert _bundle_module().main(["pack", str(work), str(tmp_path / "b.tar"), "--stages", "base"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {work / 'models/base'}: the base is not built (run `sara repro base` first)"
    assert not (tmp_path / "b.tar").exists()
    shutil.rmtree(work)


def test_a_bundle_damaged_on_the_way_is_one_line_naming_the_file_and_writes_nothing(built, tmp_path: Path, capsys):
    """One flipped byte in a packed file (a part of the split bundle damaged or mixed up in transit) is found
    before anything is extracted: the base would otherwise train every later run from wrong weights, silently."""
    _, bundle = built
    damaged = tmp_path / "damaged.tar"
    shutil.copy(bundle, damaged)
    with tarfile.open(damaged) as tar:
        offset = tar.getmember("models/base/e2/w.txt").offset_data
    with open(damaged, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    other = _checkout(tmp_path / "other")
    dvc_yaml = (other / "dvc.yaml").read_text()
    assert _bundle_module().main(["unpack", str(damaged), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {damaged}: models/base/e2/w.txt is damaged (its sha256 differs from the packed file's): "
                   "carry it again")
    assert not (other / "models").exists() and (other / "dvc.yaml").read_text() == dvc_yaml


def test_a_bundle_cut_short_is_one_line_naming_it(built, tmp_path: Path, capsys):
    """A split bundle joined without its last part: one line naming the file, nothing written."""
    _, bundle = built
    cut = tmp_path / "cut.tar"
    with tarfile.open(bundle) as tar:
        inside = tar.getmember("models/base/e2/w.txt").offset_data + 1  # the cut runs through a packed file
    cut.write_bytes(bundle.read_bytes()[:inside])
    other = _checkout(tmp_path / "other")
    assert _bundle_module().main(["unpack", str(cut), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {cut}: not a whole bundle (") and err.endswith("carry every part again")
    assert not (other / "models").exists()
