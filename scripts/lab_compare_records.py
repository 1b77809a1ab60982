"""The compare stage's tables from rubric records alone (no videos, so no qualitative grids).

    python scripts/lab_compare_records.py RESULTS --params configs/lab.yaml --out docs/lab

For a GPU run whose per-video rubric records and mechanism readouts came back but whose videos did not (they are
large): RESULTS holds `outputs/rubric/<run>/` and `outputs/mechanism/`. Runs the same `build_comparison` as
`sara compare` (sara/stages/compare.py) with the params' comparison section, the pre-registered claims included,
and writes `comparison.md`, `comparison.json` and the figures into `--out` (no MLflow run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from sara.config import load_params
    from sara.stages.compare import compare_records

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--params", type=Path, default=ROOT / "configs" / "lab.yaml")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    compare_records(load_params(args.params), args.results / "outputs" / "rubric", args.results / "outputs" / "mechanism",
                    args.out, grids=[])  # no videos: no qualitative grids
    print(f"wrote {args.out}/comparison.md, comparison.json, figures/")


if __name__ == "__main__":
    main()
