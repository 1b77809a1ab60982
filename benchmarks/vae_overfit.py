"""How fast does diffusers' `AutoencoderKLWan` fit a handful of lab clips from scratch (CPU, one thread)?

Trains `sara.train.pretrain_vae.train_vae` on N corpus clips and measures the PSNR on those same clips (an
overfitting test: a model that cannot fit 16 clips will not generalise to 30 dB), per variant:

    python benchmarks/vae_overfit.py --lr 3e-4 --base-dim 16 --steps 300 [--kl 0] [--no-clamp] >> benchmarks/vae_overfit.md

`--no-clamp` trains through diffusers' final `clamp(-1, 1)` of the decoder as an identity (it zeroes the gradient
of every pixel predicted outside the range). Prints one markdown table row.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def main() -> None:
    import diffusers.models.autoencoders.autoencoder_kl_wan as wan

    from sara.config import CorpusParams, VAEPretrainParams
    from sara.data.corpus import render_split
    from sara.train.pretrain_vae import train_vae

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--base-dim", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--kl", type=float, default=1e-6)
    ap.add_argument("--no-clamp", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.no_clamp:
        class _TorchWithoutClamp:  # the decoder module's `torch`, with clamp as the identity
            def __getattr__(self, name):
                return getattr(torch, name)

            @staticmethod
            def clamp(x, min=None, max=None):
                return x

        wan.torch = _TorchWithoutClamp()
    c = CorpusParams(n_train=args.clips, n_heldout=1, frames=5, height=32, width=32, workers=1, seed=7,
                     out_dir="unused")
    clips = np.stack([x["frames"] for x in render_split(c, "train", args.clips, workers=1)])  # (N, 5, 32, 32, 3)
    p = VAEPretrainParams(base_dim=args.base_dim, dim_mult=[1, 2, 4, 4], steps=args.steps, batch_size=8, lr=args.lr,
                          kl_weight=args.kl, eval_clips=args.clips)
    t0 = time.time()
    r = train_vae(p, clips, clips, torch.device("cpu"), log=lambda s: None)
    curve = " ".join(f"{h['train_psnr_db']:.1f}" for h in r.history)
    print(f"| {args.lr:g} | {args.base_dim} | {args.kl:g} | {'no' if args.no_clamp else 'yes'} | {args.steps} | "
          f"{r.metrics['psnr_db']:.2f} | {curve} | {time.time() - t0:.0f} | {platform.processor() or platform.machine()} |")


if __name__ == "__main__":
    main()
