"""Build the lab base (corpus, VAE, video encoder, base DiT) in one process, timing each stage.

The same `build_output` functions the DVC stages `corpus`, `pretrain_vae`, `pretrain_vfm` and `init_dit` run, without
MLflow or DVC, for a GPU machine that carries neither (docs/lab/base.md says how the committed numbers were
made). `--set key=value` overrides a param (dotted path, YAML value); `--only` runs some of the stages.

    python scripts/lab_base.py --params configs/lab.yaml --set dit.text_encoder_path=.minilm-fp16 \
        --set text.path=.minilm-fp16 --timings timings.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import yaml

from sara.config import params_from_dict

STAGES = ("corpus", "pretrain_vae", "pretrain_vfm", "init_dit")


def load_with_overrides(path: str, overrides: list[str]):
    raw = yaml.safe_load(Path(path).read_text())
    for item in overrides:
        key, _, value = item.partition("=")
        if not _:
            raise SystemExit(f"--set {item!r}: expected key=value")
        node = raw
        *parents, leaf = key.split(".")
        for k in parents:
            if k not in node:
                raise SystemExit(f"--set {key}: no section {k!r} in {path}")
            node = node[k]
        node[leaf] = yaml.safe_load(value)
    return params_from_dict(raw, path)


def main() -> None:
    from sara.io import atomic_dir

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="configs/lab.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--only", nargs="*", choices=STAGES, default=list(STAGES))
    ap.add_argument("--timings", default=None, help="write per-stage wall seconds to this JSON file")
    args = ap.parse_args()
    params = load_with_overrides(args.params, args.overrides)
    timings: dict[str, float] = {}
    for name in STAGES:
        if name not in args.only:
            continue
        t0 = time.time()
        if name == "corpus":
            from sara.stages.corpus import build_output as build

            with atomic_dir(params.pretrain.corpus.out_dir) as tmp:
                build(params, tmp)
        elif name == "pretrain_vae":
            from sara.stages.pretrain_vae import build_output as build

            with atomic_dir(params.pretrain.vae.out_dir) as tmp:
                build(params, tmp)
        elif name == "pretrain_vfm":
            from sara.stages.pretrain_vfm import build_output as build

            with atomic_dir(params.pretrain.vfm.out_dir) as tmp:
                build(params, tmp)
        else:
            from sara.stages.pretrain_dit import pretrain_base

            with atomic_dir(params.dit.base_dir) as tmp:
                pretrain_base(params, tmp)
        timings[name] = round(time.time() - t0, 1)
        print(f"[lab_base] {name}: {timings[name]} s", flush=True)
        if args.timings:
            Path(args.timings).write_text(json.dumps(timings, indent=2))
    print(f"[lab_base] total {sum(timings.values()):.1f} s: {timings}")


if __name__ == "__main__":
    main()
