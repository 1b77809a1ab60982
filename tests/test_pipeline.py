"""dvc.yaml tells the truth: it is what the code says (sara/pipeline.py), every stage's deps cover the import
closure of its command, and every stage lists exactly the params sections or keys its code reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from sara.config import Params, load_params
from sara.deps import NEUTRAL, ROOT, RUNTIME_DEPS, import_closure, is_marker
from sara.pipeline import render, run_of, stages
from sara.runs import DAG_RUNS, DAG_SAMPLE_RUNS, Run

REPO = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
# Every stage opens its MLflow run in experiment `project.mlflow_experiment` with the `project.scale` tag
# (sara.tracking, neutral), so `project` is listed everywhere even where no computation reads it.
ALWAYS = {"project"}
# The run registry names each run's upstream output folders for the DAG and the resume fingerprint; no stage
# computes anything from those reads.
NOT_SCANNED = {"sara/runs.py"}
# Calls through a registry (the callee is looked up at run time): the functions such a call can reach.
DISPATCH = {"build": ["_build_sft", "_build_videorepa", "_build_moalign", "_build_sara"]}  # sara.methods.REGISTRY


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_dvc_yaml_is_what_the_code_says():
    assert (REPO / "dvc.yaml").read_text() == render(stages(load_params(REPO / "params.yaml"))), \
        "dvc.yaml is out of date: run `python -m sara.pipeline`"


def _module_of(cmd: str) -> str:
    from sara.cli import STAGES

    return f"sara/stages/{STAGES[cmd.split()[1]]}.py"


# The code digests (sara/stages/code.py) -> the stage that writes them (`code`).
DIGESTS = {o: s for s in DVC.values() for o in s.get("outs", []) if o.startswith("tmp/code/")}


def _code_deps(name: str) -> list[str]:
    """A stage's deps, and through a code digest it reads the deps of the stage that writes the digest."""
    deps = DVC[name]["deps"]
    return [*deps, *(f for d in deps if d in DIGESTS for f in DIGESTS[d]["deps"])]


@pytest.mark.parametrize("name", list(DVC))
def test_every_stage_depends_on_the_import_closure_of_its_command(name: str):
    """Computed from the command in dvc.yaml (`sara <stage>` -> sara/stages/<module>.py), not from the generator."""
    deps = _code_deps(name)
    covered = lambda f: any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)  # noqa: E731
    missing = [f for f in import_closure(_module_of(DVC[name]["cmd"])) if not covered(f)]
    assert not missing, f"stage {name} misses deps on {', '.join(missing)}"


def test_the_closure_follows_lazy_imports_and_the_code_that_builds_captions():
    closure = import_closure("sara/stages/train_dit.py")
    for f in ("sara/data/mtss.py", "sara/data/clips.py", "sara/data/video_io.py", "sara/masks/store.py",
              "sara/models/encoders.py", "sara/losses/diffusion.py", "configs/deepspeed"):
        assert f in closure, f
    assert "sara/tracking.py" not in closure and "sara/cli.py" not in closure  # neutral
    assert {"sara/models/aligner.py", "sara/train/stage1.py", "sara/losses/aligner.py"} <= set(
        import_closure("sara/stages/eval_aligner.py"))
    assert "sara/data/synthetic/spec.py" in import_closure("sara/stages/sample.py")


def _is_face(rel: str) -> bool:
    """A package's face: only a docstring, imports from its own package and `__all__` (its closure is followed)."""
    package = ".".join(Path(rel).parent.parts)
    for node in ast.parse((ROOT / rel).read_text()).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + "."):
            continue
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]:
            continue
        if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)):
            return False
    return True


def test_neutral_modules_exist_and_package_markers_hold_no_code():
    for rel in NEUTRAL:
        assert (ROOT / rel).is_file(), rel
    for init in ROOT.glob("sara/**/__init__.py"):
        rel = init.relative_to(ROOT).as_posix()
        if rel not in NEUTRAL and rel not in RUNTIME_DEPS:
            assert is_marker(rel) or _is_face(rel), f"{rel} holds code: it is neither a package marker nor a face"
    assert "sara/data/synthetic/render.py" in import_closure("sara/stages/data.py")  # a face's closure is followed


def test_files_found_through_dunder_file_or_resources_are_declared_runtime_deps():
    """A module that locates files next to itself reads or runs them at run time: they must be declared."""
    for path in [*ROOT.glob("sara/**/*.py"), *ROOT.glob("evaluation/**/*.py")]:
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        if rel in NEUTRAL or rel == "evaluation/vbench/worker.py":  # the worker locates the installed vbench package
            continue
        if re.search(r"Path\(__file__\)|resources\.files\(", text):
            assert rel in RUNTIME_DEPS, f"{rel} reads files next to it: declare them in sara.deps.RUNTIME_DEPS"


