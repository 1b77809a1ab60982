"""The exact TRD (the test oracle): materialises the (T*N) x (T*N) Grams and pair weights. Memory O(B (T*N)^2)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sara.losses.routing import pair_weights
from sara.losses.trd.common import TRDLoss, check_inputs, compute_dtype, decay


def _reference_terms(
    vp: torch.Tensor,
    vy: torch.Tensor,
    w: torch.Tensor | None,
    op: str,
    tau: float,
    mask_temporal: bool,
    margin: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(num_spa, den_spa, num_tmp, den_tmp) with every pair materialised; differentiable wrt vp."""
    B, T, N, D = vp.shape
    cd = compute_dtype(vp.dtype)
    xp = F.normalize(vp.to(cd), dim=-1).reshape(B, T * N, D)  # (B, T*N, D)
    xy = F.normalize(vy.detach().to(cd), dim=-1).reshape(B, T * N, D)
    Sp = xp @ xp.transpose(1, 2)  # (B, T*N, T*N)
    Sy = xy @ xy.transpose(1, 2)
    phi = ((Sy - Sp).abs() - margin).clamp_min(0) if margin > 0 else (Sy - Sp).abs()
    wf = (torch.ones(B, T, N, dtype=cd, device=vp.device) if w is None else w.detach().to(cd)).reshape(B, T * N)
    Wp = pair_weights(wf[:, :, None], wf[:, None, :], op)  # (B, T*N, T*N)
    frame = torch.arange(T, device=vp.device).repeat_interleave(N)  # (T*N,)
    same = frame[:, None] == frame[None, :]  # (T*N, T*N)
    omega = decay((frame[:, None] - frame[None, :]).abs().to(cd), tau)  # (T*N, T*N)
    Wt = omega * (Wp if mask_temporal else torch.ones_like(Wp))
    Ws = torch.where(same, Wp, torch.zeros_like(Wp))
    Wt = torch.where(same, torch.zeros_like(Wt), Wt)
    return (Ws * phi).sum(), Ws.sum(), (Wt * phi).sum(), Wt.sum()


def reference_trd(vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor | None, op: str, tau: float, lam_tmp: float,
                  eps: float, mask_temporal: bool) -> TRDLoss:
    """Masked TRD (Eqs. 9-11), naive: materialises both Grams and the pair weights. The test oracle, reached as
    `masked_trd(..., impl="reference")` (inputs checked there). Computes in float32 for bf16/fp16/float32 inputs,
    float64 for float64. Memory O(B * (T*N)^2)."""
    ns, ds, nt, dt = _reference_terms(vp, vy, w, op, tau, mask_temporal, 0.0)
    spatial = ns / (ds + eps) if float(ds) + eps > 0 else ns * 0
    temporal = nt / (dt + eps) if float(dt) + eps > 0 else nt * 0
    return TRDLoss(spatial, temporal, spatial + lam_tmp * temporal)


def videorepa_trd_reference(vp: torch.Tensor, vy: torch.Tensor, margin: float = 0.1) -> TRDLoss:
    """VideoREPA's original TRD, naive: mean over every pair of the full (T*N)^2 Gram (and the batch) of
    max(|Sy - Sp| - margin, 0). `spatial`/`temporal` are the same mean over within-/cross-frame pairs only;
    `total` is the full-Gram mean (= pair-count weighted mix of the two, not spatial + temporal)."""
    check_inputs(vp, vy, None, "none", math.inf, 0.0, "reference")
    B, T, N, _ = vp.shape
    ns, ds, nt, dt = _reference_terms(vp, vy, None, "none", math.inf, True, margin)
    temporal = nt / dt if T > 1 else nt * 0
    return TRDLoss(ns / ds, temporal, (ns + nt) / (ds + dt))
