"""CUDA backend of the routed-TRD tile pass: launches the Triton kernel in _trd_kernel.py.

Same contract as `sara.losses.trd.chunked.chunked_tiles`: (num_spa, num_tmp, G) with G = sum_b c_ab phi'(.) xh_b.
Two ways to form G (TileConfig.grad):
  atomic  the kernel multiplies each coefficient tile by the X rows it needs and adds into G with float32
          atomics (2 * BM * D atomics per tile: this traffic, not the matmuls, bounds it);
  gemm    the token columns are cut into strips of S tokens; per strip the kernel writes the coefficient tiles of
          the upper triangle into a (n, S) buffer U (diagonal tiles halved) and cuBLAS adds U X_strip into G and
          U^T X into G_strip (float32 accumulation). No atomics; U costs n * S * 2 bytes (strip_bytes).
Triton is imported lazily (the CPU build of torch may not ship it). `TRITON_INTERPRET=1` runs the kernel on CPU
tensors through Triton's interpreter (slow; used to check the kernel without a GPU).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import lru_cache

import torch

OP_CODES = {"none": 0, "and": 1, "or": 2, "xor": 3}


@dataclass(frozen=True)
class TileConfig:
    """Kernel launch shape: square BM x BM tiles, BK-wide slices of D, warps, software-pipeline stages."""

    block: int = 128
    block_k: int = 64
    num_warps: int = 8
    num_stages: int = 3
    symmetric: bool = True  # only tiles I <= J (half the Gram work)
    group: int = 8  # tiles are visited in group x group super-blocks so their rows stay in L2
    grad: str = "gemm"  # "gemm": coefficient strips + two dense GEMMs; "atomic": in-kernel float32 atomics
    strip_bytes: int = 384 * 2**20  # "gemm": size of the (B, n, S) coefficient strip buffer


DEFAULT_CONFIG = TileConfig(num_stages=4)  # bf16/fp16 (tuned on the H100: docs/benchmarks.md)
FP32_CONFIG = TileConfig(block=64, block_k=32, num_warps=4, num_stages=2)  # fp32 tiles need 2x the shared memory


def triton_available() -> bool:
    """True when triton imports and there is a CUDA device (or the Triton interpreter is switched on)."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"


