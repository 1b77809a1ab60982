"""Sampling many videos per pipeline call against one video per call (`sample.videos_per_call`).

Builds the params' random-init base (`sara.models.dit.save_base`), then samples N prompts at seed 0 as N calls of
one video and as one call of N videos, in one process, and prints one markdown table row:

    python benchmarks/sample_batch.py [--params params.yaml] [--videos 18] >> benchmarks/sample_batch.md
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    import torch

    import sara.sample as sample_mod
    from sara.config import load_params
    from sara.models.dit import save_base

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--videos", type=int, default=18)
    args = ap.parse_args()
    params = load_params(args.params)
    root = Path(tempfile.mkdtemp())
    save_base(params, root / "base")
    sampler = sample_mod.Sampler(params, "base", base_dir=root / "base")
    prompts = [f"a red circle and a blue square, take {i}" for i in range(args.videos)]
    sampler.generate_batch(prompts[:1], [0])  # warm-up: first-call allocations
    t0 = time.perf_counter()
    for p in prompts:
        sampler.generate_batch([p], [0])
    one_by_one = time.perf_counter() - t0
    t0 = time.perf_counter()
    sampler.generate_batch(prompts, [0] * len(prompts))
    batched = time.perf_counter() - t0
    s = params.sample
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads" if sampler.device.type == "cpu" else torch.cuda.get_device_name()
    print(f"| {args.params} | {s.frames}x{s.height}x{s.width}, {s.steps} steps | {args.videos} | {one_by_one:.2f} | "
          f"{batched:.2f} | {one_by_one / batched:.1f}x | {machine} |")


if __name__ == "__main__":
    main()
