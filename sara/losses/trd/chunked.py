"""The fast TRD: never builds a (T*N) x (T*N) tensor. One pass over tiles of token-block pairs gives the loss and,
fused, the gradient (module docstring of sara.losses.trd); the tiles run on the chunked PyTorch backend here or on
the Triton kernel (sara/losses/trd_triton.py, same contract as `chunked_tiles`), under one autograd Function."""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from torch.autograd.function import once_differentiable

from sara.losses.routing import pair_weights
from sara.losses.trd.common import ROW_CHUNK, NORM_EPS, Spec, alpha, compute_dtype, decay, pair_weight_sums


def chunked_tiles(
    xh: torch.Tensor,
    yh: torch.Tensor,
    w: torch.Tensor | None,
    spec: Spec,
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
                Wt = Wt * decay((fa[:, None] - fb[None, :]).abs().to(xh.dtype), spec.tau)  # omega_tu (ci, cj)
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


def normalise(v: torch.Tensor, out_dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-chunked L2 normalisation of v (B, n, D) computed in float32/64; returns (v_hat in out_dtype, inv_norm)."""
    cd = compute_dtype(v.dtype)
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
    def forward(ctx, vp: torch.Tensor, vy: torch.Tensor, w: torch.Tensor | None, spec: Spec):  # type: ignore[override]
        B, T, N, D = vp.shape
        kernel_dtype = vp.dtype if spec.backend == "triton" else compute_dtype(vp.dtype)
        xh, inv = normalise(vp.detach().reshape(B, T * N, D), kernel_dtype)  # (B, T*N, D)
        yh, _ = normalise(vy.detach().reshape(B, T * N, D), kernel_dtype)
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
        out_dtype = compute_dtype(vp.dtype)
        return (num_s * spec.alpha_s).to(out_dtype), (num_t * spec.alpha_t).to(out_dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_s: torch.Tensor | None, g_t: torch.Tensor | None):  # type: ignore[override]
        vp, xh, yh, wf, inv, gunit = ctx.saved_tensors
        spec: Spec = ctx.spec
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


def fast_trd(
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
    spec = Spec(
        N=N,
        op=op,
        tau=tau,
        mask_temporal=mask_temporal,
        margin=margin,
        lam_tmp=lam_tmp,
        alpha_s=alpha(den_s, eps),
        alpha_t=alpha(den_t, eps),
        backend=_pick_backend(vp, impl),
        fused=fused,
        chunk=chunk,
        tile_config=tile_config,
    )
    return _RoutedTRD.apply(vp, vy.detach(), None if w is None else w.detach(), spec)
