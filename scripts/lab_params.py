"""params.yaml for a lab run on an offline GPU machine: configs/lab.yaml with the local MiniLM copy as the text
model, and optional `key=value` overrides (a value is read as YAML), checked against the strict params schema.

    python3 scripts/lab_params.py /tmp/minilm-fp16                       # what scripts/lab_run.sh writes
    python3 scripts/lab_params.py /tmp/minilm-fp16 train.seed=1025       # the same as an argument per override
    python3 scripts/lab_params.py /tmp/minilm-fp16 --overrides "$LAB_SET" # what LAB_SET="..." bash scripts/lab_run.sh passes

`--overrides` is one string split as a shell splits it, so a value with spaces is quoted inside it:
    LAB_SET="matrix.runs=[sara-or,sara-and] study.baselines=[base] comparison.references=[sara-or] 'comparison.claims=[sara-or > sara-and on TA]'"
(a smaller run matrix also names the study's baselines and the comparison's references among its runs: the params
check refuses a row that would not be trained)

A key that is not in the params (or a value of the wrong type) is one line naming it, and no file is written.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def lab_params(minilm: str, overrides: list[str], base: Path = ROOT / "configs" / "lab.yaml") -> dict:
    """The lab params as a dict: `base` with `minilm` as both text encoders and each `a.b.c=value` applied."""
    from sara.config import read_yaml  # the params files' YAML (1e-4 is a float, as DVC reads it)

    raw = read_yaml(base.read_text())
    raw["text"]["path"] = raw["dit"]["text_encoder_path"] = minilm
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item!r}: expected key=value, for example train.seed=1025")
        *parents, leaf = key.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                raise ValueError(f"override {item!r}: {key} is not a params key")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"override {item!r}: {key} is not a params key")
        node[leaf] = read_yaml(value)
    return raw


def main(argv: list[str] | None = None) -> int:
    from sara.config import ParamsError, params_from_dict

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("minilm", help="folder of the local MiniLM copy (scripts/minilm_fp16.py)")
    ap.add_argument("overrides", nargs="*", metavar="key=value")
    ap.add_argument("--overrides", dest="quoted", default="", metavar="'K=V K=V ...'",
                    help="more overrides in one shell-quoted string (LAB_SET of scripts/lab_run.sh)")
    ap.add_argument("--out", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    overrides = args.overrides + shlex.split(args.quoted)
    try:
        raw = lab_params(args.minilm, overrides)
        params_from_dict(raw, "configs/lab.yaml with the overrides")  # checked before params.yaml is touched
    except (ValueError, ParamsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args.out.write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"wrote {args.out}" + (f" ({'; '.join(overrides)})" if overrides else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
