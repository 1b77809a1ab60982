"""One results folder from two lab runs that differ only in `train.seed`, for `scripts/lab_compare_records.py`.

    python scripts/lab_merge_seeds.py RUN7 RUN8 --seed 1025 --out MERGED
    python scripts/lab_compare_records.py MERGED --out docs/lab

Each run rebuilt its own base on its own GPU session (a device machine keeps nothing between sessions), so the
second run is a replicate of the whole lab pipeline, base included: its rubric folders are copied in as training
seed `--seed` (`outputs/rubric/<run>.seed<k>/`, which `sara compare` reads as another training seed of <run>), the
base's too. The comparison then averages each row over its replicates and pairs rows by (prompt, sampling seed);
the train-seed spread column holds the replicates' spread, and the intervals resample the replicates
(evaluation/statistics.py). The oracle (the ground truth) is the first run's; so are the mechanism readouts of the
rows both runs have, and the second run's are added for the rows only it has.

Two runs of the same command are also two replicates: the GPU's kernels are not deterministic, so each run draws
its own base and models (docs/lab/replicates.md). Give such a second run an unused label, for instance
`--seed 2`; the comparison reads it as training seed 2. The merged folder keeps the first run's params.yaml, and its
base_origin.json when both runs name the same base (a second seed trained side by side on it).

    python scripts/lab_merge_seeds.py RUN10 RUN11 --same-base --out MERGED

`--same-base`: the second run trained on the first's base, carried to it (`BASE_BUNDLE`, scripts/lab_base_bundle.py),
and both results folders name that base in base_origin.json (the merge refuses, in one line, two that differ or
one that names none). Then the second run's rows are more rows of the same experiment, not another replicate of
the pipeline: a row the first lacks joins under its own name when both runs have one `train.seed`, and as
`<run>.seed<its train.seed>` otherwise; a row both have joins as `<run>.seed<its train.seed>` (refused if that
seed is there already). The second run's base and oracle records are left out: its base is the first's model
(sampled again). The merged folder keeps the first's params.yaml and base_origin.json, so merges chain.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

ORACLE_FOLDER = "oracle"  # the ground truth's records: the same in both runs
BASE_FOLDER = "base"  # the base model's records
ORIGIN = "base_origin.json"  # which carried base a run's Stage 2 trained on (scripts/lab_base_bundle.py)


class MergeError(ValueError):
    """Two results folders that cannot be merged as asked: one line."""


def _base_of(results: Path) -> str:
    origin = results / ORIGIN
    if not origin.is_file():
        raise MergeError(f"{origin} not found: {results} does not say which base it trained on "
                         f"(its run neither packed nor unpacked a base bundle), so --same-base cannot be checked")
    return json.loads(origin.read_text())["base"]


def _train_seed(results: Path) -> int:
    params = results / "params.yaml"
    if not params.is_file():
        raise MergeError(f"{params} not found: --same-base needs each run's train.seed")
    return int(yaml.safe_load(params.read_text())["train"]["seed"])


def merge_same_base(first: Path, second: Path, out: Path) -> list[str]:
    """`--same-base`: `second`'s rows as more rows of `first`'s replicate (see the module's docstring); return the
    folder names they joined under."""
    if _base_of(first) != _base_of(second):
        raise MergeError(f"{first / ORIGIN} and {second / ORIGIN} name different bases: their rows are not one "
                         f"experiment (merge them with --seed, as replicates of the pipeline)")
    seed_first, seed_second = _train_seed(first), _train_seed(second)
    rubric_first, rubric_second = _start(first, second, out)
    for name in ("params.yaml", ORIGIN):
        shutil.copy2(first / name, out / name)
    joined = []
    for folder in sorted(p for p in rubric_second.iterdir() if p.is_dir() and not p.name.startswith(".")):
        row, _, seed_label = folder.name.partition(".seed")
        if row in (ORACLE_FOLDER, BASE_FOLDER):
            continue
        # a labelled seed (the second is itself a merge) keeps its label; a row of the first's train.seed joins
        # under its own name, any other seed as <run>.seed<k>
        name = folder.name if seed_label or seed_second == seed_first else f"{folder.name}.seed{seed_second}"
        target = out / "outputs" / "rubric" / name  # out holds the first's rows: a name there is in both runs
        if target.exists():
            shutil.rmtree(out)
            raise MergeError(f"{rubric_first / name}: {row} with train.seed {seed_label or seed_second} is in both runs")
        shutil.copytree(folder, target)
        joined.append(name)
    return joined


def _start(first: Path, second: Path, out: Path) -> tuple[Path, Path]:
    """Both merges begin alike: both runs' rubric folders must be there and `out` new; `out` gets the first run's
    rubric records and mechanism readouts, and the second's readouts of the rows only it has. Returns the two
    rubric folders."""
    rubric_first, rubric_second = first / "outputs" / "rubric", second / "outputs" / "rubric"
    for folder in (rubric_first, rubric_second):
        if not folder.is_dir():
            raise MergeError(f"{folder}: no rubric records (unpack the run's results folder first)")
    if out.exists():
        raise MergeError(f"{out} exists: choose a new folder")
    shutil.copytree(rubric_first, out / "outputs" / "rubric")
    _merge_mechanism(first, second, out)
    return rubric_first, rubric_second


def _merge_mechanism(first: Path, second: Path, out: Path) -> None:
    """The first run's mechanism readouts, and the second's for the rows only it has."""
    mechanism = out / "outputs" / "mechanism"
    if (first / "outputs" / "mechanism").is_dir():
        shutil.copytree(first / "outputs" / "mechanism", mechanism)
    if (second / "outputs" / "mechanism").is_dir():
        mechanism.mkdir(parents=True, exist_ok=True)
        for readout in sorted((second / "outputs" / "mechanism").glob("*.json")):
            if not (mechanism / readout.name).exists():
                shutil.copy2(readout, mechanism / readout.name)


def merge(first: Path, second: Path, seed: int, out: Path) -> list[str]:
    """Copy `first`'s rubric and mechanism outputs to `out`, and `second`'s rubric folders as `<run>.seed<seed>`;
    return the runs taken from `second`."""
    _, rubric_second = _start(first, second, out)
    if (first / "params.yaml").is_file():  # the comparison's params: the first run's
        shutil.copy2(first / "params.yaml", out / "params.yaml")
    if (first / ORIGIN).is_file() and (second / ORIGIN).is_file() and _base_of(first) == _base_of(second):
        shutil.copy2(first / ORIGIN, out / ORIGIN)  # one base (a second seed side by side): the merge may chain --same-base
    taken = []
    for folder in sorted(p for p in rubric_second.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name == ORACLE_FOLDER or ".seed" in folder.name:
            continue
        target = out / "outputs" / "rubric" / f"{folder.name}.seed{seed}"
        if target.exists():
            shutil.rmtree(out)  # nothing half-merged is left behind
            raise MergeError(f"{target}: training seed {seed} of {folder.name} is already in {first}")
        shutil.copytree(folder, target)
        taken.append(folder.name)
    return taken


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path, help="results folder of the run with the params' own train.seed")
    ap.add_argument("second", type=Path, help="results folder of the run with train.seed = --seed")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--seed", type=int,
                     help="the second run's train.seed, or an unused label for a rerun of the same command")
    how.add_argument("--same-base", action="store_true",
                     help="the second run trained on the first's carried base: its rows join the first's replicate")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if args.same_base:
            joined = merge_same_base(args.first, args.second, args.out)
            print(f"wrote {args.out}: {', '.join(joined) or 'no rows'} from {args.second} (same base)")
            return 0
        taken = merge(args.first, args.second, args.seed, args.out)
    except MergeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: training seed {args.seed} of {', '.join(taken)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
