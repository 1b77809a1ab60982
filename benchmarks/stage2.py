"""Stage 2 step time and peak memory per method on one GPU (docs/benchmarks.md, "Stage 2").

A random-init Wan-1.3B-size DiT (dim 1536, 12 heads, 30 layers, ffn 8960) at 81x480x832 (latent 21x60x104,
32,760 tokens), a random-init V-JEPA-L-size encoder (dim 1024, 24 layers, 16 heads, 32 frames at 384, grid
16x24x24) and a random-init Stage 1 aligner (2 CA + 4 SA blocks at width 1024, text width 2048). Each method runs
the project's own Stage 2 module (`sara.train.stage2.Stage2Model` with the method's `sara.methods` objective)
for warmup + timed steps of: V-JEPA on the clean clip and (sara) the aligner, both without grad; DiT forward with
the layer hook; L_diff + 0.5 L_aux; backward; clip; AdamW step. The DiT uses gradient checkpointing in every
method (it does not fit at 32,760 tokens without it). Not timed, identical for every method: the VAE encode
and the text encoder (latents and text states are random tensors of the right shapes), and MoAlign's optical
flow (computed once per clip and cached in training; a random flow field on the V-JEPA grid here).

Engine: the project's DeepSpeed engine (ZeRO-2, bf16, one rank) when deepspeed imports, else plain torch AdamW
with bf16 autocast (the table says which). benchmarks/stage2_real_sizes.py runs the same `bench_method` at the real
Wan2.1-1.3B and Wan2.2-TI2V-5B sizes under other engine settings. Run:
    PYTHONUNBUFFERED=1 python benchmarks/stage2.py --out stage2.json
CPU smoke test of the same code at toy sizes: python benchmarks/stage2.py --toy
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sara.config import AlignerParams, Params, TrainParams, TRDParams, VFMParams  # noqa: E402
from sara.env import resolve_device  # noqa: E402

SIZES = {
    # name: (dit heads, head_dim, layers, ffn, latent (F', H', W'), vfm (dim, layers, heads, frames, size), text (L, dim), layer)
    "wan1.3b-81x480x832": dict(heads=12, head_dim=128, layers=30, ffn=8960, latent=(21, 60, 104), pixels=(81, 480, 832),
                               vfm=dict(hidden_size=1024, num_layers=24, num_heads=16, frames=32, image_size=384),
                               text=(512, 4096), aligner_text=(256, 2048), layer=14, proj_hidden=2048),
    "toy": dict(heads=2, head_dim=16, layers=2, ffn=64, latent=(3, 8, 8), pixels=(9, 64, 64),
                vfm=dict(hidden_size=64, num_layers=2, num_heads=4, frames=8, image_size=64),
                text=(16, 64), aligner_text=(8, 32), layer=1, proj_hidden=64),
}


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev: torch.device, reps: int) -> float:
    """Median wall time (ms) of fn() over reps after one warm-up call."""
    fn()
    out = []
    for _ in range(reps):
        sync(dev)
        t0 = time.perf_counter()
        fn()
        sync(dev)
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def nograd_forward_ms(net: torch.nn.Module, z0: torch.Tensor, text: torch.Tensor, dev: torch.device, reps: int,
                      autocast: bool) -> float:
    """Median ms of one DiT forward without grad (what a sampling step costs per pass), in eval mode."""
    net.eval()
    zt, t = z0.to(next(net.parameters()).dtype), torch.full((1,), 930.0, device=dev)

    def forward() -> None:
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and autocast):
            net(zt, t, text.to(zt.dtype), return_dict=False)

    return timed(forward, dev, reps)


class SaliencyStub:
    """The aligner's Stage 2 path: w = sigmoid(Phi_sal(Phi_CA(V_y, E_emb(c)))) on random caption embeddings."""

    def __init__(self, vfm_dim: int, text_len: int, text_dim: int, dev: torch.device, dtype: torch.dtype) -> None:
        from sara.models.aligner import SaliencyAligner

        self.aligner = SaliencyAligner(vfm_dim, text_dim, AlignerParams()).to(dev, dtype).eval().requires_grad_(False)
        self.text = torch.randn(1, text_len, text_dim, device=dev, dtype=dtype)
        self.mask = torch.ones(1, text_len, dtype=torch.bool, device=dev)

    @torch.no_grad()
    def __call__(self, vy: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        out = self.aligner(vy.to(self.text.dtype), self.text, self.mask)
        return out.saliency.float().reshape(vy.shape[0], grid[0], grid[1] * grid[2])  # (B, T_s, N_s)


def bench_method(run: str, size: dict[str, Any], dev: torch.device, steps: int, warmup: int, train: TrainParams | None,
                 forward_reps: int = 0) -> dict[str, Any]:
    """Step time and peak memory of one Stage 2 run at `size`. `train`: the project's DeepSpeed engine with these
    settings (ZeRO stage, offload, precision, activation checkpointing), or None for plain torch AdamW with bf16
    autocast. `forward_reps` > 0 also times that many DiT forwards without grad (what sampling costs)."""
    import resource

    from diffusers import WanTransformer3DModel

    from sara.methods import REGISTRY, AuxTargets, build_objective
    from sara.models.encoders import build_vfm
    from sara.train.stage2 import Stage2Model

    from sara.runs import Run

    run = Run.parse(run)
    use_ds = train is not None
    spec = REGISTRY[run.method]
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    params = Params(trd=TRDParams(layer=size["layer"], projector_hidden=size["proj_hidden"]),
                    vfm=VFMParams(kind="tiny", patch_size=16, tubelet_size=2, **size["vfm"]))
    torch.manual_seed(0)
    with torch.device(dev):
        dit = WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=size["heads"], attention_head_dim=size["head_dim"],
            in_channels=size.get("channels", 16), out_channels=size.get("channels", 16), text_dim=size["text"][1],
            freq_dim=256, ffn_dim=size["ffn"], num_layers=size["layers"],
        )
    if train is None or train.grad_checkpointing:
        dit.enable_gradient_checkpointing()
    vfm = build_vfm(params.vfm, dev) if spec.needs_vfm else None
    if vfm is not None and dev.type == "cuda":
        vfm.model.to(dtype)
    sal = SaliencyStub(vfm.dim, *size["aligner_text"], dev, dtype) if spec.needs_saliency else None
    dit_dim = size["heads"] * size["head_dim"]
    aux = build_objective(run, params, dit_dim, vfm.dim if vfm else 0)
    model = Stage2Model(dit, aux, params.trd.layer if spec.needs_vfm else None, params.trd.lam_trd)

    if use_ds:
        from sara.train.engine import TrainEngine, init_distributed

        engine = TrainEngine(model, train, init_distributed())
        fwd, backward, step = engine, engine.backward, engine.step
        n_params = sum(getattr(p, "ds_numel", p.numel()) for p in engine.module.parameters())  # ZeRO-3: partitioned
    else:
        model = model.to(dev)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-6, weight_decay=0.01,
                                fused=dev.type == "cuda")

        def fwd(*a):
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                return model(*a)

        def backward(loss):
            loss.backward()

        def step():
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)

        n_params = sum(p.numel() for p in model.parameters())

    f, h, w = size["latent"]
    z0 = torch.randn(1, size.get("channels", 16), f, h, w, device=dev)
    text = torch.randn(1, *size["text"], device=dev)
    frames = torch.randint(0, 256, (1, *size["pixels"], 3), dtype=torch.uint8, device=dev)

    def targets() -> AuxTargets:
        if vfm is None:
            return AuxTargets()
        vy = vfm.features(frames)  # (B, T_s, N_s, D_v), no grad inside
        w_ = sal(vy, vfm.grid) if sal is not None else None
        t, hh, ww = vfm.grid
        flow = torch.randn(1, t - 1, hh, ww, 2, device=dev) if spec.needs_flow else None  # cached per clip in training
        return AuxTargets(vy=vy, w=w_, flow=flow, vfm_grid=vfm.grid)

    def one_step() -> dict[str, float]:
        tg = targets()
        noise = torch.randn_like(z0)
        sigma = torch.full((1,), 0.93, device=dev)
        zt = (1 - sigma) * z0 + sigma * noise
        terms = fwd(zt, sigma * 1000, text, noise - z0, tg)
        backward(terms["loss"])
        step()
        return {k: float(v.detach()) for k, v in terms.items()}

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for _ in range(warmup):
        one_step()
    times = []
    for _ in range(steps):
        sync(dev)
        t0 = time.perf_counter()
        terms = one_step()
        sync(dev)
        times.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    host_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB (Linux)

    # where the time goes: the frozen targets and the auxiliary loss alone (same shapes as inside the step)
    parts: dict[str, float] = {}
    if forward_reps:  # the trained DiT as the engine holds it
        net = (engine.module if use_ds else model).transformer
        parts["dit_fwd_nograd_ms"] = nograd_forward_ms(net, z0, text, dev, forward_reps, autocast=not use_ds)
    if vfm is not None:
        parts["vfm_ms"] = timed(lambda: vfm.features(frames), dev, 3)
        vy = vfm.features(frames)
        if sal is not None:
            parts["aligner_ms"] = timed(lambda: sal(vy, vfm.grid), dev, 3)
        tg = targets()
        hid = torch.randn(1, f * (h // 2) * (w // 2), dit_dim, device=dev, dtype=dtype, requires_grad=True)
        aux_mod = (engine.module if use_ds else model).aux

        aux_params = [p for p in aux_mod.parameters() if p.requires_grad]

        def aux_fb() -> None:
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda" and not use_ds):
                out = aux_mod(hid, (f, h // 2, w // 2), tg)["aux"]
            # the same backward as `out.backward()`, but nothing accumulates into .grad: the engine's gradient hooks
            # never see these extra passes (DeepSpeed ZeRO-2 reduces each parameter once per step and stops with
            # "gradient computed twice" when a reduce bucket fills between two of them)
            torch.autograd.grad(out, [hid, *aux_params])

        parts["aux_loss_fwd_bwd_ms"] = timed(aux_fb, dev, 3)
    engine_name = f"deepspeed-zero{train.zero_stage}" if use_ds else "torch-adamw"
    return {"run": str(run), "step_ms_median": statistics.median(times), "step_ms_all": times, "peak_mem_gib": peak,
            "host_peak_gib": host_peak, "params": n_params, "tokens": f * (h // 2) * (w // 2), "engine": engine_name,
            "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "last_terms": terms, **parts}


def child_result(label: dict[str, Any], measure: Any, out: str | Path) -> None:
    """In a benchmark's child process: write `measure()`'s result, or the error that stopped it, as JSON to `out`."""
    try:
        res = {**label, **measure()}
    except Exception as err:  # the parent's table says why a row is missing (out of memory, a DeepSpeed refusal)
        import traceback

        traceback.print_exc()
        res = {**label, "error": f"{type(err).__name__}: {err}"}
    Path(out).write_text(json.dumps(res))


def write_results(out_dir: str | Path | None, name: str, md: str, rows: list[dict[str, Any]]) -> None:
    """Print a benchmark's markdown table and, with an output folder, write it as `<name>.md` beside its rows as
    `<name>.json`."""
    print("\n" + md, flush=True)
    if out_dir:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}.md").write_text(md)
        (out / f"{name}.json").write_text(json.dumps(rows, indent=2))


def isolated(argv: list[str], label: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
    """Run `python <argv> --out <json>` in a process of its own (nothing, allocator state or engine buffers, carries
    over between measurements) and return what its `child_result` wrote, or why it wrote nothing."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.json"
        try:
            subprocess.run([sys.executable, *argv, "--out", str(out)], check=False, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**label, "error": f"timeout after {timeout:.0f} s"}
        return json.loads(out.read_text()) if out.is_file() else {**label, "error": "benchmark process died"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="sft,videorepa,moalign,sara-or")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--toy", action="store_true", help="toy sizes (CPU smoke test)")
    ap.add_argument("--engine", choices=["auto", "deepspeed", "torch"], default="auto")
    ap.add_argument("--out", default=None)
    ap.add_argument("--single", default=None, help=argparse.SUPPRESS)  # internal: one run in this process
    args = ap.parse_args()
    dev = resolve_device("auto")
    size = SIZES["toy" if args.toy else "wan1.3b-81x480x832"]
    use_ds = args.engine == "deepspeed"
    if args.engine == "auto":
        try:
            import deepspeed  # noqa: F401

            use_ds = True
        except Exception as err:  # the GPU image may lack it; plain torch is the fallback
            print(f"[bench] deepspeed unavailable ({err}); using torch AdamW", flush=True)
    if args.single:  # child process: measure one run, write its JSON
        train = TrainParams(zero_stage=2, precision="auto", lr=5e-6, grad_checkpointing=True) if use_ds else None
        child_result({"run": args.single}, lambda: bench_method(args.single, size, dev, args.steps, args.warmup, train), args.out)
        return

    results = []
    for run in [r for r in args.runs.split(",") if r]:
        argv = [__file__, "--single", run, "--steps", str(args.steps), "--warmup", str(args.warmup),
                "--engine", "deepspeed" if use_ds else "torch"] + (["--toy"] if args.toy else [])
        res = isolated(argv, {"run": run})
        print(json.dumps({k: v for k, v in res.items() if k != "step_ms_all"}), flush=True)
        results.append(res)
    info = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "torch": torch.__version__,
            "size": "toy" if args.toy else "wan1.3b-81x480x832", "steps": args.steps, "warmup": args.warmup}
    ok = {r["run"]: r for r in results if "step_ms_median" in r}
    ratios = {}
    if "sara-or" in ok:
        for base in ("sft", "videorepa", "moalign"):
            if base in ok:
                ratios[f"sara-or/{base}"] = ok["sara-or"]["step_ms_median"] / ok[base]["step_ms_median"]
    out = {"info": info, "results": results, "ratios": ratios}
    print("\n| run | step ms (median) | peak GiB | V-JEPA ms | aligner ms | aux fwd+bwd ms |")
    print("|---|---|---|---|---|---|")
    for r in results:
        if "error" in r:
            print(f"| {r['run']} | error: {r['error'][:80]} | | | | |")
            continue
        g = lambda k: f"{r[k]:.1f}" if k in r else "-"  # noqa: E731
        print(f"| {r['run']} | {r['step_ms_median']:.1f} | {r['peak_mem_gib']:.2f} | {g('vfm_ms')} | {g('aligner_ms')} | {g('aux_loss_fwd_bwd_ms')} |")
    print("ratios:", {k: round(v, 4) for k, v in ratios.items()}, flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