def _definitions(files: list[str]) -> dict[str, list[ast.AST]]:
    """Function and class definitions of the closure by simple name (a name defined twice keeps both)."""
    defs: dict[str, list[ast.AST]] = {}
    for rel in files:
        if rel.endswith(".py") and rel not in NOT_SCANNED:
            for node in ast.walk(ast.parse((ROOT / rel).read_text())):
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                    defs.setdefault(node.name, []).append(node)
    return defs


def _passes_params(call: ast.Call) -> bool:
    args = [*call.args, *(k.value for k in call.keywords)]
    return any(isinstance(a, ast.Name) and a.id == "params" for a in args)


def _reads(module: str) -> set[str]:
    """`params.<section>[.<key>]` chains read where the params object goes: the stage's `run`, then every function
    or class of the import closure it is passed to, transitively (a section passed on whole reads as the section)."""
    sections = set(Params.model_fields)
    defs = _definitions(import_closure(module))
    stage_tree = ast.parse((ROOT / module).read_text())
    todo = [n for n in stage_tree.body if isinstance(n, ast.FunctionDef) and n.name == "run"]
    seen: set[int] = set()
    out: set[str] = set()
    while todo:
        fn = todo.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        parents = {id(c): n for n in ast.walk(fn) for c in ast.iter_child_nodes(n)}
        for node in ast.walk(fn):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "params" \
                    and node.attr in sections:
                up = parents.get(id(node))
                out.add(f"{node.attr}.{up.attr}" if isinstance(up, ast.Attribute) else node.attr)
            if isinstance(node, ast.Call) and _passes_params(node):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
                for callee in DISPATCH.get(name or "", [name or ""]):
                    todo.extend(defs.get(callee, []))
    return out


def _covers(listed: str, read: str) -> bool:
    return read == listed or read.startswith(listed + ".") or listed.startswith(read + ".")


# check_params tracks the whole file (tests/test_faults_params.py), not the sections a code path reads
@pytest.mark.parametrize("name", [n for n in DVC if run_of(n) is None and n != "check_params"]
                         + ["train_dit", "sample", "mechanism"])
@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_every_stage_lists_exactly_the_params_its_code_reads(name: str):
    if name == "train_dit":  # one module for every run: its reads are the union over the runs
        listed = {k for r in DAG_RUNS for k in DVC[f"train_dit-{r}"]["params"]}
        module = "sara/stages/train_dit.py"
    elif name in ("sample", "mechanism"):  # one module, the same params for every run
        per_run = [DVC[n]["params"] for n in DVC if n.startswith(f"{name}-")]
        assert per_run and all(p == per_run[0] for p in per_run), f"{name}-<run> stages list different params"
        listed, module = set(per_run[0]), f"sara/stages/{name}.py"
    else:
        listed, module = set(DVC[name].get("params", [])), _module_of(DVC[name]["cmd"])
    reads = _reads(module)
    missing = sorted(r for r in reads if not any(_covers(k, r) for k in listed))
    extra = sorted(k for k in listed - ALWAYS if not any(_covers(k, r) for r in reads))
    assert not missing, f"stage {name} reads params {missing} it does not list"
    assert not extra, f"stage {name} lists params {extra} it never reads"


def test_per_run_stages_come_from_the_run_registry():
    assert [n for n in DVC if n.startswith("train_dit-")] == [f"train_dit-{r}" for r in DAG_RUNS]
    assert [n for n in DVC if n.startswith("sample-")] == [f"sample-{r}" for r in DAG_SAMPLE_RUNS]
    for r in DAG_RUNS:
        stage = DVC[f"train_dit-{r}"]
        assert stage["cmd"] == f"sara train-dit --run {r}" and stage["params"] == list(r.params)
        assert len(set(stage["deps"])) == len(stage["deps"]) and len(set(stage["params"])) == len(stage["params"])
    for name in ("vbench", "rubric"):  # evaluation per run: each reads its own run's samples only (clipscore: below)
        runs = (["oracle"] if name == "rubric" else []) + list(DAG_SAMPLE_RUNS)
        assert [n for n in DVC if n.startswith(f"{name}-")] == [f"{name}-{r}" for r in runs]
        for r in runs:
            stage = DVC[f"{name}-{r}"]
            assert stage["cmd"] == f"sara {name} --run {r}"
            assert [d for d in stage["deps"] if d.startswith("outputs/samples/")] == (
                [] if r == "oracle" else [f"outputs/samples/{r}"])
            assert stage["metrics"] == [{f"outputs/metrics/{r}/{name}.json": {"cache": False}}]
    report = DVC["report"]
    assert [d for d in report["deps"] if d.startswith("outputs/")] == [
        *(f"outputs/rubric/{r}" for r in ("oracle", *DAG_SAMPLE_RUNS)), *(f"outputs/vbench/{r}" for r in DAG_SAMPLE_RUNS)]
    assert "metrics" not in report  # the numbers live per run

