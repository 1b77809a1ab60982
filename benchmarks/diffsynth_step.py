"""The SFT step of a public Wan trainer, DiffSynth-Studio, at the same sizes as benchmarks/stage2_real_sizes.py.

Issue: how does our Stage 2 step compare with the step a Wan user already knows? DiffSynth-Studio (PyPI `diffsynth`)
trains Wan with `diffsynth.diffusion.runner.launch_training_task`: the DiT in bf16 (the pipeline loads it with
`torch_dtype=torch.bfloat16`), `torch.optim.AdamW` straight on those bf16 parameters (so the Adam moments are bf16
too, and there are no fp32 master weights), gradient checkpointing per block through the DiT's own
`use_gradient_checkpointing` argument, a flow-matching MSE loss on the velocity `noise - x0`. This script runs that
step on DiffSynth's own `WanModel` class and `model_fn_wan_video` (the forward its loss calls) at random init, with the shapes of stage2_real_sizes.py's rows (81 frames at
480x832 for Wan2.1-T2V-1.3B, 121 at 704x1280 for Wan2.2-TI2V-5B; batch 1; 512 text tokens of width 4096). Its data
path (cached VAE latents and prompt embeddings) is not timed, as in our benchmark.

Differences from our recipe's step, stated rather than hidden: ours keeps fp32 master weights and fp32 Adam moments
under DeepSpeed ZeRO-2 (16 bytes per parameter beside the bf16 copy, against 8 here), clips the global gradient norm
and samples the timestep from the Stage 2 band; those cost memory (the 5B recipe must offload its optimizer) and a
little time. Same: the model size and layout, tokens, bf16 compute, activation checkpointing per block.

On the GPU, DiffSynth and its imports carried as wheels (docs/offline.md; `modelscope` is imported by its loader):
    PYTHONUNBUFFERED=1 python3 benchmarks/diffsynth_step.py --out-dir <dir>
CPU smoke test at tiny sizes: python benchmarks/diffsynth_step.py --tiny
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stage2_real_sizes import MODELS, TINY, dit_forward_flops, latent_shape  # noqa: E402


def wan_model_kwargs(size: dict[str, Any]) -> dict[str, Any]:
    """DiffSynth `WanModel` arguments for one of stage2_real_sizes.py's size dicts (text-to-video: no image input)."""
    return dict(dim=size["heads"] * size["head_dim"], in_dim=size["channels"], ffn_dim=size["ffn"],
                out_dim=size["channels"], text_dim=size["text"][1], freq_dim=256, eps=1e-6, patch_size=(1, 2, 2),
                num_heads=size["heads"], num_layers=size["layers"], has_image_input=False)


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    """Child process: DiffSynth's training step for one model, `spec["steps"]` timed after `spec["warmup"]`."""
    import torch
    import torch.nn.functional as F
    from diffsynth.models.wan_video_dit import WanModel
    from diffsynth.pipelines.wan_video import model_fn_wan_video  # what its FlowMatchSFTLoss calls

    from sara.env import resolve_device
    from sara.train.pretrain_dit import measure_matmul_tflops
    from stage2 import timed

    dev = resolve_device("auto")
    size = dict((TINY if spec["tiny"] else MODELS)[spec["model"]])
    if spec["tiny"]:  # DiffSynth splits a head's RoPE dims in three even parts: 16 (the tiny width) does not split
        size["head_dim"] = 24
    frames, height, width = latent_shape(size["pixels"], size["spatial"])
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(dev):
        model = WanModel(**wan_model_kwargs(size)).to(dtype).train()
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=1e-2)  # DiffSynth's defaults
    x0 = torch.randn(1, size["channels"], frames, height, width, device=dev, dtype=dtype)  # (B, C, F', H', W')
    context = torch.randn(1, *size["text"], device=dev, dtype=dtype)  # (B, L, text_dim)
    tokens = frames * (height // 2) * (width // 2)  # patch 1x2x2

    def step() -> float:
        noise = torch.randn_like(x0)
        sigma = torch.rand((), device=dev)
        xt = (1 - sigma) * x0 + sigma * noise
        pred = model_fn_wan_video(dit=model, latents=xt.to(dtype), timestep=(sigma * 1000).reshape(1).to(dtype),
                                  context=context, use_gradient_checkpointing=True)
        loss = F.mse_loss(pred.float(), (noise - x0).float())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss)

    for _ in range(spec["warmup"] - 1):  # `timed` warms up once itself
        step()
    step_s = timed(step, dev, spec["steps"]) / 1e3
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "params": params,
            "tokens": tokens, "step_s": step_s, "tokens_per_s": tokens / step_s,
            "peak_gpu_gib": torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else None,
            "dit_flops": 3 * dit_forward_flops(size, tokens), "matmul_tflops": measure_matmul_tflops(dev),
            "torch": torch.__version__}


def table(rows: list[dict[str, Any]]) -> str:
    head = "| model | trainer | step time | tokens/s | MFU | peak GPU | params |\n|---|---|---|---|---|---|---|\n"
    lines = []
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | DiffSynth-Studio | {r['error']} | - | - | - | - |")
            continue
        mfu = r["dit_flops"] / r["step_s"] / (r["matmul_tflops"] * 1e12) if r.get("matmul_tflops") else None
        gib = f"{r['peak_gpu_gib']:.1f} GiB" if r["peak_gpu_gib"] is not None else "-"
        lines.append(f"| {r['model']} | DiffSynth-Studio {r.get('diffsynth', '')} | {r['step_s']:.2f} s | "
                     f"{r['tokens_per_s']:,.0f} | {'-' if mfu is None else f'{100 * mfu:.1f}%'} | {gib} | "
                     f"{r['params'] / 1e9:.2f} B |")
    return head + "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on CPU (smoke test of the same code)")
    ap.add_argument("--models", default="wan2.1-t2v-1.3b,wan2.2-ti2v-5b")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per model (median)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--timeout-s", type=float, default=240.0, help="per model")
    ap.add_argument("--out-dir", default=os.environ.get("OUT"), help="where the .md and .json go ($OUT by default)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    from stage2 import child_result, isolated, write_results

    if args.child:
        child_result({}, lambda: measure(json.loads(args.child)), args.out)
        return
    from importlib.metadata import version

    rows = []
    for model in args.models.split(","):
        spec = {"model": model, "tiny": args.tiny, "steps": args.steps, "warmup": args.warmup}
        label = {"model": model, "diffsynth": version("diffsynth")}
        rows.append({**isolated([__file__, "--child", json.dumps(spec)], label, timeout=args.timeout_s), **label})
        print(json.dumps(rows[-1]), flush=True)
    md = f"DiffSynth-Studio's Wan SFT step, random init, batch 1, {args.warmup} warm-up + {args.steps} timed:\n\n"
    md += table(rows) + "\n"
    write_results(args.out_dir, "diffsynth_step", md, rows)

if __name__ == "__main__":
    main()
