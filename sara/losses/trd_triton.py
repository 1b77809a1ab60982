"""CUDA backend of the routed-TRD tile pass: launches the Triton kernel in _trd_kernel.py.

Same contract as `sara.losses.trd.chunked_tiles`: (num_spa, num_tmp, G) with G = sum_b c_ab phi'(.) xh_b.
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


DEFAULT_CONFIG = TileConfig()


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


def triton_tiles(
    xh: torch.Tensor,
    yh: torch.Tensor,
    w: torch.Tensor | None,
    spec,  # sara.losses.trd._Spec
    coef_s: float,
    coef_t: float,
    need_loss: bool,
    need_grad: bool,
    config: TileConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Tile pass on xh, yh (B, n, D) (bf16/fp16/fp32, contiguous) and w (B, n) float32 or None."""
    from sara.losses._trd_kernel import trd_tile_kernel

    cfg = config or DEFAULT_CONFIG
    B, n, D = xh.shape
    xh, yh = xh.contiguous(), yh.contiguous()
    nb = (n + cfg.block - 1) // cfg.block
    pairs = _pair_table(nb, cfg.symmetric, cfg.group, str(xh.device))
    P = pairs.shape[0]
    part = torch.zeros((B, P, 2), dtype=torch.float32, device=xh.device)  # (B, P, 2) per-program partial sums
    # the kernel's coefficient tile is cast to the input dtype: scale it to |c| <= 1 so fp16 cannot underflow
    cmax = max(abs(coef_s), abs(coef_t))
    grad = need_grad and cmax > 0
    G = torch.zeros((B, n, D), dtype=torch.float32, device=xh.device) if need_grad else None
    wv = (w if w is not None else torch.zeros((B, n), device=xh.device)).to(torch.float32).contiguous()
    if need_loss or grad:
        trd_tile_kernel[(P, B)](
            xh,
            yh,
            wv,
            G if grad else part,
            pairs,
            part,
            n,
            D,
            spec.N,
            P,
            0.0 if not math.isfinite(spec.tau) else 1.0 / spec.tau,
            float(spec.margin),
            coef_s / cmax if grad else 0.0,
            coef_t / cmax if grad else 0.0,
            OP=OP_CODES[spec.op] if w is not None else 0,
            HAS_TAU=math.isfinite(spec.tau),
            MASK_TMP=spec.mask_temporal,
            NEED_LOSS=need_loss,
            NEED_GRAD=grad,
            SYMMETRIC=cfg.symmetric,
            IEEE=xh.dtype == torch.float32,
            BM=cfg.block,
            BK=cfg.block_k,
            num_warps=cfg.num_warps,
            num_stages=cfg.num_stages,
        )
    num_s = part[..., 0].sum(dtype=torch.float64)
    num_t = part[..., 1].sum(dtype=torch.float64)
    if grad:
        G.mul_(cmax)
    return num_s, num_t, G