def test_clipscore_stages_exist_only_where_clipscore_can_score():
    """A disabled CLIP score (embedded and lab: no checkpoint) has no stages: each would only write "disabled" at
    the cost of a DVC stage and a process per sampled run. Enabled, one stage per sampled run, as the others."""
    assert not [n for n in DVC if n.startswith("clipscore")]
    params = load_params(REPO / "params.yaml")
    assert not params.clipscore.enabled
    enabled = params.model_copy(update={"clipscore": params.clipscore.model_copy(update={"enabled": True})})
    specs = {s.name: s for s in stages(enabled) if s.name.startswith("clipscore")}
    assert list(specs) == [f"clipscore-{r}" for r in DAG_SAMPLE_RUNS]
    for r in DAG_SAMPLE_RUNS:
        spec = specs[f"clipscore-{r}"]
        assert spec.cmd == f"sara clipscore --run {r}" and spec.inputs == (f"outputs/samples/{r}",)
        assert spec.metrics == (f"outputs/metrics/{r}/clipscore.json",)


def test_vbench_stages_exist_only_where_vbench_is_enabled():
    """The lab disables VBench (it judges against ground truth): its 13 `vbench-<run>` stages still started a
    process each, 13-70 s under a loaded GPU machine (lab run 6), only to write "disabled". Disabled, there are
    no vbench stages, nor their code stage, and the report does not wait for them."""
    params = load_params(REPO / "configs" / "lab.yaml")
    assert not params.vbench.enabled
    specs = {s.name: s for s in stages(params)}
    assert not [n for n in specs if n.startswith("vbench")] and "tmp/code/vbench.json" not in specs["code"].outs
    assert not [d for d in specs["report"].inputs if "vbench" in d]
    assert [n for n in DVC if n.startswith("vbench-")] == [f"vbench-{r}" for r in DAG_SAMPLE_RUNS]  # enabled



def test_per_run_stages_read_their_kinds_code_digest_and_the_closure_is_listed_once():
    """DVC rewrites the whole dvc.lock after every stage it runs, so its size is paid ~50 times per `dvc repro`.
    Each kind of per-run stage lists its import closure once, in the stage `code`; its stages read their kind's
    digest. With the closures listed per run, dvc.yaml held ~2000 deps and dvc.lock 0.3 MB."""
    from sara.stages.code import KINDS

    per_run = [n for n in DVC if run_of(n) is not None]
    assert per_run
    for name in per_run:
        kind = name.split("-", 1)[0]
        assert kind in KINDS
        digests = [d for d in DVC[name]["deps"] if d.startswith("tmp/code/")]
        assert digests == [f"tmp/code/{kind}.json"], name
        assert not [d for d in DVC[name]["deps"] if d.endswith(".py")], f"{name} lists code files itself"
        code = DVC["code"]
        assert kind in code["cmd"].split() and digests[0] in code["outs"] and "params" not in code
        assert set(import_closure(f"sara/stages/{kind}.py")) <= set(code["deps"])
    assert sum(len(s["deps"]) for s in DVC.values()) < 800


def test_one_stage_writes_every_code_digest():
    """Each DVC stage costs a round-trip of its own (DVC rewrites the whole dvc.lock after it, ~2 s on 2 cores): the
    five `code_<kind>` stages, 0.6 s of work each, were one stage's worth of work in five. An edit still reruns only
    the stages of the kinds whose closure it is in: the other digests come out unchanged (test below)."""
    from sara.stages.code import KINDS

    writers = [n for n, s in DVC.items() if s["cmd"].startswith("sara code")]
    assert writers == ["code"]
    kinds = [k for k in KINDS if any(n.startswith(f"{k}-") for n in DVC)]
    assert DVC["code"]["cmd"] == f"sara code --of {' '.join(kinds)}"
    assert DVC["code"]["outs"] == [f"tmp/code/{k}.json" for k in kinds]


