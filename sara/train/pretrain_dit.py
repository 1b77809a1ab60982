"""Lab scale: pretrain the base Wan DiT (the "Pretrained Wan2.2" row) on the corpus, over all timesteps.

- Inputs: latents of every corpus clip from the trained VAE (posterior mode, Wan-normalised), computed once and
  held on the device with the MiniLM states of each clip's full MTSS caption (`dit.text_max_tokens` tokens, so
  the whole caption fits). No step waits on data.
- Objective: Wan's rectified flow (sara.losses.diffusion): z_t = (1 - sigma) z_0 + sigma eps, velocity target
  eps - z_0, sigma from the shifted logit-normal over the whole range [0, 1] (the base model serves both experts).
- Caption dropout: a `caption_dropout` share of each batch gets the empty caption's states, so sampling can use
  classifier-free guidance.
- Every `eval_every` steps (and at the end) `on_eval(step, transformer)` is called: the stage samples the
  held-out prompts and scores them (the learning curve).
- Throughput: the model FLOPs of one step are counted once (torch.utils.flop_counter on a real step) and the
  MFU is reported against the bf16 matmul rate measured in the same process.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sara.config import DiTPretrainParams
from sara.train.schedules import budget_lr
from sara.losses.diffusion import diffusion_loss, flow_match_target, flow_match_xt, sample_band_sigmas, sigma_to_timestep


@torch.no_grad()
def encode_corpus(vae: nn.Module, frames: np.ndarray, device: torch.device, batch_size: int = 64) -> torch.Tensor:
    """Wan-normalised latents (N, 16, F', H', W') float32 on `device` of uint8 clips (N, F, H, W, 3)."""
    from sara.models.dit import encode_latents
    from sara.train.pretrain_vae import to_pixels

    out = []
    for i in range(0, len(frames), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + batch_size])).to(device)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(encode_latents(vae, to_pixels(x)))
    return torch.cat(out)


@torch.no_grad()
def encode_captions(text: nn.Module, captions: list[str], batch_size: int = 256) -> torch.Tensor:
    """Text states (N, max_tokens, D) bf16 (float32 on CPU) of every caption, on the text encoder's device."""
    dtype = torch.bfloat16 if next(text.encoder.parameters()).device.type == "cuda" else torch.float32
    return torch.cat([text(captions[i : i + batch_size]).to(dtype) for i in range(0, len(captions), batch_size)])


def measure_matmul_tflops(device: torch.device, n: int = 8192, reps: int = 10) -> float | None:
    """bf16 (n x n) @ (n x n) rate on random data (mean of `reps` after 3 warm-ups), TFLOP/s; None off CUDA."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (start.elapsed_time(end) / 1e3) / 1e12


@dataclass
class DiTResult:
    transformer: nn.Module  # the weights to save (EMA when ema_decay > 0)
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)


def step_flops(loss_fn: Callable[[], torch.Tensor]) -> float:
    """Model FLOPs of one training step (forward + backward), counted eagerly on a real batch before training
    starts: the counter sees every matmul."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        loss_fn().backward()
    return float(counter.get_total_flops())


