"""Saliency figures in the style of the paper's Fig. 3 (four query types on one held-out clip) and Fig. 4 (the full
caption): frames, the reference mask, a PCA view of the text-conditioned features V'_y, and the predicted
saliency as a jet overlay. Matplotlib (Agg) only; one PNG per figure.
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ENTITY_COLOURS = np.array([[230, 25, 75], [60, 180, 75], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                           [70, 240, 240], [240, 50, 230], [210, 245, 60]], dtype=np.float64) / 255.0


@dataclass
class QueryRow:
    """One query of the sweep: its label, caption, saliency (T_s, N_s) and features V'_y (T_s, N_s, D)."""

    label: str
    caption: str
    saliency: torch.Tensor
    features: torch.Tensor


def upsample(grid_map: torch.Tensor, grid: tuple[int, int, int], size: tuple[int, int], mode: str) -> np.ndarray:
    """(T_s, N_s[, C]) token map -> (T_s, H, W[, C]) image-sized array."""
    t, h, w = grid
    x = grid_map.float().reshape(t, h, w, -1).permute(0, 3, 1, 2)  # (T, C, h, w)
    kw = {"align_corners": False} if mode == "bilinear" else {}
    x = F.interpolate(x, size=size, mode=mode, **kw)  # (T, C, H, W)
    x = x.permute(0, 2, 3, 1).numpy()  # (T, H, W, C)
    return x[..., 0] if x.shape[-1] == 1 else x


def pca_rgb(features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Joint 3-component PCA of several (T_s, N_s, D) feature maps -> RGB in [0, 1] with shared axes and scale,
    so colours are comparable across the queries of one figure."""
    if not features:
        return []
    flat = torch.cat([f.reshape(-1, f.shape[-1]) for f in features]).double()  # (sum N, D)
    mean = flat.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(flat - mean, q=min(3, flat.shape[1]), center=False)
    proj = (flat - mean) @ v  # (sum N, 3)
    if proj.shape[1] < 3:
        proj = F.pad(proj, (0, 3 - proj.shape[1]))
    lo, hi = proj.quantile(0.02, dim=0), proj.quantile(0.98, dim=0)
    rgb = ((proj - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    out, start = [], 0
    for f in features:
        n = f.shape[0] * f.shape[1]
        out.append(rgb[start : start + n].reshape(f.shape[0], f.shape[1], 3).float())
        start += n
    return out


def mask_image(masks: np.ndarray) -> np.ndarray:
    """Entity masks (K, T, H, W) bool -> (T, H, W, 3): each entity in its own colour on black."""
    k, t, h, w = masks.shape
    img = np.zeros((t, h, w, 3))
    for i in range(k):
        img[masks[i]] = ENTITY_COLOURS[i % len(ENTITY_COLOURS)]
    return img


def query_sweep_figure(frames: np.ndarray, masks: np.ndarray, rows: list[QueryRow], grid: tuple[int, int, int],
                       path: str | Path, title: str) -> Path:
    """Write one figure: row 1 frames (one per tubelet), row 2 reference masks, then per query a PCA row of V'_y
    and a saliency row (jet, 0..1, over the frame). frames (T_s, H, W, 3) uint8; masks (K, T_s, H, W) bool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = frames.shape[0]
    size = frames.shape[1:3]
    n_rows = 2 + 2 * len(rows)
    fig, axes = plt.subplots(n_rows, t + 1, figsize=(1.9 * (t + 1) + 2.2, 1.9 * n_rows),
                             gridspec_kw={"width_ratios": [1.9] * t + [2.6]}, squeeze=False)
    pcas = pca_rgb([r.features for r in rows])
    ref = mask_image(masks)
    cmap = plt.get_cmap("jet")

    def label(ax, text: str) -> None:
        ax.axis("off")
        ax.text(0.0, 0.5, "\n".join(textwrap.wrap(text, 34)[:9]), fontsize=6.5, va="center", ha="left",
                transform=ax.transAxes)

    for j in range(t):
        axes[0, j].imshow(frames[j])
        axes[0, j].set_title(f"tubelet {j}", fontsize=7)
        axes[1, j].imshow(ref[j])
    label(axes[0, t], "frames (first frame of each tubelet)")
    label(axes[1, t], "reference mask (one colour per entity)")
    for i, (row, pca) in enumerate(zip(rows, pcas)):
        pca_img = upsample(pca, grid, size, "nearest")  # (T, H, W, 3)
        sal_img = upsample(row.saliency, grid, size, "bilinear").clip(0, 1)  # (T, H, W)
        r_pca, r_sal = 2 + 2 * i, 3 + 2 * i
        for j in range(t):
            axes[r_pca, j].imshow(pca_img[j])
            axes[r_sal, j].imshow(frames[j])
            axes[r_sal, j].imshow(cmap(sal_img[j])[..., :3], alpha=0.6)
        label(axes[r_pca, t], f"PCA of V'_y | {row.label}")
        mean = float(row.saliency.mean())
        label(axes[r_sal, t], f"saliency | {row.label} (mean {mean:.2f}): {row.caption}")
    for ax in axes[:, :t].flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / n_rows))  # leave room for the title above the tubelet labels
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path
