"""Mechanism readout: where a Stage 2 run moved the DiT's token relations, split by FG-FG, FG-BG and BG-BG pairs.

For one clip, `feats` (T, N, D_f) are the DiT's hook-layer tokens (block `trd.layer`) resampled onto the frozen
encoder's grid (sara.models.grid.align_tokens), raw or through the run's projector, and `target` (T, N, D_y) the
frozen encoder's tokens V_y. With S_p and S_y the cosine-similarity Grams of the clip's T*N tokens, the
relational error of a set of token pairs is the mean of |S_p - S_y| over those ordered pairs (a, b), a != b
(a token's pair with itself is |1 - 1| = 0 for any features and is left out). Pair sets: all pairs, within-frame
(spatial, Eq. 9's pairs) and cross-frame (temporal, Eq. 10's pairs), each split by the ground-truth FG mask on
the token grid into FG-FG, FG-BG (both orders) and BG-BG. The categories partition the pairs, so the total is the
pair-count weighted mean of the three.

Numbers come from the project's TRD (sara.losses.trd.masked_trd, which never materialises a Gram): with a binary
w, op `and` on w = FG weighs exactly the FG-FG pairs, `and` on w = BG the BG-BG pairs, `xor` on w = FG the FG-BG
pairs and `none` all pairs; with eps = 0 and no temporal decay its spatial / temporal terms are the means over
those pairs, and `pair_weight_sums` gives the pair counts. TRD needs both feature sets at one width: the narrower
one is zero-padded, which changes no norm and no inner product, so no cosine similarity.

Across clips the sums are pooled (a ratio of summed errors to summed pairs) and the interval is a percentile
bootstrap over clips (evaluation/statistics.py). The pair-budget shares each routing operator assigns under the
aligner's saliency on the same clips come from sara.losses.budget.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch

from sara.losses.budget import CATEGORIES, pair_budget_coverage, pair_budget_shares
from sara.losses.trd import masked_trd, pair_weight_sums

SCOPES: tuple[str, str] = ("spatial", "temporal")
PARTS: tuple[str, ...] = ("total", *CATEGORIES)
OPERATORS: tuple[str, ...] = ("none", "and", "or", "xor")


def _pad_to(x: torch.Tensor, d: int) -> torch.Tensor:
    return torch.nn.functional.pad(x, (0, d - x.shape[-1])) if x.shape[-1] < d else x


@torch.no_grad()
def relational_error_sums(feats: torch.Tensor, target: torch.Tensor, fg: torch.Tensor) -> dict[str, dict[str, tuple[float, float]]]:
    """One clip: {scope: {part: (summed |S_p - S_y|, number of ordered pairs a != b)}} for scope spatial/temporal
    and part total/fg_fg/fg_bg/bg_bg. `feats` (T, N, D_f), `target` (T, N, D_y), `fg` (T, N) bool."""
    if feats.dim() != 3 or target.dim() != 3 or feats.shape[:2] != target.shape[:2]:
        raise ValueError(f"feats {tuple(feats.shape)} and target {tuple(target.shape)} must be (T, N, D) on one grid")
    if fg.shape != feats.shape[:2] or fg.dtype != torch.bool:
        raise ValueError(f"fg must be a bool (T, N) = {tuple(feats.shape[:2])} mask, got {fg.dtype} {tuple(fg.shape)}")
    T, N = fg.shape
    d = max(feats.shape[-1], target.shape[-1])
    vp = _pad_to(feats.detach().double(), d)[None]  # (1, T, N, D): zero padding keeps every cosine similarity
    vy = _pad_to(target.detach().double().to(vp.device), d)[None]
    fgf = fg.to(vp.device).double()[None]  # (1, T, N)
    selections = {  # part -> (w, op, tokens whose self-pair the op counts)
        "total": (None, "none", float(T * N)),
        "fg_fg": (fgf, "and", float(fgf.sum())),
        "fg_bg": (fgf, "xor", 0.0),
        "bg_bg": (1.0 - fgf, "and", float((1.0 - fgf).sum())),
    }
    out: dict[str, dict[str, tuple[float, float]]] = {s: {} for s in SCOPES}
    for part, (w, op, n_self) in selections.items():
        den_s, den_t = pair_weight_sums(w, (1, T, N), op, math.inf, True)
        if den_s + den_t == 0.0:
            out["spatial"][part] = out["temporal"][part] = (0.0, 0.0)
            continue
        loss = masked_trd(vp, vy, w, op=op, tau=math.inf, lam_tmp=1.0, eps=0.0, impl="chunked")
        out["spatial"][part] = (float(loss.spatial) * den_s, den_s - n_self)  # the self-pairs add 0 to the sum
        out["temporal"][part] = (float(loss.temporal) * den_t, den_t)
    return out


def add_sums(views: Sequence[dict[str, dict[str, tuple[float, float]]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """Sum the error sums and pair counts of several views of one clip (e.g. noise levels): the bootstrap
    resamples clips, so all views of a clip travel together."""
    return {scope: {part: (sum(v[scope][part][0] for v in views), sum(v[scope][part][1] for v in views))
                    for part in PARTS} for scope in SCOPES}


def _ratio_interval(num: np.ndarray, pairs: np.ndarray, weights: np.ndarray, level: float) -> dict[str, float | None]:
    """Pooled mean sum(num)/sum(pairs) over clips and its percentile bootstrap interval (weights (B, clips))."""
    if pairs.sum() <= 0:
        return {"estimate": None, "lo": None, "hi": None}
    est = float(num.sum() / pairs.sum())
    wn, wp = weights @ num, weights @ pairs  # (B,)
    reps = wn[wp > 0] / wp[wp > 0]
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a]) if reps.size else (None, None)
    return {"estimate": round(est, 6), "lo": None if lo is None else round(float(lo), 6), "hi": None if hi is None else round(float(hi), 6)}


def summarise(per_clip: Sequence[dict[str, dict[str, tuple[float, float]]]], n_boot: int = 1000, seed: int = 0,
              level: float = 0.95) -> dict[str, Any]:
    """Pool per-clip sums into {scope: {part: interval}} for scopes spatial, temporal and all (their union),
    plus the pair counts per part (all scopes)."""
    from evaluation.statistics import bootstrap_weights

    if not per_clip:
        raise ValueError("no clips to summarise")
    weights = bootstrap_weights([(f"clip{i}", 0) for i in range(len(per_clip))], n_boot, seed, "video")  # (B, clips)
    out: dict[str, Any] = {}
    for scope in ("all", *SCOPES):
        out[scope] = {}
        for part in PARTS:
            parts = [(c["spatial"][part], c["temporal"][part]) for c in per_clip]
            if scope == "all":
                num = np.array([s[0] + t[0] for s, t in parts])
                pairs = np.array([s[1] + t[1] for s, t in parts])
            else:
                k = SCOPES.index(scope)
                num, pairs = np.array([p[k][0] for p in parts]), np.array([p[k][1] for p in parts])
            out[scope][part] = {**_ratio_interval(num, pairs, weights, level), "pairs": float(pairs.sum())}
    return out


def budget_readout(w: torch.Tensor, fg: torch.Tensor, ops: Sequence[str] = OPERATORS) -> dict[str, dict[str, dict[str, float]]]:
    """Per operator: shares of the summed pair weight and coverage of the uniform budget on FG-FG/FG-BG/BG-BG,
    for saliency `w` (B, T, N) and ground-truth FG `fg` (B, T, N) bool (sara.losses.budget, scope all)."""
    w = w.float().clamp(0, 1)
    return {op: {"shares": pair_budget_shares(w, op, fg=fg), "coverage": pair_budget_coverage(w, op, fg=fg)} for op in ops}