def update(opt: torch.optim.Optimizer, transformer: nn.Module, ema: nn.Module | None, loss: torch.Tensor,
           p: DiTPretrainParams) -> None:
    """One optimizer step on `loss` (gradient clipped at `p.grad_clip`), then the EMA copy follows."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(transformer.parameters(), p.grad_clip)
    opt.step()
    if ema is not None:
        with torch.no_grad():
            torch._foreach_lerp_(list(ema.parameters()), list(transformer.parameters()), 1.0 - p.ema_decay)


def train_base_dit(
    p: DiTPretrainParams,
    transformer: nn.Module,
    latents: torch.Tensor,
    text_states: torch.Tensor,
    empty_state: torch.Tensor,
    device: torch.device,
    *,
    on_eval: Callable[[int, nn.Module], dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> DiTResult:
    """Pretrain `transformer` on latents (N, C, F', H', W') and text states (N, L, D), all on `device`."""
    transformer = transformer.to(device).train()
    ema = copy.deepcopy(transformer).eval().requires_grad_(False) if p.ema_decay > 0 else None
    model = torch.compile(transformer) if (p.compile and device.type == "cuda") else transformer
    opt = torch.optim.AdamW(transformer.parameters(), lr=p.lr, betas=(0.9, 0.99), weight_decay=p.weight_decay,
                            fused=device.type == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(p.seed)  # batch indices, dropout, sigmas
    noise_gen = torch.Generator(device=device).manual_seed(p.seed + 1)  # noise drawn where it is used
    cuda = device.type == "cuda"
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else torch.autocast("cpu", enabled=False)
    n = len(latents)
    empty = empty_state.to(device=device, dtype=text_states.dtype)  # (1, L, D)

    def batch() -> tuple[torch.Tensor, ...]:
        idx = torch.randint(0, n, (p.batch_size,), generator=gen).to(device)
        z0 = latents[idx]  # (B, C, F', H', W')
        ctx = text_states[idx]  # (B, L, D)
        drop = (torch.rand(p.batch_size, generator=gen) < p.caption_dropout).to(device)
        ctx = torch.where(drop[:, None, None], empty.expand_as(ctx), ctx)
        sigma = sample_band_sigmas(p.batch_size, gen, mean=0.0, std=1.0, shift=p.shift, t_min=0.0, t_max=1.0).to(device)
        noise = torch.randn(z0.shape, generator=noise_gen, device=device)
        return z0, ctx, sigma, noise

    def step_loss(z0, ctx, sigma, noise, net: nn.Module = model) -> torch.Tensor:
        xt = flow_match_xt(z0, noise, sigma)
        with autocast:
            pred = net(hidden_states=xt, timestep=sigma_to_timestep(sigma), encoder_hidden_states=ctx,
                         return_dict=False)[0]
        return diffusion_loss(pred, flow_match_target(z0, noise))

    flops_per_step = step_flops(lambda: step_loss(*batch(), net=transformer))
    opt.zero_grad(set_to_none=True)
    peak = measure_matmul_tflops(device)

    history: list[dict[str, float]] = []
    curve: list[dict[str, Any]] = []
    warmup = p.warmup_steps
    t_train = 0.0  # wall seconds inside training steps (evaluation excluded)
    t_mark = time.time()
    t0 = time.time()
    step = 0
    done = 0
    first_step_train_s = 0.0
    for step in range(p.steps):
        if on_eval is not None and step % p.eval_every == 0 and step > 0:
            if cuda:
                torch.cuda.synchronize()
            t_train += time.time() - t_mark
            curve.append({"step": step, "train_seconds": round(t_train, 1), **on_eval(step, ema or transformer)})
            transformer.train()
            t_mark = time.time()
        for g in opt.param_groups:
            g["lr"] = budget_lr(step, p.steps, p.lr, max(warmup, 1))
        loss = step_loss(*batch())
        update(opt, transformer, ema, loss, p)
        done = step + 1
        if step == 0:  # the first step compiles (torch.compile): steady-state timing starts after it
            if cuda:
                torch.cuda.synchronize()
            first_step_train_s = t_train + (time.time() - t_mark)
        if step % 100 == 0 or step == p.steps - 1:
            lv = float(loss.detach())  # syncs
            history.append({"step": step, "loss": lv, "seconds": round(time.time() - t0, 2)})
            log(f"[dit] step {step}/{p.steps} loss {lv:.4f} ({time.time() - t0:.0f} s)")
    if cuda:
        torch.cuda.synchronize()
    t_train += time.time() - t_mark
    final = ema or transformer
    if on_eval is not None:
        curve.append({"step": done, "train_seconds": round(t_train, 1), **on_eval(done, final)})
    # steady-state throughput over the whole run (evaluation excluded); first steps include compile/warm-up
    step_s = (t_train - first_step_train_s) / max(done - 1, 1) if done > 1 else t_train
    metrics = {
        "steps_done": done, "train_seconds": round(t_train, 2), "first_step_seconds": round(first_step_train_s, 2),
        "seconds_per_step": round(step_s, 5),  # steady state: after the first (compiling) step, evaluation excluded
        "batch_size": p.batch_size, "flops_per_step": flops_per_step,
        "achieved_tflops": round(flops_per_step / step_s / 1e12, 2),
        "matmul_peak_tflops": round(peak, 1) if peak else None,
        "mfu": round(flops_per_step / step_s / 1e12 / peak, 4) if peak else None,
        "params": sum(t.numel() for t in transformer.parameters()),
        "final_loss": history[-1]["loss"] if history else None,
    }
    return DiTResult(final.eval().requires_grad_(False), metrics, history, curve)
