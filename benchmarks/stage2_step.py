"""Where a Stage 2 step's time goes: the real `train_stage2` loop with timers wrapped around its parts.

Runs `--steps` steps of one run from the DAG's outputs (models/base, data/clips, the encoder / aligner a run needs)
into a temporary out/state folder (nothing of the DAG is touched), with a device sync around every timed part,
and prints one markdown row per part: the clip fetch, VAE encode, caption encode, frozen targets (encoder features,
saliency, flow), forward, backward and optimiser step.

    python benchmarks/stage2_step.py [--params params.yaml] [--run videorepa] [--steps 30] [--cache-frozen-inputs]
                                     [--compile --warmup 20]

The syncs serialise the GPU's queue, so the total is an upper bound of the un-instrumented step.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections import defaultdict
from typing import Any, Callable


def main() -> None:
    import torch

    import sara.data.clipset as clipset
    import sara.train.stage2 as stage2
    from sara.config import load_params, params_from_dict
    from sara.env import resolve_device
    from sara.runs import Run, run_argument
    from sara.train.engine import TrainEngine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default=Run("videorepa"), type=run_argument)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cache-frozen-inputs", action="store_true", help="train.cache_frozen_inputs: true")
    ap.add_argument("--compile", action="store_true", help="train.compile: true (torch.compile of the DiT, CUDA only)")
    ap.add_argument("--warmup", type=int, default=0, help="first steps left out of the table (compile, caches)")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp()
    raw = load_params(args.params).model_dump(mode="json")
    # one checkpoint, at the end, as a real run's last one; outputs into scratch folders
    raw["train"].update(steps=args.steps, checkpoint_every=args.steps, out_dir=f"{scratch}/out", state_dir=f"{scratch}/state",
                        cache_frozen_inputs=args.cache_frozen_inputs, compile=args.compile)
    if not 0 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup {args.warmup}: must be in [0, --steps = {args.steps})")
    params = params_from_dict(raw, args.params)
    cuda = resolve_device(params.project.device).type == "cuda"
    seconds: dict[str, float] = defaultdict(float)  # inside the training loop only
    once: dict[str, float] = {}  # one-time work before the loop (the frozen-input cache)
    in_loop = [False]
    batches = [0]  # steps begun: the table starts after --warmup of them

    def timed(name: str, fn: Callable[..., Any], loop_start: bool = False) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            in_loop[0] = in_loop[0] or loop_start
            if loop_start:
                batches[0] += 1
                if batches[0] == args.warmup + 1:
                    seconds.clear()
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = fn(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            if in_loop[0]:
                seconds[name] += time.perf_counter() - t0
            elif name == "frozen-input cache":
                once[name] = time.perf_counter() - t0
            return out
        return wrapper

    load_base = stage2.load_base

    def load_base_with_timed_text(*a: Any, **k: Any) -> Any:
        base = load_base(*a, **k)
        base.text = timed("caption encode", base.text)
        return base

    stage2.load_base = load_base_with_timed_text
    stage2.encode_latents = timed("VAE encode", stage2.encode_latents)
    stage2.frozen_targets = timed("frozen targets", stage2.frozen_targets)
    clipset.ClipSet.__getitem__ = timed("clip fetch", clipset.ClipSet.__getitem__)
    for name, method in (("forward", "__call__"), ("backward", "backward"), ("optimiser step", "step")):
        setattr(TrainEngine, method, timed(name, getattr(TrainEngine, method)))
    clipset.FrozenInputs.__init__ = timed("frozen-input cache", clipset.FrozenInputs.__init__)
    stage2.stage2_batch = timed("batch (all of the above but the engine)", stage2.stage2_batch, loop_start=True)

    t0 = time.perf_counter()
    stage2.train_stage2(params, args.run, progress=False, resume=False)
    total = time.perf_counter() - t0
    device = torch.cuda.get_device_name() if cuda else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"\n{args.run}, {args.steps} steps ({args.warmup} warm-up steps left out), batch {params.train.batch_size}, "
          f"{args.params}, cache_frozen_inputs {args.cache_frozen_inputs}, compile {args.compile}, {device}; "
          f"train_stage2 wall {total:.1f} s (setup and export included)\n")
    print("| part | seconds per step | share of the batch + engine time |")
    print("|---|---|---|")
    loop = seconds["batch (all of the above but the engine)"] + sum(
        seconds[k] for k in ("forward", "backward", "optimiser step"))
    for name, s in seconds.items():
        print(f"| {name} | {s / (args.steps - args.warmup):.4f} | {s / loop:.0%} |")
    for name, s in once.items():
        print(f"| {name} (once, before the loop) | {s:.2f} s in all | - |")


if __name__ == "__main__":
    main()
