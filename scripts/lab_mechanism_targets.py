"""Where each run moved the DiT's relations, measured against every TRD target: a markdown table.

    python scripts/lab_mechanism_targets.py outputs/mechanism [--pairs total|fg_fg|fg_bg|bg_bg]

Reads the mechanism stage's `<run>.json` files (`raw_by_target`: the mean |S_p - S_y| of the hook layer's raw
tokens against the relations of the lab encoder, the renderer's oracle and the random-init encoder, with 95%
bootstrap intervals over clips) and prints one row per run, each target's error and its change against the base.
Lower is closer to that target's relations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def table(folder: Path, pairs: str = "total") -> str:
    from sara.runs import in_row_order, row_label as label

    found = {p.stem: json.loads(p.read_text()) for p in folder.glob("*.json")}
    if "base" not in found:
        raise SystemExit(f"{folder}: no base.json (the mechanism-base stage's readout)")
    targets = list(found["base"]["raw_by_target"])
    base = {t: found["base"]["raw_by_target"][t]["all"][pairs]["estimate"] for t in targets}
    head = "| Run | trained toward | " + " | ".join(f"vs {t} [CI] | change vs base" for t in targets) + " |"
    rows = [head, "|" + "---|" * (2 + 2 * len(targets))]
    for run in in_row_order(list(found)):
        rec = found[run]
        cells = []
        for t in targets:
            x = rec["raw_by_target"][t]["all"][pairs]
            change = "-" if run == "base" else f"{x['estimate'] - base[t]:+.3f}"
            cells += [f"{x['estimate']:.3f} [{x['lo']:.3f}, {x['hi']:.3f}]", change]
        rows.append(f"| {label(run)} | {rec.get('target') or '-'} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--pairs", default="total", choices=["total", "fg_fg", "fg_bg", "bg_bg"])
    args = ap.parse_args()
    print(table(args.folder, args.pairs))


if __name__ == "__main__":
    main()
