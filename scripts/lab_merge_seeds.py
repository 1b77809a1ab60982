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
`--seed 2`; the comparison reads it as training seed 2.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

ORACLE_FOLDER = "oracle"  # the ground truth's records: the same in both runs


def merge(first: Path, second: Path, seed: int, out: Path) -> list[str]:
    """Copy `first`'s rubric and mechanism outputs to `out`, and `second`'s rubric folders as `<run>.seed<seed>`;
    return the runs taken from `second`."""
    rubric_first, rubric_second = first / "outputs" / "rubric", second / "outputs" / "rubric"
    for folder in (rubric_first, rubric_second):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no rubric records (unpack the run's results folder first)")
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder")
    shutil.copytree(rubric_first, out / "outputs" / "rubric")
    mechanism = out / "outputs" / "mechanism"
    if (first / "outputs" / "mechanism").is_dir():
        shutil.copytree(first / "outputs" / "mechanism", mechanism)
    if (second / "outputs" / "mechanism").is_dir():  # the readouts of rows the first run did not train
        mechanism.mkdir(parents=True, exist_ok=True)
        for readout in sorted((second / "outputs" / "mechanism").glob("*.json")):
            if not (mechanism / readout.name).exists():
                shutil.copy2(readout, mechanism / readout.name)
    taken = []
    for folder in sorted(p for p in rubric_second.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if folder.name == ORACLE_FOLDER or ".seed" in folder.name:
            continue
        target = out / "outputs" / "rubric" / f"{folder.name}.seed{seed}"
        if target.exists():
            raise FileExistsError(f"{target}: training seed {seed} of {folder.name} is already in {first}")
        shutil.copytree(folder, target)
        taken.append(folder.name)
    return taken


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("first", type=Path, help="results folder of the run with the params' own train.seed")
    ap.add_argument("second", type=Path, help="results folder of the run with train.seed = --seed")
    ap.add_argument("--seed", type=int, required=True,
                    help="the second run's train.seed, or an unused label for a rerun of the same command")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        taken = merge(args.first, args.second, args.seed, args.out)
    except (FileNotFoundError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: training seed {args.seed} of {', '.join(taken)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
