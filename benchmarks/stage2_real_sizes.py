"""What fits on one GPU: Stage 2 of Wan2.1-T2V-1.3B and Wan2.2-TI2V-5B at their real sizes (docs/stage2.md).

Random-init models of the real architectures and shapes:
- Wan2.1-T2V-1.3B: dim 1536 (12 x 128), 30 blocks, ffn 8960, 16 latent channels; 81 frames at 480x832 -> latent
  21x60x104 -> 32,760 DiT tokens.
- Wan2.2-TI2V-5B: dim 3072 (24 x 128), 30 blocks, ffn 14336, 48 latent channels (its VAE compresses 4x16x16);
  its native 121 frames at 704x1280 -> latent 31x44x80 -> 27,280 DiT tokens.
- TRD target V-JEPA 2 ViT-L/16 at 256 (dim 1024, 24 layers), 32 frames; hook at block 14 of 30; the Stage 1
  aligner for sara-or (benchmarks/stage2.py's stand-in).

Each row runs benchmarks/stage2.py's `bench_method` (the project's `Stage2Model` and method objective under the
project's DeepSpeed engine) with the recipe's `train` section (configs/wan2.1-t2v-1.3b.yaml,
configs/wan2.2-ti2v-5b.yaml), varied by ZeRO stage, CPU offload and activation checkpointing, in a process of its
own. Rows run in order of importance inside a time budget (`--budget-s`): a row still running when it ends is
stopped and reported as a timeout, and the rows after it as skipped. Not timed: VAE encode and UMT5 (random latents and text states of the right
shapes), as in benchmarks/stage2.py.

Reported per row: median step time, DiT tokens/s, MFU = model FLOPs of the DiT (3 x the forward matmul FLOPs of
`dit_forward_flops`; the checkpoint recompute, V-JEPA and the aligner are not counted) / step time / the bf16
matmul rate measured on the same GPU, peak GPU memory (allocated) and peak host memory (resident). The first row
of each model also times a DiT forward without grad, from which the validation share of the recipe's
`train.validation` settings is estimated (DiT forwards only; the VAE decode of each video is extra).

On the GPU (writes stage2_real_sizes.md / .json to --out-dir, or $OUT when set):
    PYTHONUNBUFFERED=1 python benchmarks/stage2_real_sizes.py
CPU smoke test of the same code at tiny sizes (tests/test_stage2_real_sizes.py):
    python benchmarks/stage2_real_sizes.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sara.config import TrainParams, load_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"wan2.1-t2v-1.3b": REPO / "configs" / "wan2.1-t2v-1.3b.yaml",
           "wan2.2-ti2v-5b": REPO / "configs" / "wan2.2-ti2v-5b.yaml"}
_VJEPA2_L = dict(hidden_size=1024, num_layers=24, num_heads=16, frames=32, image_size=256)
_TINY_VFM = dict(hidden_size=64, num_layers=2, num_heads=4, frames=8, image_size=64)
# benchmarks/stage2.py size dicts; `spatial` is the VAE's spatial compression, `channels` its latent width
MODELS = {
    "wan2.1-t2v-1.3b": dict(heads=12, head_dim=128, layers=30, ffn=8960, channels=16, spatial=8, pixels=(81, 480, 832),
                            vfm=_VJEPA2_L, text=(512, 4096), aligner_text=(256, 2048), layer=14, proj_hidden=2048),
    "wan2.2-ti2v-5b": dict(heads=24, head_dim=128, layers=30, ffn=14336, channels=48, spatial=16, pixels=(121, 704, 1280),
                           vfm=_VJEPA2_L, text=(512, 4096), aligner_text=(256, 2048), layer=14, proj_hidden=2048),
}
TINY = {  # the same two architectures (latent width, VAE compression) at CPU sizes
    "wan2.1-t2v-1.3b": dict(heads=2, head_dim=16, layers=2, ffn=64, channels=16, spatial=8, pixels=(9, 64, 64),
                            vfm=_TINY_VFM, text=(16, 64), aligner_text=(8, 32), layer=1, proj_hidden=64),
    "wan2.2-ti2v-5b": dict(heads=2, head_dim=16, layers=2, ffn=64, channels=48, spatial=16, pixels=(9, 64, 64),
                           vfm=_TINY_VFM, text=(16, 64), aligner_text=(8, 32), layer=1, proj_hidden=64),
}
ROW_CAP_S = 240  # one row may not take the whole budget (a hang, a crawl through host memory)
# (model, run, engine settings over the recipe's train section, note), most important first
MATRIX: list[tuple[str, str, dict[str, Any], str]] = [
    ("wan2.1-t2v-1.3b", "sft", {}, "recipe"),
    ("wan2.1-t2v-1.3b", "sara-or", {}, "recipe"),
    ("wan2.2-ti2v-5b", "sft", {}, "recipe"),
    ("wan2.2-ti2v-5b", "sara-or", {}, "recipe"),
    ("wan2.2-ti2v-5b", "sft", {"zero_stage": 3, "offload": "all"}, "weights in CPU memory too"),
    ("wan2.1-t2v-1.3b", "sft", {"zero_stage": 3}, ""),
    ("wan2.1-t2v-1.3b", "sft", {"grad_checkpointing": False}, "does it fit without checkpointing?"),
    ("wan2.2-ti2v-5b", "sft", {"offload": "none"}, "does it fit without offload?"),
]


def latent_shape(pixels: tuple[int, int, int], spatial: int) -> tuple[int, int, int]:
    """Wan VAE latent (F', H', W') of (F, H, W) pixels: 4x in time after the first frame, `spatial`x in space."""
    f, h, w = pixels
    return (f - 1) // 4 + 1, h // spatial, w // spatial


def dit_forward_flops(size: dict[str, Any], tokens: int) -> float:
    """Matmul FLOPs of one WanTransformer3DModel forward at batch 1 (2 per multiply-add).

    Per block: self-attention q, k, v, o (4 d^2 per token) and its scores and weighted sum (2 x 2 T d), cross-
    attention q, o on the video tokens (2 d^2) and k, v on the L text tokens (2 d^2 per text token) and its
    scores and sum (2 x 2 L d), the FFN (2 d ffn). Outside the blocks: the patch embedding and the output
    projection (C x 4 <-> d per token: patch 1x2x2), the text embedder (text_dim -> d -> d per text token) and the
    timestep embedder (256 -> d -> d -> 6 d, once)."""
    d, ffn, n_text, text_dim = size["heads"] * size["head_dim"], size["ffn"], size["text"][0], size["text"][1]
    patch = size["channels"] * 4
    block = tokens * (4 * d * d + 2 * d * d + 2 * d * ffn) + n_text * 2 * d * d + 2 * tokens * tokens * d \
        + 2 * tokens * n_text * d
    outside = 2 * tokens * patch * d + n_text * (text_dim * d + d * d) + 256 * d + d * d + 6 * d * d
    return 2.0 * (size["layers"] * block + outside)


def engine_params(model: str, overrides: dict[str, Any], tiny: bool) -> TrainParams:
    """The recipe's `train` section with this row's engine settings (tiny: fp32, as on CPU)."""
    train = load_params(RECIPES[model]).train.model_copy(update=overrides)
    train = TrainParams.model_validate(train.model_dump())  # re-validate: offload needs the right ZeRO stage
    return train.model_copy(update={"precision": "auto"}) if tiny else train


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Child process: one row (the model, run and engine settings of `spec`) via benchmarks/stage2.py."""
    import torch

    from sara.env import resolve_device
    from sara.train.pretrain_dit import measure_matmul_tflops
    from stage2 import bench_method

    dev = resolve_device("auto")
    size = dict((TINY if spec["tiny"] else MODELS)[spec["model"]])
    size["latent"] = latent_shape(size["pixels"], size["spatial"])
    train = engine_params(spec["model"], spec["overrides"], spec["tiny"])
    res = bench_method(spec["run"], size, dev, spec["steps"], spec["warmup"], train, forward_reps=spec["forward_reps"])
    res["matmul_tflops"] = measure_matmul_tflops(dev)
    res["dit_flops"] = 3 * dit_forward_flops(size, res["tokens"])
    res["torch"] = torch.__version__
    return res


def _cell(r: dict[str, Any], peak_tflops: float | None) -> list[str]:
    if "error" in r:
        err = r["error"]
        short = "out of memory" if "OutOfMemory" in err or "out of memory" in err else err[:90]
        return [short, "-", "-", "-", "-"]
    step_s = r["step_ms_median"] / 1e3
    mfu = f"{r['dit_flops'] / step_s / (peak_tflops * 1e12):.1%}" if peak_tflops else "-"
    gpu = f"{r['peak_mem_gib']:.1f} GiB" if r["peak_mem_gib"] == r["peak_mem_gib"] else "-"  # NaN on CPU
    return [f"{step_s:.2f} s", f"{r['tokens'] / step_s:,.0f}", mfu, gpu, f"{r['host_peak_gib']:.1f} GiB"]


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of every row (and the validation share of each recipe)."""
    ok = [r for r in rows if "error" not in r and "skipped" not in r]
    peak = max((r["matmul_tflops"] for r in ok if r.get("matmul_tflops")), default=None)
    head = ("| model | run | ZeRO | offload | act. ckpt | step time | tokens/s | MFU | peak GPU | peak host | note |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        t = r["train"]
        cells = ["skipped: time budget", "-", "-", "-", "-"] if "skipped" in r else _cell(r, peak)
        lines.append(f"| {r['model']} | {r['run']} | {t['zero_stage']} | {t['offload']} | "
                     f"{'on' if t['grad_checkpointing'] else 'off'} | " + " | ".join(cells) + f" | {r['note']} |")
    out = "\n".join(lines)
    if peak:
        out += f"\n\nMFU against the bf16 matmul rate measured on this GPU: {peak:.0f} TFLOP/s."
    for model, recipe in RECIPES.items():
        fwd = next((r for r in ok if r["model"] == model and "dit_fwd_nograd_ms" in r), None)
        step = next((r for r in ok if r["model"] == model and r["note"] == "recipe" and r["run"] == "sft"), None)
        v = load_params(recipe).train.validation
        if fwd and step and v.every:
            forwards = v.prompts * v.steps * (2 if v.guidance > 1 else 1)
            share = forwards * fwd["dit_fwd_nograd_ms"] / (v.every * step["step_ms_median"])
            out += (f"\n{model}: one DiT forward without grad {fwd['dit_fwd_nograd_ms']:.0f} ms; validation at the "
                    f"recipe's settings ({v.prompts} prompts x {v.steps} steps{' x CFG' if v.guidance > 1 else ''}, "
                    f"every {v.every} steps) ~ {share:.1%} of training time (DiT forwards only, VAE decode extra).")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on CPU (smoke test of the same code)")
    ap.add_argument("--steps", type=int, default=2, help="timed steps per row (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of all rows together")
    ap.add_argument("--out-dir", default=os.environ.get("OUT"), help="where the .md and .json go ($OUT by default)")
    ap.add_argument("--only", default=None, help="comma-separated row numbers of MATRIX (0-based) to run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: one row's spec (JSON)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)  # internal: where the child writes its row
    args = ap.parse_args()
    from stage2 import child_result, isolated, write_results

    if args.child:
        spec = json.loads(args.child)
        child_result({}, lambda: measure(spec), args.out)
        return
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")  # less fragmentation at 30k tokens
    picked = [MATRIX[int(i)] for i in args.only.split(",")] if args.only else MATRIX
    deadline, rows, timed_models = time.monotonic() + args.budget_s, [], set()
    for model, run, overrides, note in picked:
        train = engine_params(model, overrides, args.tiny)
        label = {"model": model, "run": run, "note": note,
                 "train": train.model_dump(include={"zero_stage", "offload", "grad_checkpointing", "precision"})}
        left = deadline - time.monotonic()
        if left < 30:  # not even process start-up and model build would fit
            rows.append({**label, "skipped": True})
            continue
        spec = {"model": model, "run": run, "overrides": overrides, "tiny": args.tiny, "steps": args.steps,
                "warmup": args.warmup, "forward_reps": 0 if model in timed_models else 2}
        timed_models.add(model)
        res = isolated([__file__, "--child", json.dumps(spec)], label, timeout=min(left, ROW_CAP_S))
        rows.append({**res, **label})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "step_ms_all"}), flush=True)
    device = next((r["device"] for r in rows if "device" in r), "unknown")
    md = (f"Stage 2 at real sizes, random init, batch 1, {args.warmup} warm-up + {args.steps} timed steps per row, "
          f"on {device}{' (tiny sizes)' if args.tiny else ''}:\n\n{table(rows)}\n")
    write_results(args.out_dir, "stage2_real_sizes", md, rows)

if __name__ == "__main__":
    main()
