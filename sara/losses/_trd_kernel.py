"""Triton kernel of the routed-TRD tile pass (imported only on CUDA by sara.losses.trd_triton).

One program handles one (row block I, column block J) tile of one clip's (T*N) x (T*N) token-pair grid; with
SYMMETRIC only tiles I <= J run (the Gram is symmetric) and each off-diagonal tile also stands for its mirror.
Per tile:
  1. diff = Sp - Sy = X_I X_J^T - Y_I Y_J^T in one float32 accumulator (the Y loop, a negation, then the X loop),
  2. pair weights from w (op), frame masks (spatial: same frame; temporal: t != u, omega = exp(-|t-u|/tau)),
  3. NEED_LOSS: the two weighted sums of phi(diff) = max(|diff| - margin, 0), one partial per program (no atomics),
  4. NEED_GRAD: c = (cs * W_spa + ct * W_tmp) * phi'(diff) and G_I += c X_J, G_J += c^T X_I via float32 atomics,
     looping over D in BK chunks (G rows are too wide to live in registers: D = 1664);
     or STORE_C: write c (halved on diagonal tiles) into a column strip buffer that two dense GEMMs then turn into
     the gradient (see trd_triton.py): no atomics.
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def trd_tile_kernel(
    X,  # (B, n, D) normalised vp, bf16/fp16/fp32, row-major
    Y,  # (B, n, D) normalised vy
    Wv,  # (B, n) float32 saliency (unused when OP == 0)
    G,  # (B, n, D) float32 gradient accumulator (unused unless NEED_GRAD)
    PAIRS,  # (P, 2) int32 tile pairs (I, J)
    PART,  # (B, P, 2) float32 per-program partial sums (spatial, temporal)
    CB,  # (B, n, S) coefficient strip buffer (STORE_C only)
    col0,  # first token column of the strip (STORE_C only)
    S,  # strip buffer width (STORE_C only)
    n,
    D,
    N_frame,
    num_pairs,
    inv_tau,
    margin,
    cs,
    ct,
    OP: tl.constexpr,  # 0 none, 1 and, 2 or, 3 xor
    HAS_TAU: tl.constexpr,
    MASK_TMP: tl.constexpr,
    NEED_LOSS: tl.constexpr,
    NEED_GRAD: tl.constexpr,
    STORE_C: tl.constexpr,
    SYMMETRIC: tl.constexpr,
    PREC: tl.constexpr,  # dot input precision: "ieee" for float32 inputs (no tf32 rounding), else "tf32" (unused)
    BM: tl.constexpr,
    BK: tl.constexpr,
):
    pid = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    bi = tl.load(PAIRS + 2 * pid)
    bj = tl.load(PAIRS + 2 * pid + 1)
    rm = bi * BM + tl.arange(0, BM)  # (BM,) token rows of block I
    rn = bj * BM + tl.arange(0, BM)  # (BM,) token rows of block J
    mm = rm < n
    mn = rn < n
    rk = tl.arange(0, BK)
    base = b * n * D
    x_i = X + base + rm.to(tl.int64)[:, None] * D  # (BM, 1) row pointers
    x_j = X + base + rn.to(tl.int64)[:, None] * D
    y_i = Y + base + rm.to(tl.int64)[:, None] * D
    y_j = Y + base + rn.to(tl.int64)[:, None] * D

    # 1. diff = X_I X_J^T - Y_I Y_J^T  (BM, BM), float32
    acc = tl.zeros((BM, BM), dtype=tl.float32)
    for k0 in range(0, D, BK):
        kk = k0 + rk
        km = kk < D
        a = tl.load(y_i + kk[None, :], mask=mm[:, None] & km[None, :], other=0.0)
        bt = tl.load(y_j + kk[None, :], mask=mn[:, None] & km[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(bt), acc, input_precision=PREC)
    acc = -acc
    for k0 in range(0, D, BK):
        kk = k0 + rk
        km = kk < D
        a = tl.load(x_i + kk[None, :], mask=mm[:, None] & km[None, :], other=0.0)
        bt = tl.load(x_j + kk[None, :], mask=mn[:, None] & km[None, :], other=0.0)
        acc = tl.dot(a, tl.trans(bt), acc, input_precision=PREC)

    # the diagonal pair (a, a) is |1 - 1| = 0 for any vp after normalisation: drop its rounding noise exactly
    acc = tl.where(rm[:, None] == rn[None, :], 0.0, acc)

    # 2. pair weights and frame masks
    fi = rm // N_frame
    fj = rn // N_frame
    valid = mm[:, None] & mn[None, :]
    same = (fi[:, None] == fj[None, :]) & valid
    cross = (fi[:, None] != fj[None, :]) & valid
    if OP == 0:
        wp = tl.full((BM, BM), 1.0, tl.float32)
    else:
        wi = tl.load(Wv + b * n + rm, mask=mm, other=0.0)
        wj = tl.load(Wv + b * n + rn, mask=mn, other=0.0)
        if OP == 1:
            wp = wi[:, None] * wj[None, :]
        elif OP == 2:
            wp = wi[:, None] + wj[None, :] - wi[:, None] * wj[None, :]
        else:
            wp = tl.abs(wi[:, None] - wj[None, :])
    if MASK_TMP:
        wt = wp
    else:
        wt = tl.full((BM, BM), 1.0, tl.float32)
    if HAS_TAU:
        gap = tl.abs(fi[:, None] - fj[None, :]).to(tl.float32)
        wt = wt * tl.exp(-gap * inv_tau)
    ws = tl.where(same, wp, 0.0)
    wt = tl.where(cross, wt, 0.0)
    ad = tl.abs(acc)

    # 3. loss partials: an off-diagonal tile stands for itself and its mirror
    if NEED_LOSS:
        phi = tl.maximum(ad - margin, 0.0)
        if SYMMETRIC:
            scale = tl.where(bi != bj, 2.0, 1.0)
        else:
            scale = 1.0
        ls = tl.sum(tl.sum(ws * phi, axis=1), axis=0) * scale
        lt = tl.sum(tl.sum(wt * phi, axis=1), axis=0) * scale
        out = PART + (b * num_pairs + pid) * 2
        tl.store(out, ls)
        tl.store(out + 1, lt)

    # 4b. coefficient strip for the GEMM gradient: diagonal tiles are halved because both GEMMs (C X and C^T X)
    # see them, so each gets half of the symmetric tile
    if STORE_C:
        sgn = tl.where(acc > 0, 1.0, tl.where(acc < 0, -1.0, 0.0))
        sgn = tl.where(ad > margin, sgn, 0.0)
        c = (cs * ws + ct * wt) * sgn
        c = c * tl.where(bi == bj, 0.5, 1.0)
        cptr = CB + b * n * S + rm.to(tl.int64)[:, None] * S + (rn - col0)[None, :]
        tl.store(cptr, c.to(CB.dtype.element_ty), mask=mm[:, None] & mn[None, :])

    # 4. gradient: G_I += c X_J and (mirror) G_J += c^T X_I
    if NEED_GRAD:
        sgn = tl.where(acc > 0, 1.0, tl.where(acc < 0, -1.0, 0.0))
        sgn = tl.where(ad > margin, sgn, 0.0)
        c = ((cs * ws + ct * wt) * sgn).to(X.dtype.element_ty)  # (BM, BM) coefficient tile
        ctr = tl.trans(c)
        g_i = G + base + rm.to(tl.int64)[:, None] * D
        g_j = G + base + rn.to(tl.int64)[:, None] * D
        mirror = bi != bj
        for k0 in range(0, D, BK):
            kk = k0 + rk
            km = kk < D
            xj = tl.load(x_j + kk[None, :], mask=mn[:, None] & km[None, :], other=0.0)
            gi = tl.dot(c, xj, input_precision=PREC)  # (BM, BK)
            tl.atomic_add(g_i + kk[None, :], gi, mask=mm[:, None] & km[None, :], sem="relaxed")
            if SYMMETRIC:
                xi = tl.load(x_i + kk[None, :], mask=mm[:, None] & km[None, :], other=0.0)
                gj = tl.dot(ctr, xi, input_precision=PREC)  # (BM, BK)
                tl.atomic_add(g_j + kk[None, :], gj, mask=mn[:, None] & km[None, :] & mirror, sem="relaxed")
