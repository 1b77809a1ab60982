"""`sara repro --extra-train-seeds K [K ...]`: train every method again with other training seeds, for the
comparison's training-seed spread.

The DAG trains each method once, with `train.seed`. `sara compare` reads a method's other training seeds from
`<rubric.out_dir>/<run>.seed<k>/` (evaluation/comparison/). This module produces those folders with DVC:
  1. for each extra seed k, params.yaml gets `train.seed: k`; DVC reproduces each method's rubric stage and what
     it needs (Stage 2 and sampling; the base is untouched, it does not read `train`); each method's rubric
     folder is copied to `<run>.seed<k>/`;
  2. params.yaml gets its own text back, whatever happened, and the DAG is reproduced again: the main seed's
     outputs come back from DVC's run cache, so nothing trains twice;
  3. `compare` is reproduced with `-f`. Its DVC dependencies are the main seed's folders, which did not change,
     so without `-f` DVC would not run it again to read the new seeds.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

import yaml

from flows.dag import Dag
from flows.dvc_runner import run_dvc
from sara.runs import Run


def method_runs(dag: Dag, targets: list[str] | None = None) -> list[Run]:
    """The runs that Stage 2 trains (`train_dit-<run>`), within the targets and what they need if given."""
    scope = dag.needed_by(targets)
    runs = [s.row for n, s in dag.stages.items() if s.base == "train_dit" and n in scope]
    return sorted((r for r in runs if isinstance(r, Run)), key=str)


def rubric_stages(dag: Dag, runs: list[Run]) -> list[str]:
    """Each run's rubric stage (`rubric-<run>` or a foreach `rubric@<run>`)."""
    by_run = {s.row: n for n, s in dag.stages.items() if s.base == "rubric"}
    missing = [r for r in runs if r not in by_run]
    if missing:
        raise ValueError(f"no rubric stage for run {str(missing[0])!r}: extra training seeds are judged by it")
    return [by_run[r] for r in runs]


def with_train_seed(params_text: str, seed: int) -> str:
    """params.yaml text with `train.seed` set to `seed` (the rest as YAML: comments are not kept)."""
    raw = yaml.safe_load(params_text)
    raw.setdefault("train", {})["seed"] = seed
    return yaml.safe_dump(raw, sort_keys=False)


def check_extra_seeds(repo: Path, seeds: list[int]) -> None:
    """Fail before any work when an extra seed is the one the DAG already trains, or repeats."""
    main_seed = (yaml.safe_load((repo / "params.yaml").read_text()).get("train") or {}).get("seed")
    if main_seed in seeds:
        raise ValueError(f"--extra-train-seeds {main_seed}: that is train.seed, which the DAG already trains")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--extra-train-seeds {','.join(map(str, seeds))}: a seed is listed twice")


def train_extra_seeds(
    repo: Path,
    dag: Dag,
    seeds: list[int],
    reproduce: Callable[[list[str] | None, str], bool],
    targets: list[str] | None,
    env: Mapping[str, str],
    log: Callable[[str], object] = print,
) -> bool:
    """Steps 1-3 of the module docstring; `reproduce(targets, tag)` is one `sara repro` pass. True when all ran."""
    params_file = repo / "params.yaml"
    original = params_file.read_text()
    raw = yaml.safe_load(original)
    main_seed = raw["train"]["seed"]
    check_extra_seeds(repo, seeds)
    rubric_dir = repo / raw.get("rubric", {}).get("out_dir", "outputs/rubric")
    runs = method_runs(dag, targets)
    rubrics = rubric_stages(dag, runs)
    ok = True
    try:
        for seed in seeds:
            log(f"[seeds] train.seed {seed}: {len(runs)} runs ({', '.join(map(str, runs))})")
            params_file.write_text(with_train_seed(original, seed))
            if not reproduce(rubrics, f"seed{seed}"):
                log(f"[seeds] train.seed {seed} did not finish: its rubric folders are not kept")
                ok = False
                break
            for run in runs:
                kept = rubric_dir / f"{run}.seed{seed}"
                shutil.rmtree(kept, ignore_errors=True)
                shutil.copytree(rubric_dir / run.name, kept)
            log(f"[seeds] kept {len(runs)} rubric folders as <run>.seed{seed}/ under {rubric_dir}")
    finally:
        params_file.write_text(original)
    log(f"[seeds] params.yaml restored (train.seed {main_seed}); its outputs come back from DVC's run cache")
    ok = reproduce(targets, "restore") and ok
    scope = dag.needed_by(targets)
    for compare in (n for n, s in dag.stages.items() if s.base == "compare" and n in scope and ok):
        run_dvc(["--wait-for-lock", "repro", "-f", "-s", compare], repo, env, log=log)
    return ok
