"""Bringing DiT tokens onto the VFM (V-JEPA) token grid for TRD (the paper's common grid; docs/stage2.md).

Choice (the paper leaves it open): the common grid is the V-JEPA grid, so the saliency w of the aligner indexes
exactly the tokens TRD compares (as the paper states) and V_y needs no resampling. The DiT tokens (e.g. 21 x 30 x 53
latent tokens of an 81 x 480 x 848 clip) are resampled as a 3-D field over (time, height, width) with
`torch.nn.functional.interpolate`: both grids are taken to tile the same clip extent uniformly, and cell centres
are matched (align_corners=False), so token k of n covers the fraction [k/n, (k+1)/n) of the clip on each axis.
`trilinear` (default) interpolates; `area` averages every source token overlapping a target cell (adaptive average
pooling) when shrinking, which keeps the mean of the field; `nearest` picks one source token. Gradients flow
through all three.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GRID_MODES = ("trilinear", "area", "nearest")


def _check_grid(name: str, grid: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(grid) != 3 or any(int(g) < 1 for g in grid):
        raise ValueError(f"{name} must be three positive sizes (T, H, W), got {grid}")
    return int(grid[0]), int(grid[1]), int(grid[2])


def align_tokens(
    x: torch.Tensor,
    src_grid: tuple[int, int, int],
    dst_grid: tuple[int, int, int],
    mode: str = "trilinear",
) -> torch.Tensor:
    """Resample tokens from `src_grid` (T_s, H_s, W_s) to `dst_grid` (T_d, H_d, W_d); returns (B, T_d, H_d*W_d, D).

    `x` is either (B, T_s*H_s*W_s, D) flattened in (t, h, w) order (row-major, as DiT patch tokens come out of
    the patchifier) or (B, T_s, H_s, W_s, D). mode: trilinear | area | nearest (see the module docstring).
    The output keeps x's dtype; the interpolation itself runs in float32 for bf16/fp16 inputs.
    """
    if mode not in GRID_MODES:
        raise ValueError(f"unknown grid mode={mode!r}: expected one of {', '.join(GRID_MODES)}")
    Ts, Hs, Ws = _check_grid("src_grid", src_grid)
    Td, Hd, Wd = _check_grid("dst_grid", dst_grid)
    if x.dim() == 3:
        if x.shape[1] != Ts * Hs * Ws:
            raise ValueError(f"x has {x.shape[1]} tokens but src_grid {src_grid} has {Ts * Hs * Ws}")
        B, _, D = x.shape
        x = x.reshape(B, Ts, Hs, Ws, D)  # (B, T_s, H_s, W_s, D)
    elif x.dim() == 5:
        if tuple(x.shape[1:4]) != (Ts, Hs, Ws):
            raise ValueError(f"x has grid {tuple(x.shape[1:4])} but src_grid is {src_grid}")
        B, D = x.shape[0], x.shape[-1]
    else:
        raise ValueError(f"x must be (B, T*H*W, D) or (B, T, H, W, D), got {tuple(x.shape)}")
    if (Ts, Hs, Ws) == (Td, Hd, Wd):
        return x.reshape(B, Td, Hd * Wd, D)
    dtype = x.dtype
    field = x.permute(0, 4, 1, 2, 3)  # (B, D, T_s, H_s, W_s): channels first for interpolate
    if dtype in (torch.bfloat16, torch.float16):
        field = field.float()
    if mode == "trilinear":
        out = F.interpolate(field, size=(Td, Hd, Wd), mode="trilinear", align_corners=False)
    elif mode == "area":
        out = F.adaptive_avg_pool3d(field, (Td, Hd, Wd))
    else:
        out = F.interpolate(field, size=(Td, Hd, Wd), mode="nearest-exact")
    out = out.to(dtype).permute(0, 2, 3, 4, 1)  # (B, T_d, H_d, W_d, D)
    return out.reshape(B, Td, Hd * Wd, D)
