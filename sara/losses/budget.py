"""Pair-budget analytics (the paper's App. A, Fig. 8b): how a routing operator spends TRD's O((T*N)^2) pair budget.

Each token of a clip is FG or BG. Every ordered pair of tokens (a, b) falls in one category: FG-FG, FG-BG
(either order: (fg, bg) and (bg, fg) both count) or BG-BG. A pair's weight is the routing operator's
`W(w_a, w_b)` (Eq. 8, `sara.losses.routing.pair_weights`); with op `none` every pair weighs 1, which is the
uniform budget of vanilla TRD.

Which pairs ("scope"):
- `all` (default): every ordered pair of the clip's T*N tokens, i.e. within-frame pairs (t = u, all i, j,
  the diagonal i = j included) and cross-frame pairs (t != u, all i, j): exactly the pairs the spatial (Eq. 9)
  and temporal (Eq. 10) TRD terms touch, counted once each with omega = 1.
- `spatial`: within-frame pairs only (t = u).  `temporal`: cross-frame pairs only (t != u).
Sums run over the whole batch before dividing, like the loss.

No pair tensor is built: the sums over a pair category are closed forms in per-set sums of w for none/and/or,
and a sort + prefix-sum for xor, so this is cheap at full grids (75,600 tokens).
"""

from __future__ import annotations

from typing import Literal

import torch

from sara.losses.routing import check_op

Scope = Literal["all", "spatial", "temporal"]
CATEGORIES: tuple[str, str, str] = ("fg_fg", "fg_bg", "bg_bg")


