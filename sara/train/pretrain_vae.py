"""Lab scale: train diffusers' `AutoencoderKLWan` on the corpus.

Compression: 4x temporal, and 2^(len(dim_mult) - 1) spatial: Wan's own 8x with four levels, 4x with three. The
lab uses three levels (4x spatial, 16 channels) with a DiT patch of 1x2x2, so the DiT sees the same number of
tokens as Wan's 8x VAE with a 1x1x1 patch, and the VAE has four times the latent positions to reconstruct from
(docs/lab/base.md: the 8x VAE plateaued near 20 dB on the budget).

Loss: L1 + MSE on [-1, 1] pixels of the decoded posterior sample, plus a small KL term (`kl_weight`) so the latent
stays close to a unit Gaussian without giving up detail. After training, the per-channel mean and std of the
posterior means over the training clips are written into the config (`latents_mean` / `latents_std`): Wan's
pipeline and `sara.models.dit.encode_latents` normalise with them, so the DiT sees unit-variance latents.
Gate (docs/lab/base.md): held-out reconstruction PSNR (8-bit pixels, mean over clips) >= `min_psnr_db`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sara.config import VAEPretrainParams
from sara.train.cuda_graph import GraphedStep, set_lr
from sara.train.schedules import budget_lr

Z_DIM = 16  # Wan's latent channels (the DiT's in_channels)


def vae_config(p: VAEPretrainParams) -> dict[str, Any]:
    """AutoencoderKLWan config of `pretrain.vae`; the defaults are the embedded default's tiny VAE.

    Each level after the first halves height and width; the last two also halve time (4x temporal, like Wan).
    `scale_factor_*` tell Wan's pipeline the compression, which it otherwise assumes to be Wan's 4x / 8x.
    """
    levels = len(p.dim_mult) - 1  # downsampling levels (the config requires at least two)
    temporal = [i >= levels - 2 for i in range(levels)]  # Wan, 3 levels: [False, True, True]
    return dict(base_dim=p.base_dim, z_dim=Z_DIM, dim_mult=list(p.dim_mult), num_res_blocks=p.num_res_blocks,
                temperal_downsample=temporal, scale_factor_spatial=2**levels, scale_factor_temporal=2**sum(temporal))


def build_vae(p: VAEPretrainParams, seed: int) -> nn.Module:
    """Seeded random-init AutoencoderKLWan of `pretrain.vae`."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(**vae_config(p))


