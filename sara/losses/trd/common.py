"""What every TRD implementation shares: the loss record, the static settings of one evaluation, the input
checks, the temporal decay and the closed-form denominators (summed pair weights) of Eqs. 9 and 10."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from sara.losses.routing import check_op

IMPLS = ("auto", "triton", "chunked", "reference")
NORM_EPS = 1e-12  # F.normalize's default: x / max(||x||, NORM_EPS)
CHUNK_TOKENS = 1024  # token-block size of the chunked backend: B * 1024^2 floats per tile
ROW_CHUNK = 8192  # rows per step when (un)normalising, so no full-size float32 copy of vp is ever alive
FUSED = True  # accumulate the gradient in the forward pass (measured faster: docs/benchmarks.md)


@dataclass(frozen=True)
class TRDLoss:
    """Scalar loss tensors: `total` = `spatial` + lam_tmp * `temporal` for the masked/Eq. 2 forms."""

    spatial: torch.Tensor
    temporal: torch.Tensor
    total: torch.Tensor


@dataclass(frozen=True)
class Spec:
    """Static settings of one TRD evaluation, shared by the backends."""

    N: int  # tokens per frame: frame(a) = a // N
    op: str
    tau: float
    mask_temporal: bool
    margin: float  # 0 for the L1 forms, > 0 for the VideoREPA hinge
    lam_tmp: float
    alpha_s: float  # 1 / (spatial denominator + eps), 0 when that is 0
    alpha_t: float  # 1 / (temporal denominator + eps), 0 when that is 0
    backend: str  # "chunked" | "triton"
    fused: bool
    chunk: int
    tile_config: Any = None  # triton only: a trd_triton.TileConfig, None = the dtype's default


def check_inputs(
    vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor | None, op: str, tau: float, eps: float, impl: str
) -> None:
    check_op(op)
    if impl not in IMPLS:
        raise ValueError(f"unknown impl={impl!r}: expected one of {', '.join(IMPLS)}")
    if vp.dim() != 4:
        raise ValueError(f"vp must have shape (B, T, N, D), got {tuple(vp.shape)}")
    if vy.shape != vp.shape:
        raise ValueError(f"vy must have the shape of vp {tuple(vp.shape)}, got {tuple(vy.shape)}")
    if vy.dtype != vp.dtype or vy.device != vp.device:
        raise ValueError(f"vy must match vp's dtype and device ({vp.dtype}, {vp.device}), got ({vy.dtype}, {vy.device})")
    if w is not None:
        if w.shape != vp.shape[:3]:
            raise ValueError(f"w must have shape (B, T, N) = {tuple(vp.shape[:3])}, got {tuple(w.shape)}")
        # one host read per call (min and max in one kernel): this check runs on every training step
        if w.numel() and bool(((w.detach() < 0.0) | (w.detach() > 1.0)).any()):
            raise ValueError("w must lie in [0, 1]")
    if not tau > 0:
        raise ValueError(f"tau must be > 0 (math.inf for no temporal decay), got {tau}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")


def decay(gap: torch.Tensor, tau: float) -> torch.Tensor:
    """The temporal decay of Eq. 10, exp(-gap / tau) elementwise for frame gaps |t - u| (any shape; 1 for tau =
    inf). The one place it is computed: the denominators, the reference and the chunked tiles call it (the Triton
    kernel evaluates the same expression on the device, sara/losses/_trd_kernel.py)."""
    return torch.exp(-gap / tau) if math.isfinite(tau) else torch.ones_like(gap)


def temporal_decay(T: int, tau: float, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """omega (T, T) with omega_tu = exp(-|t - u| / tau) for t != u and 0 on the diagonal (Eq. 10's frame weights)."""
    t = torch.arange(T, device=device, dtype=dtype)
    gap = (t[:, None] - t[None, :]).abs()  # (T, T)
    return decay(gap, tau) * (gap > 0)


def _sum_abs_diff_sorted(a: torch.Tensor, b_sorted: torch.Tensor, b_prefix: torch.Tensor) -> torch.Tensor:
    """sum_{i,j} |a_i - b_j| over the last axis, batched: a (..., N), b_sorted (..., M), b_prefix (..., M+1)."""
    M = b_sorted.shape[-1]
    k = torch.searchsorted(b_sorted.contiguous(), a.contiguous())  # (..., N) count of b below each a_i
    pre = torch.gather(b_prefix, -1, k)  # (..., N) sum of those b
    below = a * k - pre
    above = (b_prefix[..., -1:] - pre) - a * (M - k)
    return (below + above).sum(-1)


def pair_weight_sums(
    w: torch.Tensor | None, shape: tuple[int, int, int], op: str, tau: float, mask_temporal: bool
) -> tuple[float, float]:
    """Denominators of Eqs. 9 and 10 without eps, summed over the batch, computed without any pair tensor.

    spatial  = sum_{b,t,i,j} W(w_ti, w_tj);  temporal = sum_{b, t != u, i, j} omega_tu * W(w_ti, w_uj)
    (W := 1 in the temporal sum when mask_temporal is False). `shape` is (B, T, N); `w` None means w = 1.
    Closed forms from per-frame sums S_t = sum_i w_ti: and -> S_t S_u, or -> N S_t + N S_u - S_t S_u;
    xor uses sorted w (sum of |a - b| via prefix sums).
    """
    B, T, N = shape
    omega = temporal_decay(T, tau, device=w.device if w is not None else "cpu")  # (T, T), zero diagonal
    uniform_tmp = float(B * N * N * omega.sum())
    if w is None:
        w = torch.ones(shape, dtype=torch.float64)
    w = w.detach().to(torch.float64)
    S = w.sum(-1)  # (B, T)
    if op == "none":
        spa, tmp = float(B * T * N * N), uniform_tmp
    elif op == "and":
        spa = float((S * S).sum())
        tmp = float(torch.einsum("bt,tu,bu->", S, omega, S))
    elif op == "or":
        spa = float((2 * N * S - S * S).sum())
        tmp = float(2 * N * (S * omega.sum(-1)).sum() - torch.einsum("bt,tu,bu->", S, omega, S))
    else:  # xor
        ws, _ = torch.sort(w, dim=-1)  # (B, T, N)
        prefix = F.pad(torch.cumsum(ws, -1), (1, 0))  # (B, T, N+1)
        k = torch.arange(1, N + 1, dtype=torch.float64, device=w.device)
        spa = float(2 * (ws * (2 * k - N - 1)).sum())
        a = w[:, :, None, :].expand(B, T, T, N)  # (B, T_t, T_u, N): frame t's values
        bs = ws[:, None, :, :].expand(B, T, T, N)  # frame u's sorted values
        bp = prefix[:, None, :, :].expand(B, T, T, N + 1)
        P = _sum_abs_diff_sorted(a, bs, bp)  # (B, T, T) sum_{i,j} |w_ti - w_uj|
        tmp = float((P * omega).sum())
    if not mask_temporal:
        tmp = uniform_tmp
    return spa, tmp


def alpha(den: float, eps: float) -> float:
    """1 / (den + eps), the scale of a normalised sum; 0 when the sum has no weight at all."""
    return 1.0 / (den + eps) if den + eps > 0 else 0.0


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32/bf16/fp16 are computed (accumulated) in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32