def test_the_code_digest_is_the_content_hash_of_the_kinds_closure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import json

    from sara.deps import code_digest
    from sara.stages import code

    monkeypatch.chdir(tmp_path)
    out, other = code.run(P, ["rubric", "vbench"])
    assert (out, other) == (Path("tmp/code/rubric.json"), Path("tmp/code/vbench.json"))
    assert json.loads(out.read_text()) == {"stage": "rubric", "code": code_digest("sara/stages/rubric.py")}
    assert code_digest("sara/stages/rubric.py") != code_digest("sara/stages/vbench.py")


P = load_params(REPO / "params.yaml")


def _data_deps(name: str) -> list[str]:
    """The upstream outputs a stage reads: its deps minus its code closure or its kind's code digest."""
    code = set(import_closure(_module_of(DVC[name]["cmd"])))
    return [d for d in DVC[name]["deps"] if d not in code and d not in DIGESTS]


def test_every_data_dep_is_the_output_of_a_stage():
    """A data dep no stage writes is a wiring error (two params naming one folder, a typo): `dvc repro` from an
    empty cache would stop at it."""
    outs = [o for s in DVC.values() for o in s.get("outs", [])]
    inside = lambda d: any(d == o or d.startswith(o.rstrip("/") + "/") for o in outs)  # noqa: E731
    for name in (n for n in DVC if n != "code"):  # the code stage's deps are all code
        orphans = [d for d in _data_deps(name) if not inside(d)]
        assert not orphans, f"stage {name} reads {orphans}, which no stage writes"


def test_the_mechanism_readout_runs_before_and_after_stage2_for_every_run():
    from sara.stages.mechanism import RUNS  # what `sara mechanism --run` accepts

    assert [n for n in DVC if n.startswith("mechanism-")] == [f"mechanism-{r}" for r in DAG_SAMPLE_RUNS]
    assert set(DAG_SAMPLE_RUNS) <= set(RUNS)
    for r in DAG_SAMPLE_RUNS:
        stage = DVC[f"mechanism-{r}"]
        assert stage["cmd"] == f"sara mechanism --run {r}"
        model = [P.dit.base_dir] if r == "base" else [P.dit.base_dir, f"{P.train.out_dir}/{r}"]
        aligner = [P.aligner.out_dir] if r == "base" or r.startswith("sara-") else []  # budget shares / SARA's encoder
        assert _data_deps(f"mechanism-{r}") == [*model, P.data.out_dir, P.pretrain.vfm.out_dir, *aligner]
        assert stage["outs"] == [f"{P.mechanism.out_dir}/{r}.json"]


def test_compare_reads_every_rubric_and_mechanism_output_of_the_dag():
    compare = DVC["compare"]
    assert compare["cmd"] == "sara compare" and compare["outs"] == [P.comparison.out_dir]
    deps = set(compare["deps"])
    for r in ("oracle", *DAG_SAMPLE_RUNS):
        assert set(DVC[f"rubric-{r}"]["outs"]) <= deps, f"compare does not read rubric-{r}"
    for r in DAG_SAMPLE_RUNS:
        assert set(DVC[f"mechanism-{r}"]["outs"]) <= deps, f"compare does not read mechanism-{r}"
        assert f"{P.sample.out_dir}/{r}" in deps  # the qualitative grid reads the sampled videos


def test_sft_reads_no_alignment_params_or_inputs():
    sft = DVC["train_dit-sft"]
    assert sft["params"] == ["project", "data", "dit", "train"]
    assert "models/aligner" not in sft["deps"] and "data/masks" not in sft["deps"]
    assert {"models/aligner", "data/masks"} <= set(DVC["train_dit-sara-or"]["deps"])
    assert Run.parse("sara-or").params[-1] == "trd"


def _matrix_params(runs: list[str]) -> Params:
    from sara.config import params_from_dict

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["matrix"]["runs"] = runs
    raw["report"]["main_run"] = "sara-or"
    raw["study"]["baselines"] = ["base", "sft"]  # the study compares sampled runs only
    raw["comparison"]["references"] = ["sft"]  # and the comparison pairs against trained runs only
    return params_from_dict(raw)