def _sum_abs_diff(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """sum_{x in a, y in b} |x - y| for 1-D tensors, in O((|a| + |b|) log |b|) via sort and prefix sums."""
    if a.numel() == 0 or b.numel() == 0:
        return a.new_zeros(())
    b_sorted, _ = torch.sort(b)
    prefix = torch.cat([b.new_zeros(1), torch.cumsum(b_sorted, 0)])  # (|b|+1,) prefix[k] = sum of k smallest
    k = torch.searchsorted(b_sorted, a)  # (|a|,) number of b strictly below each x
    below = a * k - prefix[k]  # sum over y < x of (x - y)
    above = (prefix[-1] - prefix[k]) - a * (b.numel() - k)  # sum over y >= x of (y - x)
    return (below + above).sum()


def _pair_sum(a: torch.Tensor, b: torch.Tensor, op: str) -> torch.Tensor:
    """sum_{x in a, y in b} W(x, y) over all ordered pairs of two 1-D saliency sets (Eq. 8 summed in closed form)."""
    na, nb = float(a.numel()), float(b.numel())
    sa, sb = a.sum(), b.sum()
    if op == "none":
        return a.new_tensor(na * nb)
    if op == "and":
        return sa * sb
    if op == "or":
        return nb * sa + na * sb - sa * sb
    return _sum_abs_diff(a, b)  # xor


def _category_sums(v: torch.Tensor, is_fg: torch.Tensor, op: str) -> torch.Tensor:
    """(3,) summed pair weight on FG-FG, FG-BG (both orders), BG-BG among all ordered pairs of one token group."""
    f, g = v[is_fg], v[~is_fg]
    return torch.stack([_pair_sum(f, f, op), _pair_sum(f, g, op) + _pair_sum(g, f, op), _pair_sum(g, g, op)])


def _check_inputs(w: torch.Tensor, fg: torch.Tensor | None, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    if w.dim() != 3:
        raise ValueError(f"w must have shape (B, T, N), got {tuple(w.shape)}")
    if w.numel() and (float(w.detach().min()) < 0.0 or float(w.detach().max()) > 1.0):
        raise ValueError("w must lie in [0, 1]")
    if fg is None:
        fg = w > threshold
    elif fg.shape != w.shape or fg.dtype != torch.bool:
        raise ValueError(f"fg must be a bool tensor of the shape of w {tuple(w.shape)}, got {fg.dtype} {tuple(fg.shape)}")
    return w.detach().to(torch.float64).cpu(), fg.cpu()


def pair_budget_sums(
    w: torch.Tensor,
    op: str,
    fg: torch.Tensor | None = None,
    threshold: float = 0.5,
    scope: Scope = "all",
) -> dict[str, float]:
    """Summed pair weight per category (fg_fg, fg_bg, bg_bg) plus `pairs`, the number of ordered pairs in scope.

    `w`: (B, T, N) saliency in [0, 1]; FG tokens are `fg` (bool, same shape) when given, else `w > threshold`.
    """
    check_op(op)
    if scope not in ("all", "spatial", "temporal"):
        raise ValueError(f"unknown scope={scope!r}: expected all, spatial or temporal")
    w64, fg = _check_inputs(w, fg, threshold)
    B, T, N = w64.shape
    clip = torch.zeros(3, dtype=torch.float64)  # all ordered pairs of each clip's T*N tokens
    frame = torch.zeros(3, dtype=torch.float64)  # within-frame pairs only
    for b in range(B):
        if scope != "spatial":
            clip += _category_sums(w64[b].reshape(-1), fg[b].reshape(-1), op)  # (T*N,) tokens of the clip
        if scope != "all":
            for t in range(T):
                frame += _category_sums(w64[b, t], fg[b, t], op)  # (N,) tokens of one frame
    if scope == "all":
        sums, pairs = clip, B * (T * N) ** 2
    elif scope == "spatial":
        sums, pairs = frame, B * T * N**2
    else:  # cross-frame = whole clip minus within-frame
        sums, pairs = clip - frame, B * T * (T - 1) * N**2
    out = {k: float(s) for k, s in zip(CATEGORIES, sums)}
    out["pairs"] = float(pairs)
    return out


def pair_budget_shares(
    w: torch.Tensor,
    op: str,
    fg: torch.Tensor | None = None,
    threshold: float = 0.5,
    scope: Scope = "all",
) -> dict[str, float]:
    """Share of the total pair weight on FG-FG, FG-BG and BG-BG pairs (keys `fg_fg`, `fg_bg`, `bg_bg`; sum 1).

    `w`: (B, T, N) saliency in [0, 1] (binary or continuous). FG tokens are `fg` (bool, same shape as `w`) when
    given, else `w > threshold`. Pairs: all ordered token pairs of each clip, within-frame (t = u, all i, j) and
    cross-frame (t != u, all i, j), summed over the batch (`scope` narrows this to `spatial` or `temporal`);
    FG-BG counts both orders. With op `none` and p = FG fraction of one clip this is p^2, 2p(1-p), (1-p)^2
    (the paper's App. A). If the operator gives every pair weight 0 (e.g. xor on a constant w) all three are 0.0.
    """
    sums = pair_budget_sums(w, op, fg, threshold, scope)
    total = sum(sums[k] for k in CATEGORIES)
    if total <= 0.0:
        return {k: 0.0 for k in CATEGORIES}
    return {k: sums[k] / total for k in CATEGORIES}


def pair_budget_coverage(
    w: torch.Tensor,
    op: str,
    fg: torch.Tensor | None = None,
    threshold: float = 0.5,
    scope: Scope = "all",
) -> dict[str, float]:
    """Pair weight per category as a fraction of the uniform budget (the number of ordered pairs in scope).

    This is the basis of the paper's Fig. 8b ("share of the O(N^2) budget"): with op `none` it equals
    `pair_budget_shares`; with binary w, `or` gives (p^2, 2p(1-p), 0), so the keys sum to the kept fraction.
    Same arguments and pair set as `pair_budget_shares`.
    """
    sums = pair_budget_sums(w, op, fg, threshold, scope)
    pairs = sums["pairs"]
    if pairs == 0.0:
        return {k: 0.0 for k in CATEGORIES}
    return {k: sums[k] / pairs for k in CATEGORIES}
