"""Benchmark of routed token-relation distillation (masked TRD, op "or") on one CUDA GPU.

Forward + backward time and peak memory beyond the inputs, at the paper's grids, d = 1664 (V-JEPA 2.1 ViT-G),
bf16, B = 1, for:
  reference    sara.losses.trd.masked_trd_reference (materialised Grams, float32 math: the oracle)
  naive-bf16   the same formula with bf16 Grams (what a plain PyTorch implementation would do)
  fast         masked_trd(impl="triton"), fused loss + gradient in one tile pass (the default)
  fast-recomp  the same kernel, loss in the forward and a second tile pass in the backward
and the GEMM floor 8 * (T*N)^2 * d / (bf16 matmul rate measured here on a Gram-shaped product).
Also checks the Triton path against the reference (every op, tau finite/infinite, mask_temporal on/off, bf16 and
float32) and sweeps a few tile configurations. Writes JSON and a markdown table.

Run from the repository root:  PYTHONPATH=. python3 benchmarks/trd.py --out-dir <dir>
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F

from sara.losses.trd import chunked, common
from sara.losses import trd_triton
from sara.losses.routing import pair_weights
from sara.losses.trd import masked_trd, masked_trd_reference, videorepa_trd, videorepa_trd_reference

GRIDS = [(16, 576), (40, 576), (21, 1590), (21, 3600)]  # (T, N): 9,216 / 23,040 / 33,390 / 75,600 tokens


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def naive_bf16(vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor, op: str = "or", eps: float = 1e-6) -> torch.Tensor:
    """Eqs. 9-11 with the Grams materialised in bf16 (tau = inf, lam_tmp = 1): the plain PyTorch baseline."""
    B, T, N, D = vp.shape
    xp = F.normalize(vp, dim=-1).reshape(B, T * N, D)  # (B, T*N, D)
    xy = F.normalize(vy, dim=-1).reshape(B, T * N, D)
    diff = (xy @ xy.transpose(1, 2) - xp @ xp.transpose(1, 2)).abs()  # (B, T*N, T*N) bf16
    wf = w.reshape(B, T * N).to(vp.dtype)
    Wp = pair_weights(wf[:, :, None], wf[:, None, :], op)  # (B, T*N, T*N)
    frame = torch.arange(T, device=vp.device).repeat_interleave(N)
    same = frame[:, None] == frame[None, :]
    Ws = Wp * same
    Wt = Wp * ~same
    spa = (Ws * diff).sum(dtype=torch.float32) / (Ws.sum(dtype=torch.float32) + eps)
    tmp = (Wt * diff).sum(dtype=torch.float32) / (Wt.sum(dtype=torch.float32) + eps)
    return spa + tmp


def matmul_rate(n: int, d: int, iters: int = 10) -> float:
    """bf16 TFLOP/s of the Gram-shaped product (n, d) @ (d, n), as used by the floor."""
    a = torch.randn(n, d, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, d, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b.T
    torch.cuda.synchronize()
    t0 = torch.cuda.Event(enable_timing=True)
    t1 = torch.cuda.Event(enable_timing=True)
    t0.record()
    for _ in range(iters):
        a @ b.T
    t1.record()
    torch.cuda.synchronize()
    ms = t0.elapsed_time(t1) / iters
    return 2.0 * n * n * d / (ms * 1e-3) / 1e12


def measure(fn, vp: torch.Tensor, warmup: int = 2, iters: int = 5) -> dict:
    """Median forward+backward ms and peak memory beyond what was allocated before (inputs), in GB."""
    try:
        for _ in range(warmup):
            vp.grad = None
            fn(vp).backward()
        torch.cuda.synchronize()
        vp.grad = None
        torch.cuda.empty_cache()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(iters):
            vp.grad = None
            t0 = torch.cuda.Event(enable_timing=True)
            t1 = torch.cuda.Event(enable_timing=True)
            t0.record()
            fn(vp).backward()
            t1.record()
            torch.cuda.synchronize()
            times.append(t0.elapsed_time(t1))
        peak = (torch.cuda.max_memory_allocated() - base) / 1e9
        vp.grad = None
        return {"ms": sorted(times)[len(times) // 2], "peak_gb": peak}
    except torch.OutOfMemoryError:
        vp.grad = None
        torch.cuda.empty_cache()
        return {"ms": None, "peak_gb": None, "error": "OOM"}
    except Exception as e:  # keep the run going; the table says what failed
        traceback.print_exc()
        vp.grad = None
        torch.cuda.empty_cache()
        return {"ms": None, "peak_gb": None, "error": f"{type(e).__name__}: {str(e)[:120]}"}


def inputs(T: int, N: int, d: int, dtype: torch.dtype, seed: int = 0, B: int = 1):
    g = torch.Generator(device="cuda").manual_seed(seed)
    vp = torch.randn(B, T, N, d, device="cuda", dtype=dtype, generator=g).requires_grad_(True)
    # a target correlated with vp, so |Sy - Sp| is not dominated by noise
    vy = (vp.detach().float() + 0.5 * torch.randn(B, T, N, d, device="cuda", generator=g)).to(dtype)
    w = torch.rand(B, T, N, device="cuda", generator=g)
    w[..., ::7] = 0.0
    w[..., 1::11] = 1.0
    return vp, vy, w


ATOMIC = trd_triton.TileConfig(128, 64, 8, 4, grad="atomic")  # the first design: gradient by in-kernel atomics


def grad_metrics(gf: torch.Tensor, gr: torch.Tensor) -> dict:
    """Relative L2 error and cosine of two gradients (bf16 rounding flips signs of near-zero pair differences,
    so elementwise maxima are not meaningful for the L1 loss's sign-valued gradient)."""
    a, b = gf.double().flatten(), gr.double().flatten()
    return {"grad_l2_rel": float((a - b).norm() / b.norm()), "grad_cos": float(a @ b / (a.norm() * b.norm()))}


def kernel_check(results: dict) -> None:
    """The kernel alone: triton_tiles vs the float64 chunked pass on the *same* normalised (rounded) inputs,
    both gradient modes, bf16 and float32 (isolates kernel errors from input rounding)."""
    rows = []
    T, N, d = 4, 300, 256  # 1,200 tokens: several strips and tiles straddling frames
    for dtype in (torch.bfloat16, torch.float32):
        for mode in ("gemm", "atomic"):
            for op, tau, mt in (("or", math.inf, True), ("xor", 10.0, False), ("none", 10.0, True)):
                g = torch.Generator(device="cuda").manual_seed(3)
                xh, _ = chunked.normalise(torch.randn(2, T * N, d, device="cuda", generator=g), dtype)
                yh, _ = chunked.normalise(torch.randn(2, T * N, d, device="cuda", generator=g), dtype)
                w = None if op == "none" else torch.rand(2, T * N, device="cuda", generator=g)
                spec = common.Spec(N=N, op=op, tau=tau, mask_temporal=mt, margin=0.0, lam_tmp=1.0, alpha_s=1.0,
                                     alpha_t=1.0, backend="triton", fused=True, chunk=512)
                base = trd_triton.FP32_CONFIG if dtype == torch.float32 else trd_triton.DEFAULT_CONFIG
                cfg = trd_triton.TileConfig(**{**base.__dict__, "grad": mode, "strip_bytes": 2 * 2 * T * N * 4 * base.block})
                got = trd_triton.triton_tiles(xh, yh, w, spec, 0.4, -0.8, True, True, config=cfg)
                ref = chunked.chunked_tiles(xh.double(), yh.double(), None if w is None else w.double(), spec, 0.4,
                                            -0.8, True, True)
                row = {"dtype": str(dtype).replace("torch.", ""), "grad": mode, "op": op, "tau": tau,
                       "mask_temporal": mt, "num_spa_rel": rel(got[0], ref[0]), "num_tmp_rel": rel(got[1], ref[1]),
                       "G_rel": rel(got[2], ref[2])}
                rows.append(row)
                log(f"kernel check {row}")
    results["kernel_checks"] = rows


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def check_correctness(results: dict) -> None:
    """Triton fast path vs the reference: loss relative error and gradient max-abs error / max |grad|."""
    rows = []
    cases = [(op, math.inf, True) for op in ("none", "and", "or", "xor")]
    cases += [("or", 10.0, True), ("or", math.inf, False), ("xor", 10.0, False)]
    for dtype, (T, N, d) in ((torch.bfloat16, (4, 96, 256)), (torch.float32, (3, 80, 128))):
        for op, tau, mt in cases:
            vp, vy, w = inputs(T, N, d, dtype, seed=1, B=2)
            kw = dict(op=op, tau=tau, lam_tmp=0.7, mask_temporal=mt)
            ref = masked_trd_reference(vp, vy, w, **kw)
            gr = torch.autograd.grad(ref.total, vp)[0]
            fast = masked_trd(vp, vy, w, impl="triton", **kw)
            gf = torch.autograd.grad(fast.total, vp)[0]
            fs = masked_trd(vp, vy, w, impl="triton", **kw).spatial  # the recompute backward branch
            gs = torch.autograd.grad(fs, vp)[0]
            grs = torch.autograd.grad(masked_trd_reference(vp, vy, w, **kw).spatial, vp)[0]
            row = {
                "dtype": str(dtype).replace("torch.", ""),
                "shape": [2, T, N, d],
                "op": op,
                "tau": tau,
                "mask_temporal": mt,
                "loss_rel": max(rel(fast.spatial, ref.spatial), rel(fast.temporal, ref.temporal), rel(fast.total, ref.total)),
                "grad_rel": rel(gf, gr),
                "grad_spatial_rel": rel(gs, grs),
                **grad_metrics(gf, gr),
            }
            rows.append(row)
            log(f"check {row}")
    # hinge form
    vp, vy, _ = inputs(3, 64, 128, torch.bfloat16, seed=2, B=2)
    hf = videorepa_trd(vp, vy, margin=0.1, impl="triton")
    hr = videorepa_trd_reference(vp, vy, 0.1)
    rows.append({"dtype": "bfloat16", "shape": [2, 3, 64, 128], "op": "hinge-0.1", "tau": math.inf, "mask_temporal": True,
                 "loss_rel": rel(hf.total, hr.total),
                 "grad_rel": rel(torch.autograd.grad(hf.total, vp)[0], torch.autograd.grad(hr.total, vp)[0]),
                 "grad_spatial_rel": None, **grad_metrics(torch.autograd.grad(videorepa_trd(vp, vy, margin=0.1, impl="triton").total, vp)[0],
                                                          torch.autograd.grad(videorepa_trd_reference(vp, vy, 0.1).total, vp)[0])})
    log(f"check {rows[-1]}")
    results["checks"] = rows


def full_size_check(results: dict, d: int) -> None:
    """bf16 at the smallest paper grid (9,216 tokens, d=1664): fast vs reference."""
    T, N = GRIDS[0]
    vp, vy, w = inputs(T, N, d, torch.bfloat16)
    ref = masked_trd_reference(vp, vy, w)
    gr = torch.autograd.grad(ref.total, vp)[0]
    fast = masked_trd(vp, vy, w, impl="triton")
    gf = torch.autograd.grad(fast.total, vp)[0]
    results["full_size_check"] = {"tokens": T * N, "loss_rel": rel(fast.total, ref.total), "grad_rel": rel(gf, gr),
                                  "loss": float(ref.total.detach()), **grad_metrics(gf, gr)}
    log(f"full-size check {results['full_size_check']}")
    del vp, vy, w, ref, gr, fast, gf
    torch.cuda.empty_cache()


def sweep_configs(results: dict, d: int, T: int, N: int) -> trd_triton.TileConfig:
    C = trd_triton.TileConfig
    configs = [
        C(128, 64, 8, 4, grad="atomic"),
        C(128, 64, 8, 3, grad="atomic", symmetric=False),
        C(128, 64, 8, 4, grad="gemm"),
        C(128, 64, 8, 3, grad="gemm"),
        C(128, 128, 8, 3, grad="gemm"),
        C(128, 64, 8, 4, grad="gemm", strip_bytes=192 * 2**20),
        C(128, 64, 8, 4, grad="gemm", strip_bytes=768 * 2**20),
        C(128, 64, 8, 4, grad="gemm", group=16),
    ]
    vp, vy, w = inputs(T, N, d, torch.bfloat16)
    rows = []
    best, best_ms = trd_triton.DEFAULT_CONFIG, math.inf
    for cfg in configs:
        r = measure(lambda x: masked_trd(x, vy, w, impl="triton", tile_config=cfg).total, vp, warmup=1, iters=3)
        r["config"] = cfg.__dict__
        rows.append(r)
        log(f"sweep {r}")
        if r["ms"] is not None and r["ms"] < best_ms and cfg.symmetric:
            best, best_ms = cfg, r["ms"]
    results["sweep"] = {"tokens": T * N, "rows": rows, "best": best.__dict__}
    del vp, vy, w
    torch.cuda.empty_cache()
    return best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out-dir", default="benchmarks/out")
    p.add_argument("--d", type=int, default=1664)
    p.add_argument("--skip-reference-above", type=int, default=10**9, help="tokens above which the oracle is skipped")
    p.add_argument("--no-sweep", action="store_true")
    args = p.parse_args()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    import triton

    results: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "d": args.d,
        "dtype": "bfloat16",
        "op": "or",
    }
    log(f"env {results}")
    rate = matmul_rate(23040, args.d)
    results["matmul_tflops"] = rate
    log(f"bf16 Gram-shaped matmul (23040 x {args.d}) @ ({args.d} x 23040): {rate:.0f} TFLOP/s")

    # a failed check is recorded (results["failed"], the table's header) and fails the run at the end, after the
    # timings that do not depend on it were still taken
    failed: list[str] = results.setdefault("failed", [])
    steps = {"kernel_check": kernel_check, "check_correctness": check_correctness,
             "full_size_check": lambda r: full_size_check(r, args.d)}
    for name, step in steps.items():
        try:
            step(results)
        except Exception as e:
            traceback.print_exc()
            failed.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        (out / "trd_bench.json").write_text(json.dumps(results, indent=1))
    tile_config = trd_triton.DEFAULT_CONFIG
    if not args.no_sweep:
        try:
            tile_config = sweep_configs(results, args.d, *GRIDS[1])
        except Exception as e:
            traceback.print_exc()
            failed.append(f"sweep_configs: {type(e).__name__}: {str(e)[:200]}")
    log(f"tile config {tile_config}")
    (out / "trd_bench.json").write_text(json.dumps(results, indent=1))

    rows = []
    for T, N in GRIDS:
        n = T * N
        vp, vy, w = inputs(T, N, args.d, torch.bfloat16)
        floor_ms = 8.0 * n * n * args.d / (rate * 1e12) * 1e3
        row = {"T": T, "N": N, "tokens": n, "floor_ms": floor_ms,
               "inputs_gb": (vp.numel() + vy.numel()) * 2 / 1e9}
        impls = {
            "fast": lambda x: masked_trd(x, vy, w, impl="triton", fused=True, tile_config=tile_config).total,
            "fast_recompute": lambda x: masked_trd(x, vy, w, impl="triton", fused=False, tile_config=tile_config).total,
            "fast_atomic": lambda x: masked_trd(x, vy, w, impl="triton", tile_config=ATOMIC).total,
            "naive_bf16": lambda x: naive_bf16(x, vy, w),
            "reference": lambda x: masked_trd_reference(x, vy, w).total,
        }
        for name, fn in impls.items():
            if name in ("reference", "naive_bf16") and n > args.skip_reference_above:
                row[name] = {"ms": None, "peak_gb": None, "error": "skipped (needs > 80 GB)"}
                continue
            row[name] = measure(fn, vp)
            log(f"{n} tokens {name}: {row[name]}")
        if row["fast"]["ms"]:
            row["fast_over_floor"] = row["fast"]["ms"] / floor_ms
        rows.append(row)
        results["table"] = rows
        (out / "trd_bench.json").write_text(json.dumps(results, indent=1))
        del vp, vy, w
        torch.cuda.empty_cache()

    results["addmm_float32_output"] = trd_triton._ADDMM_DTYPE_OK[0]  # False: the bf16-output fallback was used
    (out / "trd_bench.json").write_text(json.dumps(results, indent=1))
    (out / "trd_bench.md").write_text(markdown(results))
    print(markdown(results), flush=True)
    if failed:
        raise SystemExit("benchmark steps failed (see trd_bench.json 'failed'): " + "; ".join(failed))