def test_the_params_run_matrix_gives_the_per_run_stages_targets_included():
    """matrix.runs, not a list in code, decides which runs the DAG trains: the lab's TRD-target controls are
    stages of their own (`train_dit-videorepa-oracle`), reading the lab encoder's folder for its grid."""
    specs = {s.name: s for s in stages(_matrix_params(["sft", "sara-or", "videorepa@oracle", "sara-or@random"]))}
    assert [n for n in specs if n.startswith("train_dit-")] == [
        "train_dit-sft", "train_dit-sara-or", "train_dit-videorepa-oracle", "train_dit-sara-or-random"]
    oracle = specs["train_dit-videorepa-oracle"]
    assert oracle.cmd == "sara train-dit --run videorepa@oracle" and oracle.outs == ("models/dit/videorepa@oracle",)
    assert P.pretrain.vfm.out_dir in oracle.inputs and P.aligner.out_dir not in oracle.inputs
    assert P.aligner.out_dir in specs["train_dit-sara-or-random"].inputs  # SARA's saliency: the lab aligner
    for stage in ("sample", "rubric", "mechanism"):
        assert f"{stage}-sara-or-random" in specs and f"{stage}-moalign" not in specs
    assert "outputs/rubric/videorepa@oracle" in specs["compare"].inputs
    assert f"{P.mechanism.out_dir}/sara-or@random.json" in specs["compare"].inputs


def test_the_lab_matrix_is_the_comparison_of_the_issue():
    lab = load_params(REPO / "configs" / "lab.yaml")
    trained = [s.name for s in stages(lab) if s.name.startswith("train_dit-")]
    assert len(trained) == 12 and {"train_dit-sft", "train_dit-moalign", "train_dit-videorepa-random",
                                   "train_dit-sara-or-random"} <= set(trained)
    for target in ("", "-oracle"):
        assert {f"train_dit-{m}{target}" for m in ("videorepa", "sara-and", "sara-or", "sara-xor")} <= set(trained)


def test_a_stale_dvc_yaml_is_detected(tmp_path: Path):
    from sara.pipeline import out_of_date

    assert not out_of_date()
    other = tmp_path / "params.yaml"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["matrix"]["runs"] = ["sft", "sara-or"]
    raw["study"]["baselines"] = ["base", "sft"]
    raw["comparison"]["references"] = ["sft"]
    other.write_text(yaml.safe_dump(raw))
    assert out_of_date(other)


def test_a_dvc_yaml_with_frozen_stages_is_not_stale(tmp_path: Path):
    """`dvc freeze` (a base brought in by scripts/lab_base_bundle.py) marks stages `frozen: true` and rewrites
    dvc.yaml in its own layout, each stage's params list sorted: the same stages, so `sara repro` must not refuse
    it as out of date (it did, on the first run with a carried base); a changed command still is."""
    from sara.pipeline import out_of_date

    raw = yaml.safe_load((REPO / "dvc.yaml").read_text())
    raw["stages"]["corpus"]["frozen"] = True
    for stage in raw["stages"].values():  # dvc freeze sorts each stage's params (and any list DVC keeps as a set)
        for key in ("params", "deps"):
            if key in stage:
                stage[key] = sorted(stage[key], key=str)
    frozen = tmp_path / "dvc.yaml"
    frozen.write_text(yaml.safe_dump(raw, sort_keys=True, width=60))
    assert not out_of_date(REPO / "params.yaml", frozen)
    raw["stages"]["corpus"]["cmd"] += " --again"
    frozen.write_text(yaml.safe_dump(raw))
    assert out_of_date(REPO / "params.yaml", frozen)


def test_a_bad_params_file_is_one_error_not_a_traceback(tmp_path: Path, capsys):
    """`python -m sara.pipeline --params bad.yaml` names the bad key and exits 2, as every `sara` command does;
    dvc.yaml is left as it was."""
    from sara.pipeline import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("trd: {layer: 0}\n")
    before = (ROOT / "dvc.yaml").read_text()
    assert main(["--params", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid params in") and "trd.layer" in err and "Traceback" not in err
    assert main(["--params", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml" in capsys.readouterr().err
    assert (ROOT / "dvc.yaml").read_text() == before


def test_every_uncached_output_is_versioned_by_git_or_ignored():
    """A `cache: false` output (metrics, plots) is left to git by DVC: it must be committed, or ignored when it only
    records this machine's timings. One that is neither shows as untracked after every `dvc repro` and is missing
    from `dvc metrics show` on a fresh clone (before: each run's train_dit.json, the aligner's timings, the study's
    metrics and plots)."""
    import subprocess

    uncached = []
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                if isinstance(entry, dict):
                    (path, opts), = entry.items()
                    if opts and opts.get("cache") is False:
                        uncached.append(path)
    assert uncached
    tracked = set(subprocess.run(["git", "ls-files", "--", *uncached], cwd=ROOT, capture_output=True, text=True,
                                 check=True).stdout.split())
    ignored = subprocess.run(["git", "check-ignore", "--no-index", "--", *uncached], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    neither = [p for p in uncached
               if p not in ignored and p not in tracked and not any(t.startswith(p.rstrip("/") + "/") for t in tracked)]
    assert not neither, f"neither committed nor ignored: {neither}"
