"""Pair-budget statistics of the masks (the paper's App. A, Fig. 8): p_fg per clip and FG-FG / FG-BG / BG-BG shares.

Tokens: the union mask M_fg is area-averaged onto the token grid `masks.budget_grid` = (T_s, H_s, W_s) (the V-JEPA
grid of the embedded default: 8 frames / tubelet 2, 64 px / patch 16 -> 4 x 4 x 4); a token is FG when more than
half of its space-time cell is foreground. p_fg = FG tokens / all tokens of the clip.

Budget: all ordered token pairs of each clip (within-frame and cross-frame, as TRD's Eqs. 9-10 touch them) with the
binary saliency w = 1[FG]; `sara.losses.budget` gives per operator
- `shares`: share of the kept pair weight per category (sums to 1; op none = uniform TRD: p^2, 2p(1-p), (1-p)^2
  pooled over clips), and
- `coverage`: pair weight per category as a fraction of all pairs (Fig. 8b's "share of the O(N^2) budget"; OR keeps
  FG-FG + FG-BG, dropping BG-BG).
Both pool the pair sums over all clips before dividing (the mean of p^2 exceeds (mean p)^2 by Var(p): Jensen).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sara.losses.budget import CATEGORIES, pair_budget_coverage, pair_budget_shares
from sara.losses.routing import ROUTING_OPS
from sara.masks.store import EntityMasks, resample_to_grid

FG_COVERAGE = 0.5  # a token is FG when the union mask covers more than half of its cell
HIST_BINS = np.linspace(0.0, 1.0, 11)  # ten p_fg bins of width 0.1 (Fig. 8a)


def token_foreground(m: EntityMasks, grid: tuple[int, int, int]) -> np.ndarray:
    """(T_s, H_s*W_s) bool FG tokens of one clip."""
    cov = resample_to_grid(m.union, grid)  # (T_s, H_s, W_s) fraction of each cell covered
    return (cov > FG_COVERAGE).reshape(grid[0], grid[1] * grid[2])  # (T_s, N)


def budget_summary(fg_tokens: list[np.ndarray], clip_ids: list[str]) -> dict[str, Any]:
    """p_fg per clip and pooled pair-budget shares/coverage per routing operator for a list of (T, N) FG maps."""
    import torch

    p_fg = {cid: float(fg.mean()) for cid, fg in zip(clip_ids, fg_tokens)}
    out: dict[str, Any] = {"clips": len(clip_ids), "p_fg": p_fg}
    if not fg_tokens:
        return out
    values = np.array(list(p_fg.values()))
    counts, _ = np.histogram(values, bins=HIST_BINS)
    p = float(values.mean())
    out.update({
        "p_fg_mean": p,
        "p_fg_std": float(values.std()),
        "p_fg_median": float(np.median(values)),
        "p_fg_histogram": {"bin_edges": HIST_BINS.round(2).tolist(), "fraction": (counts / len(values)).tolist()},
        "closed_form_at_mean": {"fg_fg": p * p, "fg_bg": 2 * p * (1 - p), "bg_bg": (1 - p) ** 2},
    })
    fg = torch.from_numpy(np.stack(fg_tokens))  # (B, T, N) bool
    w = fg.to(torch.float32)  # binary saliency: the masks' own FG/BG
    out["shares"] = {op: pair_budget_shares(w, op, fg=fg) for op in ROUTING_OPS}
    out["coverage"] = {op: pair_budget_coverage(w, op, fg=fg) for op in ROUTING_OPS}
    out["categories"] = list(CATEGORIES)
    return out


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """Flat scalar metrics for MLflow: p_fg stats and `share.<op>.<category>` / `coverage.<op>.<category>`."""
    metrics: dict[str, float] = {}
    for key in ("p_fg_mean", "p_fg_std", "p_fg_median"):
        if key in summary:
            metrics[key] = summary[key]
    for kind in ("shares", "coverage"):
        for op, cats in summary.get(kind, {}).items():
            for cat, value in cats.items():
                metrics[f"{kind[:-1] if kind == 'shares' else kind}.{op}.{cat}"] = value
    return metrics