def _fmt(r: dict) -> str:
    if r.get("ms") is None:
        return r.get("error", "n/a")
    return f"{r['ms']:.1f} ms / {r['peak_gb']:.2f} GB"


def markdown(res: dict) -> str:
    lines = [
        f"Device: {res['device']}, torch {res['torch']}, triton {res['triton']}; d = {res['d']}, bf16, B = 1, op `or`, "
        f"tau = inf; bf16 Gram-shaped matmul rate measured in the same run: {res['matmul_tflops']:.0f} TFLOP/s.",
        "",
        f"Fast path tile config (best of the sweep at 23,040 tokens): `{res.get('sweep', {}).get('best')}`.",
        "",
        *([f"FAILED: {f}" for f in res["failed"]] + [""] if res.get("failed") else []),
        "| tokens (T x N) | GEMM floor | fast (fused) | fast / floor | fast, recompute bwd | fast, atomic grad | naive bf16 Grams | reference (fp32 oracle) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in res.get("table", []):
        ratio = f"{r['fast_over_floor']:.2f}x" if r.get("fast_over_floor") else "n/a"
        lines.append(
            f"| {r['tokens']:,} ({r['T']}x{r['N']}) | {r['floor_ms']:.1f} ms | {_fmt(r['fast'])} | {ratio} | "
            f"{_fmt(r['fast_recompute'])} | {_fmt(r['fast_atomic'])} | {_fmt(r['naive_bf16'])} | {_fmt(r['reference'])} |"
        )
    lines.append("")
    lines.append("Time: median forward+backward; memory: peak allocated beyond the inputs (vp, vy, w), vp.grad included.")
    kc = res.get("kernel_checks", [])
    for dt in ("bfloat16", "float32"):
        rows = [c for c in kc if c["dtype"] == dt]
        if rows:
            lines.append(f"Kernel vs float64 on the same {dt} inputs (both gradient modes, or/xor/none, tau inf/10): "
                         f"max loss-sum relative error {max(max(c['num_spa_rel'], c['num_tmp_rel']) for c in rows):.1e}, "
                         f"max G error {max(c['G_rel'] for c in rows):.1e} (max-abs difference over max |G|).")
    checks = res.get("checks", [])
    if checks:
        by = {}
        for c in checks:
            key = c["dtype"]
            by.setdefault(key, [0.0, 0.0])
            by[key][0] = max(by[key][0], c["loss_rel"])
            by[key][1] = max(by[key][1], c["grad_rel"], c["grad_spatial_rel"] or 0.0)
        for k, (lr, gr) in by.items():
            l2 = max(c.get("grad_l2_rel", 0.0) for c in checks if c["dtype"] == k)
            cos = min(c.get("grad_cos", 1.0) for c in checks if c["dtype"] == k)
            lines.append(f"End to end vs the fp32-math reference, {k} inputs, every op / tau / temporal-mask case: max "
                         f"loss relative error {lr:.1e}; gradient: max-abs error / max |grad| {gr:.1e}, relative L2 "
                         f"error {l2:.1e}, cosine >= {cos:.5f}.")
    fs = res.get("full_size_check")
    if fs:
        lines.append(f"At {fs['tokens']:,} tokens, d = {res['d']}, bf16: loss relative error {fs['loss_rel']:.1e}, "
                     f"gradient relative L2 error {fs.get('grad_l2_rel', float('nan')):.1e}, cosine "
                     f"{fs.get('grad_cos', float('nan')):.5f}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
