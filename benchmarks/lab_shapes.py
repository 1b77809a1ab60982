"""A params file with the lab's shapes and almost none of its training: inputs for step benchmarks in minutes.

`benchmarks/stage2_step.py` times the real Stage 2 loop from the DAG's outputs (base DiT, VAE, clips, encoder,
aligner). At lab scale those take 12 minutes of GPU to train; a step's time depends on their shapes, not on how
well they were trained. This writes `configs/lab.yaml` (or `--params`) with every pretraining and aligner budget
cut to a few steps and fewer clips, the model shapes, batch sizes and Stage 2 settings untouched:

    python benchmarks/lab_shapes.py lab_shapes.yaml
    cp lab_shapes.yaml params.yaml && python -m sara.pipeline && sara repro train_aligner init_dit
    python benchmarks/stage2_step.py --run sara-or --steps 80 --warmup 30 --cache-frozen-inputs --engine torch

Numbers from it say how long a step takes, never what a method learns.
"""

from __future__ import annotations

import argparse

import yaml


def shrink(raw: dict, clips: int) -> dict:
    """`raw` (a lab params dict) with its training budgets cut and `clips` Stage 2 clips; shapes unchanged."""
    raw["data"].update(n_train=clips, n_heldout=8)
    raw["aligner"].update(steps=2, checkpoint_every=1, figure_clips=1)
    p = raw["pretrain"]
    p["corpus"].update(n_train=64, n_heldout=16)
    # pretraining batches too: they shape no Stage 2 tensor (the DiT, VAE and encoder widths do)
    p["vae"].update(steps=2, batch_size=4, crop_batch_size=4, eval_clips=4, cuda_graph=False)
    p["vfm"].update(steps=2, batch_size=4, probe_clips=16, eval_every=1)
    p["dit"].update(steps=2, batch_size=4, compile=False, eval_every=2, eval_steps=2)
    return raw


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="params file to write")
    ap.add_argument("--params", default="configs/lab.yaml")
    ap.add_argument("--clips", type=int, default=128, help="Stage 2 clips (at least the batch size)")
    ap.add_argument("--text-path", default=None, help="text.path and dit.text_encoder_path (an offline MiniLM copy)")
    args = ap.parse_args()
    with open(args.params) as fh:
        raw = shrink(yaml.safe_load(fh), args.clips)
    if args.text_path:
        raw["text"]["path"] = raw["dit"]["text_encoder_path"] = args.text_path
    with open(args.out, "w") as fh:
        yaml.safe_dump(raw, fh, sort_keys=False)


if __name__ == "__main__":
    main()
