"""Token-relation distillation (TRD): saliency-routed masked TRD (Eqs. 9-11), vanilla TRD (Eq. 2) and the
original VideoREPA hinge form, with an exact materialising reference and memory-efficient fast paths.

Notation (paper Eqs. 2, 8-11): `vp` (B, T, N, D) projected DiT tokens, `vy` (B, T, N, D) frozen VFM tokens on the
same grid, both L2-normalised along D here. A clip's T*N tokens are flattened to one axis a = t*N + i. For a pair (a, b):
Sp_ab = <vp_a, vp_b>, Sy_ab = <vy_a, vy_b>; the pair is spatial (same frame, Eq. 9) or temporal (t != u, Eq. 10).

Fast path (never builds a (T*N) x (T*N) tensor): the loss is a weighted L1 over pairs, so
  - the denominators (summed pair weights) depend only on w: closed forms from per-frame sums of w (`and`, `or`,
    `none`) or sorted w (`xor`), see `pair_weight_sums`;
  - the gradient wrt the normalised vp is dL/dvp_a = 2 * sum_b c_ab * sign(Sp_ab - Sy_ab) * vp_b (the factor 2
    because c is symmetric), with c_ab the pair's weight over its denominator; it is accumulated tile by tile in
    the same pass as the loss (`fused`), over the upper triangle of tiles only (the Gram is symmetric);
  - the normalisation is backpropagated row-chunked afterwards.
Backends: `chunked` (PyTorch, any device, float32/float64 math) and `triton` (CUDA kernel in trd_triton.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from sara.losses.routing import check_op, pair_weights

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
class _Spec:
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


# --------------------------------------------------------------------------------------------------------------
# input checks and denominators
# --------------------------------------------------------------------------------------------------------------


def _check_inputs(
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


def temporal_decay(T: int, tau: float, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """omega (T, T) with omega_tu = exp(-|t - u| / tau) for t != u and 0 on the diagonal (Eq. 10's frame weights)."""
    t = torch.arange(T, device=device, dtype=dtype)
    gap = (t[:, None] - t[None, :]).abs()  # (T, T)
    omega = torch.exp(-gap / tau) if math.isfinite(tau) else torch.ones_like(gap)
    return omega * (gap > 0)


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


def _alpha(den: float, eps: float) -> float:
    return 1.0 / (den + eps) if den + eps > 0 else 0.0


# --------------------------------------------------------------------------------------------------------------
# reference (oracle): materialises the (T*N) x (T*N) Grams
# --------------------------------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; float32/bf16/fp16 are computed (accumulated) in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


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
    cd = _compute_dtype(vp.dtype)
    xp = F.normalize(vp.to(cd), dim=-1).reshape(B, T * N, D)  # (B, T*N, D)
    xy = F.normalize(vy.detach().to(cd), dim=-1).reshape(B, T * N, D)
    Sp = xp @ xp.transpose(1, 2)  # (B, T*N, T*N)
    Sy = xy @ xy.transpose(1, 2)
    phi = ((Sy - Sp).abs() - margin).clamp_min(0) if margin > 0 else (Sy - Sp).abs()
    wf = (torch.ones(B, T, N, dtype=cd, device=vp.device) if w is None else w.detach().to(cd)).reshape(B, T * N)
    Wp = pair_weights(wf[:, :, None], wf[:, None, :], op)  # (B, T*N, T*N)
    frame = torch.arange(T, device=vp.device).repeat_interleave(N)  # (T*N,)
    same = frame[:, None] == frame[None, :]  # (T*N, T*N)
    gap = (frame[:, None] - frame[None, :]).abs().to(cd)
    omega = torch.exp(-gap / tau) if math.isfinite(tau) else torch.ones_like(gap)
    Wt = omega * (Wp if mask_temporal else torch.ones_like(Wp))
    Ws = torch.where(same, Wp, torch.zeros_like(Wp))
    Wt = torch.where(same, torch.zeros_like(Wt), Wt)
    return (Ws * phi).sum(), Ws.sum(), (Wt * phi).sum(), Wt.sum()


def masked_trd_reference(
    vp: torch.Tensor,
    vy: torch.Tensor,
    w: torch.Tensor | None = None,
    *,
    op: str = "or",
    tau: float = math.inf,
    lam_tmp: float = 1.0,
    eps: float = 1e-6,
    mask_temporal: bool = True,
) -> TRDLoss:
    """Masked TRD (Eqs. 9-11), naive: materialises both Grams and the pair weights. The test oracle.

    Same semantics as `masked_trd` (which calls it for `impl="reference"`). Computes in float32 for
    bf16/fp16/float32 inputs, float64 for float64. Memory O(B * (T*N)^2).
    """
    _check_inputs(vp, vy, w, op, tau, eps, "reference")
    ns, ds, nt, dt = _reference_terms(vp, vy, w, op, tau, mask_temporal, 0.0)
    spatial = ns / (ds + eps) if float(ds) + eps > 0 else ns * 0
    temporal = nt / (dt + eps) if float(dt) + eps > 0 else nt * 0
    return TRDLoss(spatial, temporal, spatial + lam_tmp * temporal)


def videorepa_trd_reference(vp: torch.Tensor, vy: torch.Tensor, margin: float = 0.1) -> TRDLoss:
    """VideoREPA's original TRD, naive: mean over every pair of the full (T*N)^2 Gram (and the batch) of
    max(|Sy - Sp| - margin, 0). `spatial`/`temporal` are the same mean over within-/cross-frame pairs only;
    `total` is the full-Gram mean (= pair-count weighted mix of the two, not spatial + temporal)."""
    _check_inputs(vp, vy, None, "none", math.inf, 0.0, "reference")
    B, T, N, _ = vp.shape
    ns, ds, nt, dt = _reference_terms(vp, vy, None, "none", math.inf, True, margin)
    temporal = nt / dt if T > 1 else nt * 0
    return TRDLoss(ns / ds, temporal, (ns + nt) / (ds + dt))


# --------------------------------------------------------------------------------------------------------------
# chunked backend (PyTorch): tile by tile over the upper triangle of token blocks
# --------------------------------------------------------------------------------------------------------------


def chunked_tiles(
    xh: torch.Tensor,
    yh: torch.Tensor,
    w: torch.Tensor | None,
    spec: _Spec,
    coef_s: float,
    coef_t: float,
    need_loss: bool,
    need_grad: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One pass over token-block pairs (I <= J) of normalised xh, yh (B, n, D).

    Returns (num_spa, num_tmp, G): the weighted sums sum_pairs W * phi(Sy - Sp) of Eqs. 9/10 (numerators, over all
    ordered pairs) and G (B, n, D) = sum_b c_ab * phi'(Sp_ab - Sy_ab) * xh_b with c_ab = coef_s * W (spatial pairs)
    or coef_t * omega * W (temporal pairs); the gradient of coef_s*num_spa + coef_t*num_tmp wrt xh is 2 * G.
    Peak extra memory: G plus a few (B, chunk, chunk) tiles.
    """
    B, n, D = xh.shape
    C = spec.chunk
    frame = torch.arange(n, device=xh.device) // spec.N  # (n,) frame index of each flattened token
    num_s = torch.zeros((), dtype=xh.dtype, device=xh.device)
    num_t = torch.zeros((), dtype=xh.dtype, device=xh.device)
    G = torch.zeros_like(xh) if need_grad else None
    for i0 in range(0, n, C):
        a = slice(i0, min(i0 + C, n))
        for j0 in range(i0, n, C):
            b = slice(j0, min(j0 + C, n))
            d = xh[:, a] @ xh[:, b].transpose(1, 2) - yh[:, a] @ yh[:, b].transpose(1, 2)  # (B, ci, cj) Sp - Sy
            if i0 == j0:
                # the diagonal pair (a, a) is |1 - 1| = 0 for any vp after normalisation: drop its rounding noise
                d.diagonal(dim1=1, dim2=2).zero_()
            fa, fb = frame[a], frame[b]
            same = fa[:, None] == fb[None, :]  # (ci, cj)
            if w is None:
                Wp = torch.ones((1, 1, 1), dtype=xh.dtype, device=xh.device)
            else:
                Wp = pair_weights(w[:, a, None], w[:, None, b], spec.op)  # (B, ci, cj)
            Wt = Wp if spec.mask_temporal else torch.ones_like(Wp)
            if math.isfinite(spec.tau):
                Wt = Wt * torch.exp(-(fa[:, None] - fb[None, :]).abs().to(xh.dtype) / spec.tau)  # omega_tu
            ws = Wp * same
            wt = Wt * ~same
            ad = d.abs()
            scale = 1.0 if i0 == j0 else 2.0  # an off-diagonal tile stands for itself and its mirror
            if need_loss:
                phi = (ad - spec.margin).clamp_min(0) if spec.margin > 0 else ad
                num_s = num_s + scale * (ws * phi).sum()
                num_t = num_t + scale * (wt * phi).sum()
            if need_grad:
                sgn = torch.sign(d) * (ad > spec.margin) if spec.margin > 0 else torch.sign(d)
                c = (coef_s * ws + coef_t * wt) * sgn  # (B, ci, cj)
                G[:, a] += c @ xh[:, b]
                if i0 != j0:
                    G[:, b] += c.transpose(1, 2) @ xh[:, a]
    return num_s, num_t, G


def _tiles_backend(name: str) -> Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    if name == "triton":
        from sara.losses.trd_triton import triton_tiles

        return triton_tiles
    return chunked_tiles


# --------------------------------------------------------------------------------------------------------------
# autograd: normalise, one tile pass (loss, and the gradient when fused), row-chunked normalisation backward
# --------------------------------------------------------------------------------------------------------------


def _normalise(v: torch.Tensor, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-chunked L2 normalisation of v (B, n, D) computed in float32/64; returns (v_hat in out_dtype, inv_norm)."""
    cd = _compute_dtype(v.dtype)
    B, n, D = v.shape
    out = torch.empty((B, n, D), dtype=out_dtype, device=v.device)
    inv = torch.empty((B, n), dtype=cd, device=v.device)
    for r0 in range(0, n, ROW_CHUNK):
        rows = v[:, r0 : r0 + ROW_CHUNK].to(cd)  # (B, r, D)
        inv_r = 1.0 / torch.linalg.vector_norm(rows, dim=-1).clamp_min(NORM_EPS)  # (B, r)
        inv[:, r0 : r0 + ROW_CHUNK] = inv_r
        out[:, r0 : r0 + ROW_CHUNK] = rows * inv_r[..., None]
    return out, inv


def _normalise_backward(vp: torch.Tensor, inv: torch.Tensor, G: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Gradient wrt vp of <scale * G, normalize(vp)>: (g - x_hat <x_hat, g>) / ||vp|| per row (row-chunked)."""
    B, n, D = vp.shape
    grad = torch.empty_like(vp)
    for r0 in range(0, n, ROW_CHUNK):
        r = slice(r0, r0 + ROW_CHUNK)
        inv_r = inv[:, r]  # (B, r)
        x = vp[:, r].to(inv.dtype) * inv_r[..., None]  # (B, r, D) normalised rows
        g = G[:, r].to(inv.dtype) * scale.to(inv.dtype)
        radial = (x * g).sum(-1, keepdim=True) * (inv_r < 1.0 / NORM_EPS)[..., None]  # no projection when clamped
        grad[:, r] = ((g - x * radial) * inv_r[..., None]).to(vp.dtype)
    return grad


class _RoutedTRD(torch.autograd.Function):
    """(vp, vy, w) -> (spatial, temporal) losses with a tile-pass gradient; vy and w get none."""

    @staticmethod
    def forward(ctx, vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor | None, spec: _Spec):  # type: ignore[override]
        B, T, N, D = vp.shape
        kernel_dtype = vp.dtype if spec.backend == "triton" else _compute_dtype(vp.dtype)
        xh, inv = _normalise(vp.detach().reshape(B, T * N, D), kernel_dtype)  # (B, T*N, D)
        yh, _ = _normalise(vy.detach().reshape(B, T * N, D), kernel_dtype)
        wf = None if w is None else w.detach().reshape(B, T * N).to(torch.float32 if spec.backend == "triton" else kernel_dtype)
        fuse = spec.fused and ctx.needs_input_grad[0]
        tiles = _tiles_backend(spec.backend)
        num_s, num_t, G = tiles(xh, yh, wf, spec, spec.alpha_s, spec.lam_tmp * spec.alpha_t, True, fuse)
        if fuse:
            # the gradient of `total` wrt vp up to the upstream scalar: keep it in vp's dtype, drop the float32 G
            gunit = _normalise_backward(vp.detach().reshape(B, T * N, D), inv, G, torch.full((), 2.0, device=vp.device))
            del G
        else:
            gunit = None
        ctx.spec = spec
        ctx.fused = fuse
        ctx.save_for_backward(vp, xh, yh, wf, inv, gunit)
        out_dtype = _compute_dtype(vp.dtype)
        return (num_s * spec.alpha_s).to(out_dtype), (num_t * spec.alpha_t).to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: torch.Tensor | None, g_t: torch.Tensor | None):  # type: ignore[override]
        vp, xh, yh, wf, inv, gunit = ctx.saved_tensors
        spec: _Spec = ctx.spec
        B, T, N, D = vp.shape
        g_s = torch.zeros((), device=vp.device) if g_s is None else g_s
        g_t = torch.zeros((), device=vp.device) if g_t is None else g_t
        if ctx.fused and torch.equal(g_t, g_s * spec.lam_tmp):
            # backprop through `total` (or a multiple): the forward pass already formed this gradient
            return (gunit * float(g_s)).reshape(B, T, N, D), None, None, None  # float: scaled in fp32, then rounded
        # any other combination of the two outputs: one more tile pass with these coefficients
        cs, ct = float(g_s) * spec.alpha_s, float(g_t) * spec.alpha_t
        _, _, G = _tiles_backend(spec.backend)(xh, yh, wf, spec, cs, ct, False, True)
        grad = _normalise_backward(vp.reshape(B, T * N, D), inv, G, torch.full((), 2.0, device=vp.device))
        return grad.reshape(B, T, N, D), None, None, None  # (B, T, N, D)


# --------------------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------------------


def _pick_backend(vp: torch.Tensor, impl: str) -> str:
    if impl == "chunked":
        return "chunked"
    if impl == "triton":
        if not vp.is_cuda:
            raise ValueError("impl='triton' needs CUDA tensors; use impl='auto' or 'chunked' on CPU")
        from sara.losses.trd_triton import triton_available

        if not triton_available():
            raise ValueError("impl='triton' needs the triton package, which is not importable here")
        if vp.dtype == torch.float64:
            raise ValueError("impl='triton' supports bf16/fp16/float32; use impl='chunked' for float64")
        return "triton"
    # auto
    if vp.is_cuda and vp.dtype != torch.float64:
        from sara.losses.trd_triton import triton_available

        if triton_available():
            return "triton"
    return "chunked"


def _fast_trd(
    vp: torch.Tensor,
    vy: torch.Tensor,
    w: torch.Tensor | None,
    op: str,
    tau: float,
    lam_tmp: float,
    eps: float,
    mask_temporal: bool,
    margin: float,
    impl: str,
    chunk: int,
    fused: bool,
    tile_config: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(spatial, temporal) of the routed TRD on the chunked or Triton backend."""
    B, T, N, D = vp.shape
    if w is None and op in ("and", "or"):
        op = "none"  # W(1, 1) = 1 for both: skip the weight loads
    elif w is None and op == "xor":
        w = torch.ones(B, T, N, device=vp.device)  # W(1, 1) = 0: literally what was asked
    if op == "none":
        w = None
    den_s, den_t = pair_weight_sums(w, (B, T, N), op, tau, mask_temporal)
    spec = _Spec(
        N=N,
        op=op,
        tau=tau,
        mask_temporal=mask_temporal,
        margin=margin,
        lam_tmp=lam_tmp,
        alpha_s=_alpha(den_s, eps),
        alpha_t=_alpha(den_t, eps),
        backend=_pick_backend(vp, impl),
        fused=fused,
        chunk=chunk,
        tile_config=tile_config,
    )
    return _RoutedTRD.apply(vp, vy.detach(), None if w is None else w.detach(), spec)


def masked_trd_chunked(
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
    """`masked_trd` with the tile size, the fused/recompute choice and the Triton `tile_config`
    (a `trd_triton.TileConfig`; None = the dtype's default) exposed, for tests and benchmarks."""
    _check_inputs(vp, vy, w, op, tau, eps, impl)
    if impl == "reference":
        return masked_trd_reference(vp, vy, w, op=op, tau=tau, lam_tmp=lam_tmp, eps=eps, mask_temporal=mask_temporal)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    spatial, temporal = _fast_trd(vp, vy, w, op, tau, lam_tmp, eps, mask_temporal, 0.0, impl, chunk, fused, tile_config)
    return TRDLoss(spatial, temporal, spatial + lam_tmp * temporal)


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
    """
    return masked_trd_chunked(
        vp, vy, w, op=op, tau=tau, lam_tmp=lam_tmp, eps=eps, mask_temporal=mask_temporal, impl=impl
    )


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
    _check_inputs(vp, vy, None, "none", math.inf, 0.0, impl)
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if impl == "reference":
        return videorepa_trd_reference(vp, vy, margin)
    B, T, N, _ = vp.shape
    pairs_s, pairs_t = float(B * T * N * N), float(B * T * (T - 1) * N * N)
    # the full-Gram mean (num_s + num_t) / (pairs_s + pairs_t) = k * (spatial + lam * temporal) with
    # lam = pairs_t / pairs_s: written this way the fused gradient (of spatial + lam * temporal) applies
    lam = pairs_t / pairs_s
    spatial, temporal = _fast_trd(vp, vy, None, "none", math.inf, lam, 0.0, True, margin, impl, chunk, FUSED)
    total = (spatial + lam * temporal) * (pairs_s / (pairs_s + pairs_t))
    return TRDLoss(spatial, temporal, total)
