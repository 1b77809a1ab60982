"""The public TRD losses: `masked_trd` (Eqs. 9-11, every implementation), `vanilla_trd` (Eq. 2) and
`videorepa_trd` (VideoREPA's hinge form). The notation and the fast path: the package docstring."""

from __future__ import annotations

import math
from typing import Any

import torch

from sara.losses.trd.chunked import fast_trd
from sara.losses.trd.common import CHUNK_TOKENS, FUSED, TRDLoss, check_inputs
from sara.losses.trd.reference import reference_trd, videorepa_trd_reference

def masked_trd(
    vp: torch.Tensor,
    vy: torch.Tensor,
    w: torch.Tensor | None = None,
    *,
    op: str = "or",
    tau: float = math.inf,
    lam_tmp: float = 1.0,
    eps: float = 1e-6,
    mask_temporal: bool = True,
    impl: str = "auto",
    chunk: int = CHUNK_TOKENS,
    fused: bool = FUSED,
    tile_config: Any = None,
) -> TRDLoss:
    """Saliency-routed masked TRD, the paper's Eqs. 9-11, without materialising any pair tensor.

    vp, vy: (B, T, N, D) on the common grid (L2-normalised here along D); vy is a frozen target (no gradient).
    w: (B, T, N) saliency in [0, 1], or None for w = 1; it carries no gradient. op: none | and | or | xor (Eq. 8).
    spatial  = sum_{b,t,i,j} W * |Sy - Sp| / (sum W + eps)                                          (Eq. 9)
    temporal = sum_{b,t!=u,i,j} omega_tu * W * |Cy - Cp| / (sum omega_tu * W + eps),                (Eq. 10)
               omega_tu = exp(-|t-u|/tau) (1 for tau = inf); W := 1 here when mask_temporal is False
    total    = spatial + lam_tmp * temporal                                                         (Eq. 11)
    Numerators and denominators are summed over the whole batch before dividing. Note w=None with op xor gives
    W = 0 everywhere and a zero loss. impl: auto (Triton on CUDA for bf16/fp16/fp32, else chunked) | triton |
    chunked | reference. bf16/fp16 inputs accumulate in float32; the losses are float32 (float64 for float64).
    Tuning (tests and benchmarks): `chunk` tokens per tile, `fused` (gradient formed in the forward pass, else
    recomputed in backward), `tile_config` (a `trd_triton.TileConfig`; None = the dtype's default).
    """
    check_inputs(vp, vy, w, op, tau, eps, impl)
    if impl == "reference":
        return reference_trd(vp, vy, w, op, tau, lam_tmp, eps, mask_temporal)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    spatial, temporal = fast_trd(vp, vy, w, op, tau, lam_tmp, eps, mask_temporal, 0.0, impl, chunk, fused, tile_config)
    return TRDLoss(spatial, temporal, spatial + lam_tmp * temporal)


def masked_trd_reference(vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor | None = None, **settings: Any) -> TRDLoss:
    """`masked_trd` on the materialising reference (the test oracle): the same keywords but `impl`."""
    return masked_trd(vp, vy, w, impl="reference", **settings)


def vanilla_trd(vp: torch.Tensor, vy: torch.Tensor, *, lam_tmp: float = 1.0, impl: str = "auto") -> TRDLoss:
    """Eq. 2 of the paper exactly: plain means 1/(T N^2) and 1/(T (T-1) N^2) of |S^y - S^p|, batch-averaged.

    The same as `masked_trd(op="none", eps=0)`; with the default eps the two differ by a relative ~eps/(B T N^2).
    """
    return masked_trd(vp, vy, None, op="none", lam_tmp=lam_tmp, eps=0.0, impl=impl)


def videorepa_trd(
    vp: torch.Tensor, vy: torch.Tensor, *, margin: float = 0.1, impl: str = "auto", chunk: int = CHUNK_TOKENS
) -> TRDLoss:
    """VideoREPA's original TRD form: mean over the full (T*N)^2 Gram (all pairs, both frames-equal and not,
    and the batch) of the hinge max(|Sy - Sp| - margin, 0). `total` is that mean; `spatial` and `temporal` are
    the same hinge mean over within-frame and cross-frame pairs (for logging; total is their pair-count mix)."""
    check_inputs(vp, vy, None, "none", math.inf, 0.0, impl)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if impl == "reference":
        return videorepa_trd_reference(vp, vy, margin)
    B, T, N, _ = vp.shape
    pairs_s, pairs_t = float(B * T * N * N), float(B * T * (T - 1) * N * N)
    # the full-Gram mean (num_s + num_t) / (pairs_s + pairs_t) = k * (spatial + lam * temporal) with
    # lam = pairs_t / pairs_s: written this way the fused gradient (of spatial + lam * temporal) applies
    lam = pairs_t / pairs_s
    spatial, temporal = fast_trd(vp, vy, None, "none", math.inf, lam, 0.0, True, margin, impl, chunk, FUSED)
    total = (spatial + lam * temporal) * (pairs_s / (pairs_s + pairs_t))
    return TRDLoss(spatial, temporal, total)
