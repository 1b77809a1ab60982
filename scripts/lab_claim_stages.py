"""The DVC stages that score the runs a params file's pre-registered claims compare (`comparison.claims`).

`scripts/lab_run.sh` with `CLAIMS_FIRST=1` reproduces these first and the rest of the DAG after, so a run cut
short by the device time has every claim's videos scored: each run a claim names (and the base, when a claim
names it) gets its rubric and mechanism stages, which pull in its Stage 2 run and sampling. The oracle row
(the renderer's ground truth) is scored too: the tables print it beside the runs.
    python scripts/lab_claim_stages.py configs/lab.yaml   # one stage name per line
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sara.claims import parse_claim  # noqa: E402
from sara.config import load_params  # noqa: E402
from sara.runs import ORACLE, Row, parse_row, stage_name  # noqa: E402


def claim_stages(params_path: Path) -> list[str]:
    """rubric-/mechanism- stages of every row the claims name, in the order the claims name them, then the oracle."""
    claims = [parse_claim(c) for c in load_params(params_path).comparison.claims]
    if not claims:
        raise SystemExit(f"{params_path}: comparison.claims is empty: no claim names a run")
    rows: list[Row] = []
    for claim in claims:
        for name in (claim.a, claim.b):
            row = parse_row(name)
            if row not in rows:
                rows.append(row)
    return [stage_name(kind, row) for row in rows for kind in ("rubric", "mechanism")] + [stage_name("rubric", ORACLE)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("params", type=Path)
    print("\n".join(claim_stages(ap.parse_args().params)))


if __name__ == "__main__":
    main()
