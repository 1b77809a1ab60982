"""Sampling throughput (videos/s) of the two-expert Wan sampler on a prompt set, at several videos per call.

What the lab comparison pays per run: `sample.prompt_set` x `sample.seeds` videos, `sample.videos_per_call` per
pipeline call (sara/sample.py). This builds the params' random-init base (`sara.models.dit.save_base`: the same
shapes and so the same cost as the pretrained one), warms each batch size up once, then samples the first N
prompts of the set (their full MTSS captions, as the sample stage gives them) at seed 0 in calls of each size,
and prints one markdown row per size:

    python benchmarks/sample_throughput.py --params configs/lab.yaml --videos 274 --per-call 54,137,274 \
        >> benchmarks/sample_throughput.md                                      # on the GPU
    python benchmarks/sample_throughput.py --tiny                               # CPU, embedded params, seconds

`--tiny` takes params.yaml's embedded models on the CPU, 6 prompts of the lab set, calls of 1, 3 and 6.
"""

from __future__ import annotations

import argparse
import math
import platform
import tempfile
import time
from pathlib import Path

TINY = {"params": "params.yaml", "videos": 6, "per_call": "1,3,6", "device": "cpu"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="configs/lab.yaml", help="params file giving the models and sample settings")
    ap.add_argument("--prompt-set", default="lab", help="prompt set whose captions are sampled (sara/data/prompts)")
    ap.add_argument("--videos", type=int, default=274, help="videos per timed pass (the first N prompts, seed 0)")
    ap.add_argument("--per-call", default="54,137,274", help="comma-separated videos per pipeline call")
    ap.add_argument("--device", default=None, help="override project.device (cpu, cuda)")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: " + ", ".join(f"{k} {v}" for k, v in TINY.items()))
    args = ap.parse_args(argv)
    if args.tiny:
        for k, v in TINY.items():
            setattr(args, k, v)
    sizes = [int(x) for x in str(args.per_call).split(",") if x.strip()]
    if args.videos < 1 or not sizes or min(sizes) < 1:
        ap.error("--videos and every --per-call size must be >= 1")
    args.sizes = sizes
    return args


def load(path: str, device: str | None):
    """The params of `path`, with project.device replaced when `device` is given."""
    from sara.config import params_from_dict, read_yaml

    raw = read_yaml(Path(path).read_text())
    if device is not None:
        raw.setdefault("project", {})["device"] = device
    return params_from_dict(raw, path)


def throughput(sampler, captions: list[str], per_call: int) -> float:
    """Seconds to sample every caption at seed 0 in calls of `per_call` videos."""
    import torch

    t0 = time.perf_counter()
    for start in range(0, len(captions), per_call):
        chunk = captions[start : start + per_call]
        sampler.generate_batch(chunk, [0] * len(chunk))
    if sampler.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> list[str]:
    import torch

    from sara.data.mtss import full_caption
    from sara.data.prompts import load_prompt_set
    from sara.models.dit import save_base
    from sara.sample import Sampler

    args = parse_args(argv)
    params = load(args.params, args.device)
    items = load_prompt_set(args.prompt_set)
    captions = [full_caption(i.caption) for i in (items * math.ceil(args.videos / len(items)))[: args.videos]]
    base = Path(tempfile.mkdtemp()) / "base"
    save_base(params, base)
    sampler = Sampler(params, "base", base_dir=base)
    s = params.sample
    machine = (torch.cuda.get_device_name() if sampler.device.type == "cuda"
               else f"{platform.machine()} CPU, {torch.get_num_threads()} threads")
    rows = []
    for per_call in args.sizes:
        n = min(per_call, len(captions))
        sampler.generate_batch(captions[:n], [0] * n)  # warm-up at this size: allocations, kernel choice
        if sampler.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        dt = throughput(sampler, captions, n)
        if sampler.device.type == "cuda":  # what a larger sample.videos_per_call would cost beside the trainers
            machine = f"{torch.cuda.get_device_name()}, peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB"
        row = (f"| {args.params} | {s.frames}x{s.height}x{s.width}, {s.steps} steps, guidance {s.guidance:g} | "
               f"{args.prompt_set} | {len(captions)} | {n} | {dt:.2f} | {len(captions) / dt:.2f} | {machine} |")
        print(row, flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
