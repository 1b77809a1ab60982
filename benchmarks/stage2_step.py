"""Where a Stage 2 step's time goes: the real `train_stage2` loop with timers wrapped around its parts.

Runs `--steps` steps of one run from the DAG's outputs (models/base, data/clips, the encoder / aligner a run needs)
into a temporary out/state folder (nothing of the DAG is touched), with a device sync around every timed part,
and prints one markdown row per part: the clip fetch, VAE encode, caption encode, frozen targets (encoder features,
saliency, flow), forward, backward and optimiser step.

    python benchmarks/stage2_step.py [--params params.yaml] [--run videorepa] [--steps 30] [--cache-frozen-inputs]
                                     [--compile --warmup 20] [--engine torch] [--count-ops]

`--engine` overrides `train.engine` (deepspeed: ZeRO through DeepSpeed; torch: one process, sara/train/single_engine.py).
`--count-ops` adds the aten ops each part issues per step (a TorchDispatchMode counts them; its overhead inflates
the seconds of that run, so time and count in separate runs). Ops are what a launch-bound step pays for, and their
count is the same on any machine of the same device type.

The syncs serialise the GPU's queue, so the total is an upper bound of the un-instrumented step.
"""

from __future__ import annotations

import argparse
import contextlib
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
    from torch.utils._python_dispatch import TorchDispatchMode

    from sara.train.engine import TrainEngine
    from sara.train.single_engine import SingleProcessEngine

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--run", default=Run("videorepa"), type=run_argument)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--cache-frozen-inputs", action="store_true", help="train.cache_frozen_inputs: true")
    ap.add_argument("--compile", action="store_true", help="train.compile: true (torch.compile of the DiT, CUDA only)")
    ap.add_argument("--warmup", type=int, default=0, help="first steps left out of the table (compile, caches)")
    ap.add_argument("--engine", choices=["deepspeed", "torch"], help="train.engine (default: the params' value)")
    ap.add_argument("--count-ops", action="store_true", help="also count the aten ops of each part per step")
    args = ap.parse_args()
    scratch = tempfile.mkdtemp()
    raw = load_params(args.params).model_dump(mode="json")
    # one checkpoint, at the end, as a real run's last one; outputs into scratch folders
    raw["train"].update(steps=args.steps, checkpoint_every=args.steps, out_dir=f"{scratch}/out", state_dir=f"{scratch}/state",
                        cache_frozen_inputs=args.cache_frozen_inputs, compile=args.compile)
    if args.engine:
        raw["train"]["engine"] = args.engine
    if not 0 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup {args.warmup}: must be in [0, --steps = {args.steps})")
    params = params_from_dict(raw, args.params)
    cuda = resolve_device(params.project.device).type == "cuda"
    seconds: dict[str, float] = defaultdict(float)  # inside the training loop only
    ops: dict[str, int] = defaultdict(int)  # aten ops inside the training loop (--count-ops)
    issued = [0]

    class CountOps(TorchDispatchMode):
        def __torch_dispatch__(self, func: Any, types: Any, a: Any = (), k: Any = None) -> Any:
            issued[0] += 1
            return func(*a, **(k or {}))
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
                    ops.clear()
            if cuda:
                torch.cuda.synchronize()
            t0, n0 = time.perf_counter(), issued[0]
            out = fn(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            if in_loop[0]:
                seconds[name] += time.perf_counter() - t0
                ops[name] += issued[0] - n0
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
    for engine_class in (TrainEngine, SingleProcessEngine):
        for name, method in (("forward", "__call__"), ("backward", "backward"), ("optimiser step", "step")):
            setattr(engine_class, method, timed(name, getattr(engine_class, method)))
    clipset.FrozenInputs.__init__ = timed("frozen-input cache", clipset.FrozenInputs.__init__)
    stage2.stage2_batch = timed("batch (all of the above but the engine)", stage2.stage2_batch, loop_start=True)

    t0 = time.perf_counter()
    with CountOps() if args.count_ops else contextlib.nullcontext():
        stage2.train_stage2(params, args.run, progress=False, resume=False)
    total = time.perf_counter() - t0
    device = torch.cuda.get_device_name() if cuda else f"{platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"\n{args.run}, {args.steps} steps ({args.warmup} warm-up steps left out), batch {params.train.batch_size}, "
          f"{args.params}, engine {params.train.engine}, cache_frozen_inputs {args.cache_frozen_inputs}, "
          f"compile {args.compile}{', ops counted' if args.count_ops else ''}, {device}; "
          f"train_stage2 wall {total:.1f} s (setup and export included)\n")
    n = args.steps - args.warmup
    count_col = (" aten ops per step |", "---|") if args.count_ops else ("", "")
    print(f"| part | seconds per step | share of the batch + engine time |{count_col[0]}")
    print(f"|---|---|---|{count_col[1]}")
    loop = seconds["batch (all of the above but the engine)"] + sum(
        seconds[k] for k in ("forward", "backward", "optimiser step"))
    for name, s in seconds.items():
        count = f" {ops[name] / n:.0f} |" if args.count_ops else ""
        print(f"| {name} | {s / n:.4f} | {s / loop:.0%} |{count}")
    for name, s in once.items():
        print(f"| {name} (once, before the loop) | {s:.2f} s in all | - |{' - |' if args.count_ops else ''}")


if __name__ == "__main__":
    main()
