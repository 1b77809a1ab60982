"""Statistics of a pairwise study: win / tie / loss shares with intervals, sign tests, agreement, sample size.

- Shares: the share of the main run's wins, ties and losses among the votes on one baseline. Interval: percentile
  bootstrap that resamples prompts and raters independently, each with replacement (a two-way cluster bootstrap:
  the votes of one prompt, or of one rater, are not independent), the votes of a drawn (prompt, rater) cell
  counted once per draw of its prompt times once per draw of its rater.
- Sign test: exact binomial test of wins against losses, ties left out (two-sided, p = 1/2). Once over votes (what
  is usually reported; it treats votes as independent, so it is too optimistic when raters rate the same
  prompts), once over prompts (a prompt counts for the side with more of its votes; prompts with a balance are
  left out), which respects the clustering.
- Agreement: Krippendorff's alpha over the compare pairs, each rater's vote coded from the main run's side as
  loss < tie < win (ordinal metric; nominal too), missing votes allowed. Hand-written (a page of numpy): the
  `krippendorff` package is not a dependency; checked against Krippendorff's published example.
- Votes needed: for a share p and a half-width h at level z, n = z^2 p (1 - p) deff / h^2, where the design effect
  deff is the bootstrap variance over the binomial one (how much the clustering inflates the variance).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

OUTCOMES = ("win", "tie", "loss")


def outcome(left_side: str, choice: str) -> str:
    """The vote from side `a`'s view (the main run, or the clean video): win, tie or loss."""
    if choice == "tie":
        return "tie"
    chosen = left_side if choice == "left" else ("b" if left_side == "a" else "a")
    return "win" if chosen == "a" else "loss"


def bootstrap_shares(counts: np.ndarray, n_boot: int, level: float, seed: int) -> dict[str, np.ndarray]:
    """`counts` (P, R, 3): votes per prompt, rater and outcome -> estimate, lo, hi (3,) shares and the replicates."""
    P, R, _ = counts.shape
    total = counts.sum()
    if total == 0:
        nan = np.full(3, np.nan)
        return {"estimate": nan, "lo": nan, "hi": nan, "replicates": np.full((n_boot, 3), np.nan)}
    rng = np.random.default_rng(seed)
    wp = rng.multinomial(P, np.full(P, 1.0 / P), size=n_boot).astype(np.float64)  # (B, P) draws of each prompt
    wr = rng.multinomial(R, np.full(R, 1.0 / R), size=n_boot).astype(np.float64)  # (B, R) draws of each rater
    reps = np.einsum("bp,prk,br->bk", wp, counts, wr)  # (B, 3) outcome counts per replicate
    n = reps.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = np.where(n > 0, reps / np.where(n > 0, n, 1.0), np.nan)  # (B, 3)
    a = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(shares, [a, 1.0 - a], axis=0)
    return {"estimate": counts.sum((0, 1)) / total, "lo": lo, "hi": hi, "replicates": shares}


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact binomial p-value of wins against losses (None without a decided vote)."""
    n = wins + losses
    return None if n == 0 else float(stats.binomtest(wins, n, 0.5).pvalue)


def krippendorff_alpha(data: np.ndarray, metric: str = "nominal") -> float | None:
    """Krippendorff's alpha of `data` (raters, units), NaN = no value; metric nominal, ordinal or interval.

    None when it is undefined: fewer than two pairable values, or no variation at all (every value the same)."""
    data = np.asarray(data, dtype=np.float64)
    values = np.unique(data[np.isfinite(data)])
    index = {v: i for i, v in enumerate(values)}
    C = len(values)
    coincidence = np.zeros((C, C))  # o_ck: pairable value pairs within units, each unit weighted 1 / (m_u - 1)
    for unit in data.T:
        present = [index[v] for v in unit if np.isfinite(v)]
        m = len(present)
        if m < 2:
            continue
        n_u = np.bincount(present, minlength=C).astype(np.float64)
        coincidence += (np.outer(n_u, n_u) - np.diag(n_u)) / (m - 1)
    n_c = coincidence.sum(1)
    n = n_c.sum()
    if n < 2:
        return None
    if metric == "nominal":
        delta2 = 1.0 - np.eye(C)
    elif metric == "ordinal":
        cum = np.cumsum(n_c)  # sum_{g=c}^{k} n_g - (n_c + n_k) / 2, for c <= k
        lo, hi = np.minimum.outer(np.arange(C), np.arange(C)), np.maximum.outer(np.arange(C), np.arange(C))
        delta2 = (cum[hi] - cum[lo] + n_c[lo] - (n_c[lo] + n_c[hi]) / 2.0) ** 2
    elif metric == "interval":
        delta2 = np.subtract.outer(values, values) ** 2
    else:
        raise ValueError(f"unknown metric {metric!r}: nominal, ordinal or interval")
    observed = (coincidence * delta2).sum() / n
    expected = (np.outer(n_c, n_c) * delta2).sum() / (n * (n - 1))
    return None if expected == 0 else float(1.0 - observed / expected)


def design_effect(share: float, replicates: np.ndarray, n_votes: int) -> float | None:
    """Bootstrap variance of a share over its binomial variance with n_votes independent votes."""
    reps = replicates[np.isfinite(replicates)]
    binomial = share * (1.0 - share) / max(n_votes, 1)
    if reps.size < 2 or binomial <= 0:
        return None
    return float(np.var(reps, ddof=1) / binomial)


def votes_needed(share: float, half_width: float, level: float = 0.95, deff: float = 1.0) -> int:
    """Votes on one baseline for an interval of +-half_width around `share` (both fractions)."""
    z = stats.norm.ppf(0.5 + level / 2.0)
    return math.ceil(z * z * share * (1.0 - share) * deff / (half_width * half_width))