@lru_cache(maxsize=32)
def _pair_table(nb: int, symmetric: bool, group: int, device: str) -> torch.Tensor:
    """(P, 2) int32 tile pairs (I, J), I <= J when symmetric, ordered by group x group super-blocks."""
    if symmetric:
        ij = torch.triu_indices(nb, nb)  # (2, nb(nb+1)/2)
    else:
        ij = torch.cartesian_prod(torch.arange(nb), torch.arange(nb)).T  # (2, nb^2)
    I, J = ij[0], ij[1]
    ng = (nb + group - 1) // group
    key = ((I // group) * ng + (J // group)) * group * group + (I % group) * group + (J % group)
    order = torch.argsort(key)
    return torch.stack([I[order], J[order]], 1).to(torch.int32).contiguous().to(device)  # (P, 2)


@lru_cache(maxsize=256)
def _strip_table(nb: int, jb0: int, jb1: int, group: int, device: str) -> torch.Tensor:
    """(P, 2) int32 upper-triangle tile pairs (I <= J) whose column block J lies in [jb0, jb1)."""
    full = _pair_table(nb, True, group, "cpu")
    keep = (full[:, 1] >= jb0) & (full[:, 1] < jb1)
    return full[keep].contiguous().to(device)


_ADDMM_DTYPE_OK = [True]


def _addmm_(out: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> None:
    """out (float32) += a @ b with a, b in bf16/fp16/fp32, accumulating in float32 (cuBLAS out_dtype)."""
    if a.dtype == torch.float32:
        torch.addmm(out, a, b, out=out)
        return
    if _ADDMM_DTYPE_OK[0]:
        try:
            torch.ops.aten.addmm.dtype_out(out, a, b, torch.float32, out=out)
            return
        except (RuntimeError, NotImplementedError):
            _ADDMM_DTYPE_OK[0] = False  # this build/backend has no float32-output GEMM for these inputs
    out += (a @ b).float()


def triton_tiles(
    xh: torch.Tensor,
    yh: torch.Tensor,
    w: torch.Tensor | None,
    spec,  # sara.losses.trd.common.Spec
    coef_s: float,
    coef_t: float,
    need_loss: bool,
    need_grad: bool,
    config: TileConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Tile pass on xh, yh (B, n, D) (bf16/fp16/fp32, contiguous) and w (B, n) float32 or None."""
    from sara.losses._trd_kernel import trd_tile_kernel

    cfg = config or spec.tile_config or (FP32_CONFIG if xh.dtype == torch.float32 else DEFAULT_CONFIG)
    B, n, D = xh.shape
    xh, yh = xh.contiguous(), yh.contiguous()
    nb = (n + cfg.block - 1) // cfg.block
    pairs = _pair_table(nb, cfg.symmetric, cfg.group, str(xh.device))
    P = pairs.shape[0]
    # the kernel's coefficient tile is cast to the input dtype: scale it to |c| <= 1 so fp16 cannot underflow
    cmax = max(abs(coef_s), abs(coef_t))
    grad = need_grad and cmax > 0
    wv = (w if w is not None else torch.zeros((B, n), device=xh.device)).to(torch.float32).contiguous()
    consts = dict(
        OP=OP_CODES[spec.op] if w is not None else 0,
        HAS_TAU=math.isfinite(spec.tau),
        MASK_TMP=spec.mask_temporal,
        SYMMETRIC=cfg.symmetric,
        PREC="ieee" if xh.dtype == torch.float32 else "tf32",
        BM=cfg.block,
        BK=cfg.block_k,
        num_warps=cfg.num_warps,
        num_stages=cfg.num_stages,
    )
    inv_tau = 0.0 if not math.isfinite(spec.tau) else 1.0 / spec.tau
    if grad and cfg.grad == "gemm" and cfg.symmetric:
        return _gemm_pass(xh, yh, wv, spec, coef_s / cmax, coef_t / cmax, cmax, need_loss, cfg, consts, inv_tau)
    part = torch.zeros((B, P, 2), dtype=torch.float32, device=xh.device)  # (B, P, 2) per-program partial sums
    G = torch.zeros((B, n, D), dtype=torch.float32, device=xh.device) if need_grad else None
    if need_loss or grad:
        trd_tile_kernel[(P, B)](
            xh,
            yh,
            wv,
            G if grad else part,
            pairs,
            part,
            part,
            0,
            1,
            n,
            D,
            spec.N,
            P,
            inv_tau,
            float(spec.margin),
            coef_s / cmax if grad else 0.0,
            coef_t / cmax if grad else 0.0,
            NEED_LOSS=need_loss,
            NEED_GRAD=grad,
            STORE_C=False,
            **consts,
        )
    num_s = part[..., 0].sum(dtype=torch.float64)
    num_t = part[..., 1].sum(dtype=torch.float64)
    if grad:
        G.mul_(cmax)
    return num_s, num_t, G


def _gemm_pass(
    xh: torch.Tensor,
    yh: torch.Tensor,
    wv: torch.Tensor,
    spec,
    cs: float,
    ct: float,
    cmax: float,
    need_loss: bool,
    cfg: TileConfig,
    consts: dict,
    inv_tau: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Loss partials and G through coefficient strips: per strip, one kernel launch writes U, two GEMMs use it."""
    from sara.losses._trd_kernel import trd_tile_kernel

    B, n, D = xh.shape
    BM = cfg.block
    nb = (n + BM - 1) // BM
    elt = xh.element_size()
    bps = max(1, min(nb, cfg.strip_bytes // max(1, B * n * elt * BM)))  # column blocks per strip
    S = bps * BM
    G = torch.zeros((B, n, D), dtype=torch.float32, device=xh.device)
    U = torch.empty((B, n, S), dtype=xh.dtype, device=xh.device)  # (B, n, S) coefficient strip
    parts = []
    for jb0 in range(0, nb, bps):
        jb1 = min(nb, jb0 + bps)
        c0, c1 = jb0 * BM, min(n, jb1 * BM)
        U[:, c0:c1].zero_()  # rows of the strip's own square: its lower-left tiles (I > J) are never written
        pairs = _strip_table(nb, jb0, jb1, cfg.group, str(xh.device))
        P = pairs.shape[0]
        part = torch.zeros((B, P, 2), dtype=torch.float32, device=xh.device)
        trd_tile_kernel[(P, B)](
            xh, yh, wv, G, pairs, part, U, c0, S, n, D, spec.N, P, inv_tau, float(spec.margin), cs, ct,
            NEED_LOSS=need_loss, NEED_GRAD=False, STORE_C=True, **consts,
        )
        parts.append(part)
        for b in range(B):
            Ub = U[b, :c1, : c1 - c0]  # (c1, w): every row up to the strip's end, the strip's columns
            _addmm_(G[b, :c1], Ub, xh[b, c0:c1])  # G_I += C_IJ X_J
            _addmm_(G[b, c0:c1], Ub.T, xh[b, :c1])  # G_J += C_IJ^T X_I (mirror)
    part = torch.cat(parts, dim=1)
    G.mul_(cmax)
    return part[..., 0].sum(dtype=torch.float64), part[..., 1].sum(dtype=torch.float64), G