def to_pixels(frames: torch.Tensor) -> torch.Tensor:
    """uint8 clips (B, F, H, W, 3) -> VAE input (B, 3, F, H, W) float in [-1, 1] (on the clips' device)."""
    return frames.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """VAE output (B, 3, F, H, W) in [-1, 1] -> uint8 clips (B, F, H, W, 3)."""
    return ((pixels.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 4, 1)


def psnr_db(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-clip PSNR (B,) of two uint8 clip batches (B, F, H, W, 3), 8-bit peak."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return 10.0 * torch.log10(255.0**2 / mse)


@torch.no_grad()
def reconstruct(vae: nn.Module, frames: torch.Tensor, batch_size: int = 16) -> torch.Tensor:
    """Deterministic reconstruction (posterior mode) of uint8 clips (N, F, H, W, 3) -> uint8 (N, F, H, W, 3)."""
    p = next(vae.parameters())
    out = []
    for i in range(0, len(frames), batch_size):
        x = to_pixels(frames[i : i + batch_size].to(p.device))
        with _autocast(p.device):
            z = vae.encode(x).latent_dist.mode()
            rec = vae.decode(z).sample
        out.append(to_uint8(rec).cpu())
    return torch.cat(out)


@torch.no_grad()
def latent_statistics(vae: nn.Module, frames: torch.Tensor, batch_size: int = 32, max_clips: int = 1024) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of up to `max_clips` clips (Wan's latents_mean / std)."""
    p = next(vae.parameters())
    zs = []
    for i in range(0, min(len(frames), max_clips), batch_size):
        with _autocast(p.device):
            z = vae.encode(to_pixels(frames[i : i + batch_size].to(p.device))).latent_dist.mode()
        zs.append(z.float().transpose(0, 1).flatten(1))  # (C, B*F'*H'*W')
    z = torch.cat(zs, 1)
    return z.mean(1).tolist(), z.std(1).clamp_min(1e-4).tolist()


def _autocast(device: torch.device, cache: bool = True):
    """bf16 autocast on CUDA; `cache=False` inside a CUDA graph capture (its weight-cast cache cannot be captured)."""
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False)
    return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)


@dataclass
class VAEResult:
    vae: nn.Module
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    originals: np.ndarray | None = None  # (n, F, H, W, 3) uint8 held-out clips of the contact sheet
    reconstructions: np.ndarray | None = None


def crop_batch(clips: torch.Tensor, idx: torch.Tensor, frames: int | None, size: int | None,
               gen: torch.Generator) -> torch.Tensor:
    """Random windows of `frames` frames and `size`^2 pixels of the clips `idx` (None: whole) -> (B, F', H', W', 3)."""
    n, f, h, w, _ = clips.shape
    frames = min(frames or f, f)
    t0 = torch.randint(0, f - frames + 1, (1,), generator=gen).item()
    if size is None or size >= min(h, w):
        return clips[idx, t0 : t0 + frames]
    y0 = torch.randint(0, h - size + 1, (1,), generator=gen).item()
    x0 = torch.randint(0, w - size + 1, (1,), generator=gen).item()
    return clips[idx, t0 : t0 + frames, y0 : y0 + size, x0 : x0 + size]


def train_vae(
    p: VAEPretrainParams,
    train_frames: np.ndarray,
    heldout_frames: np.ndarray,
    device: torch.device,
    *,
    sheet_clips: int = 4,
    log: Callable[[str], None] = print,
) -> VAEResult:
    """Train the VAE on uint8 clips (N, F, H, W, 3); the whole corpus sits on the device, so no step waits on data.

    With a crop phase (`crop_frames` / `crop_size`), steps train on random crops until the last `full_fraction` of
    the steps, then on whole clips (the held-out gate is always measured on whole clips).
    On a GPU each phase's step is captured as a CUDA graph (`cuda_graph`, sara.train.cuda_graph): the step is
    launch-bound (thousands of small kernels), and replaying it gives many more optimiser steps per minute.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes per phase: let cuDNN pick its fastest 3-D convolutions
    vae = build_vae(p, p.seed).to(device).train()
    clips = torch.from_numpy(np.array(train_frames)).to(device)  # (N, F, H, W, 3) uint8
    cropping = p.crop_frames is not None or p.crop_size is not None
    graphed = device.type == "cuda" and p.cuda_graph
    # a captured step reads its learning rate from a tensor, updated in place by the schedule (set_lr)
    opt = torch.optim.AdamW(vae.parameters(), lr=torch.tensor(p.lr, device=device) if graphed else p.lr,
                            betas=(0.9, 0.99), weight_decay=0.0, fused=device.type == "cuda", capturable=graphed)

    def train_step(x: torch.Tensor) -> torch.Tensor:
        """One optimiser step on pixels x (B, 3, F, H, W) -> (loss, reconstruction MSE); no host sync inside."""
        opt.zero_grad(set_to_none=True)
        with _autocast(device, cache=not graphed):
            post = vae.encode(x).latent_dist
            # decode the posterior mean: the latent the DiT is trained on (sara.models.dit.encode_latents); the KL
            # term keeps the means near a unit Gaussian
            rec = vae.decode(post.mode()).sample
        err = rec.float() - x
        mse = (err**2).mean()
        loss = err.abs().mean() + mse + p.kl_weight * post.kl().mean() / x[0].numel()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        return torch.stack([loss.detach(), mse.detach()])

    # one graph per phase (crops, whole clips): a graph replays one fixed input shape
    phase_step = {phase: GraphedStep(train_step, log=lambda s: log(f"[vae] {s}")) if graphed else train_step
                  for phase in ("crop", "whole")}
    gen = torch.Generator(device="cpu").manual_seed(p.seed)
    warmup = min(100, p.steps // 10)
    history: list[dict[str, float]] = []
    t0 = time.time()
    step = 0
    for step in range(p.steps):
        full = not cropping or step >= (1 - p.full_fraction) * p.steps
        set_lr(opt, budget_lr(step, p.steps, p.lr, warmup))
        batch = p.batch_size if full else (p.crop_batch_size or p.batch_size)
        idx = torch.randint(0, len(clips), (batch,), generator=gen).to(device)
        x = to_pixels(clips[idx] if full else crop_batch(clips, idx, p.crop_frames, p.crop_size, gen))  # (B, 3, F, H, W)
        stats = phase_step["whole" if full else "crop"](x)
        if step % 50 == 0 or step == p.steps - 1:
            loss, mse = stats.tolist()
            rec_psnr = 10 * np.log10(4.0 / max(mse, 1e-10))  # [-1, 1] pixels: peak-to-peak 2
            history.append({"step": step, "loss": loss, "train_psnr_db": rec_psnr,
                            "seconds": time.time() - t0, "phase": "whole" if full else "crop"})
            log(f"[vae] step {step}/{p.steps} ({'whole clips' if full else 'crops'} {tuple(x.shape[2:])}) "
                f"loss {loss:.4f} train PSNR {rec_psnr:.2f} dB ({time.time() - t0:.0f} s)")
    train_seconds = time.time() - t0
    vae.eval().requires_grad_(False)
    mean, std = latent_statistics(vae, clips)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    held = torch.from_numpy(np.ascontiguousarray(heldout_frames[: p.eval_clips]))
    rec = reconstruct(vae, held)
    psnr = psnr_db(rec, held)
    metrics = {
        "steps_done": step + 1, "train_seconds": round(train_seconds, 2), "heldout_clips": len(held),
        "psnr_db": round(float(psnr.mean()), 3), "psnr_db_min": round(float(psnr.min()), 3),
        "min_psnr_db": p.min_psnr_db, "gate_met": bool(psnr.mean() >= p.min_psnr_db),
        "params": sum(t.numel() for t in vae.parameters()),
    }
    n = min(sheet_clips, len(held))
    return VAEResult(vae, metrics, history, held[:n].numpy(), rec[:n].numpy())
