"""Bootstrap confidence intervals, training-seed spread and paired differences for rubric scores.

Data model: one run is a `RunScores` array `values` (S, V, D): S training seeds x V videos x D rubric dimensions,
NaN where a dimension has no valid score (the grounded judge's "not applicable", or an invalid judge reply).
A video is a unit (prompt_id, sampling seed); every training seed of a run must have scored the same units.

Statistic. A metric is a set of dimensions (TA = the 6 TA dimensions, MQ = the 7 MQ dimensions, or one
dimension). Its value for one training seed is exactly the rubric's per-method aggregation
(`evaluation.rubric.aggregate.per_method` with `skip_inapplicable`): per dimension the mean over the videos that
have a score, then the mean over the dimensions that have any score. A run's value is the mean of that over its
training seeds. A bootstrap replicate applies the same formula with each video weighted by how often the
resample drew it, so the point estimate is the number of the paper-style table and never the bootstrap mean.

Resampling (`scheme`):
- `prompt` (default): the cluster bootstrap. Prompts are drawn with replacement, each drawn prompt brings all of
  its sampling seeds. Videos of one prompt are not independent (same scene, same difficulty), so drawing videos
  independently would understate the spread; a prompt's mean already carries its seeds' sampling noise, so this
  interval covers both sources, prompts x sampling seeds.
- `prompt_seed`: two-stage: prompts with replacement, then within each drawn prompt its sampling seeds with
  replacement (slightly wider than `prompt`; the classical two-stage bootstrap is conservative).
- `video`: every (prompt, seed) video drawn independently (only right when seeds behave like new prompts).
The interval is the percentile interval of the replicates at `level` (default 95%). Every run of one comparison
uses the same replicate weights (one seeded draw over the union of units), so differences are paired by
(prompt, sampling seed): a paired difference is the difference of the two runs' statistics on the same resample,
over the units both runs scored. A difference whose interval includes zero is "no difference".

Training seeds. The spread across a run's training seeds is reported beside the interval (per-seed values, std
with ddof 1, range). With `train_seed_rng` set (the comparison sets it) a run's training seeds are resampled too:
each bootstrap replicate draws the run's S seeds with replacement (`train_seed_weights`) on top of the videos, so
the interval covers the replicate-to-replicate variation as well. Two lab runs of one command, each a replicate
of the whole pipeline (base included), moved one row by more than its prompt-only interval (docs/lab/replicates.md):
held fixed, a difference seen in one replicate "holds" for them all. With two or three seeds the resampled spread
is coarse (two seeds: a quarter of the replicates use only the first, a quarter only the second), so an interval
then reads as "the difference has one sign in every replicate", which is the question. The draw depends only on
the seeds' labels, so runs with the same training seeds get the same draw and stay paired by replicate (a lab
replicate's rows share its base); a run with one training seed is held fixed (the common base of a DAG that trained
`--extra-train-seeds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Scheme = Literal["prompt", "prompt_seed", "video"]
SCHEMES: tuple[str, ...] = ("prompt", "prompt_seed", "video")
Unit = tuple[str, int]  # (prompt_id, sampling seed)


@dataclass(frozen=True)
class RunScores:
    """Per-video rubric scores of one run over its training seeds."""

    run: str
    units: tuple[Unit, ...]  # V videos, sorted
    dims: tuple[str, ...]  # D dimension names, the last axis of `values`
    train_seeds: tuple[int, ...]  # S training seeds, the first axis of `values`
    values: np.ndarray  # (S, V, D) float, NaN = no valid score

    def __post_init__(self) -> None:
        s, v, d = self.values.shape
        if (s, v, d) != (len(self.train_seeds), len(self.units), len(self.dims)):
            raise ValueError(f"run {self.run}: values {self.values.shape} do not match {len(self.train_seeds)} training "
                             f"seeds x {len(self.units)} videos x {len(self.dims)} dimensions")
        if list(self.units) != sorted(set(self.units)):
            raise ValueError(f"run {self.run}: units must be sorted and unique")


@dataclass(frozen=True)
class Interval:
    """Point estimate and percentile bootstrap interval."""

    estimate: float | None
    lo: float | None
    hi: float | None

    def includes_zero(self) -> bool:
        return self.lo is None or self.hi is None or (self.lo <= 0.0 <= self.hi)

    def to_dict(self) -> dict[str, float | None]:
        return {"estimate": _r(self.estimate), "lo": _r(self.lo), "hi": _r(self.hi)}


def _r(x: float | None, nd: int = 6) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


# --------------------------------------------------------------------------------------------------------------
# resampling weights
# --------------------------------------------------------------------------------------------------------------


def bootstrap_weights(units: Sequence[Unit], n_boot: int, seed: int, scheme: Scheme = "prompt") -> np.ndarray:
    """(n_boot, V) multiplicity of each unit in each bootstrap replicate (each row sums to V for balanced designs).

    Seeded (numpy PCG64 with `seed`), vectorised; see the module docstring for the schemes.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown bootstrap scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    V = len(units)
    if V == 0:
        raise ValueError("no videos to resample")
    rng = np.random.default_rng(seed)
    if scheme == "video":
        return rng.multinomial(V, np.full(V, 1.0 / V), size=n_boot).astype(np.float64)  # (B, V)
    prompts = sorted({p for p, _ in units})
    members = [np.array([i for i, (p, _) in enumerate(units) if p == q]) for q in prompts]  # unit indices per prompt
    P = len(prompts)
    drawn = rng.multinomial(P, np.full(P, 1.0 / P), size=n_boot)  # (B, P) times each prompt was drawn
    weights = np.zeros((n_boot, V), dtype=np.float64)
    for p, idx in enumerate(members):
        if scheme == "prompt":
            weights[:, idx] = drawn[:, [p]]  # every seed of a drawn prompt, once per draw
        else:
            # k draws of this prompt, each resampling its m seeds with replacement: the seed counts of k independent
            # multinomial(m, uniform) draws sum to one multinomial(k * m, uniform)
            m = len(idx)
            weights[:, idx] = rng.multinomial(drawn[:, p] * m, np.full(m, 1.0 / m))  # (B, m)
    return weights


# --------------------------------------------------------------------------------------------------------------
# the statistic
# --------------------------------------------------------------------------------------------------------------


def train_seed_weights(train_seeds: Sequence[int], n_boot: int, rng_seed: int) -> np.ndarray:
    """(n_boot, S) how often each of a run's S training seeds is drawn in each bootstrap replicate (rows sum to S).

    Seeded by `rng_seed` and the seeds' labels only, so every run with the same training seeds gets the same draw
    (paired by replicate). One training seed: all ones (held fixed)."""
    S = len(train_seeds)
    if S == 1:
        return np.ones((n_boot, 1), dtype=np.float64)
    rng = np.random.default_rng([rng_seed, S, *(int(t) for t in train_seeds)])
    return rng.multinomial(S, np.full(S, 1.0 / S), size=n_boot).astype(np.float64)


def metric_value(values: np.ndarray, dim_idx: Sequence[int], weights: np.ndarray | None = None,
                 seed_weights: np.ndarray | None = None) -> np.ndarray:
    """Metric of `values` (S, V, D) over dimensions `dim_idx`: per training seed, per dimension the weighted mean
    over videos with a score, then the mean over dimensions with any score; then the mean over training seeds.

    `weights` (B, V) gives one value per replicate (B,); None means every video once (returns shape (1,)).
    `seed_weights` (B, S) weights the training seeds in each replicate (`train_seed_weights`); None: each once.
    A replicate where no dimension has a score is NaN.
    """
    x = values[:, :, list(dim_idx)]  # (S, V, d)
    valid = np.isfinite(x)
    x0 = np.where(valid, x, 0.0)
    w = np.ones((1, x.shape[1])) if weights is None else weights  # (B, V)
    sums = np.einsum("bv,svd->bsd", w, x0)  # (B, S, d) weighted sums per dimension
    counts = np.einsum("bv,svd->bsd", w, valid.astype(np.float64))  # (B, S, d) weighted number of scores
    with np.errstate(invalid="ignore", divide="ignore"):
        dim_means = np.where(counts > 0, sums / np.where(counts > 0, counts, 1.0), np.nan)  # (B, S, d)
        has = np.isfinite(dim_means)
        per_seed = np.where(has.any(-1), np.nansum(dim_means, -1) / np.maximum(has.sum(-1), 1), np.nan)  # (B, S)
    if seed_weights is None:
        return per_seed.mean(-1)  # (B,) NaN if any training seed has no score in that replicate
    drawn = seed_weights > 0  # (B, S); a seed not drawn in a replicate does not count there, NaN or not
    total = np.where(drawn, per_seed * seed_weights, 0.0).sum(-1) / seed_weights.sum(-1)  # (B,)
    return np.where((drawn & ~np.isfinite(per_seed)).any(-1), np.nan, total)


def _percentile_interval(estimate: float, reps: np.ndarray, level: float) -> Interval:
    if not np.isfinite(estimate):
        return Interval(None, None, None)
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return Interval(float(estimate), None, None)
    a = (1.0 - level) / 2.0
    lo, hi = np.quantile(reps, [a, 1.0 - a])
    return Interval(float(estimate), float(lo), float(hi))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")


def _columns(run: RunScores, units: Sequence[Unit]) -> np.ndarray:
    pos = {u: i for i, u in enumerate(run.units)}
    missing = [u for u in units if u not in pos]
    if missing:
        p, s = missing[0]
        raise ValueError(f"run {run.run}: no score for video {p}_s{s} ({len(missing)} missing)")
    return np.array([pos[u] for u in units], dtype=int)


def _seed_weights(run: RunScores, n_boot: int, train_seed_rng: int | None) -> np.ndarray | None:
    return None if train_seed_rng is None else train_seed_weights(run.train_seeds, n_boot, train_seed_rng)


def run_interval(run: RunScores, dim_idx: Sequence[int], weights: np.ndarray, units: Sequence[Unit], level: float = 0.95,
                 train_seed_rng: int | None = None) -> Interval:
    """Estimate and bootstrap interval of one run's metric; `weights` (B, len(units)) over `units` (a superset of
    the run's units: columns of units the run did not score are dropped). `train_seed_rng`: resample the run's
    training seeds too (module docstring); None holds them fixed."""
    _check_level(level)
    have = set(run.units)
    cols = [i for i, u in enumerate(units) if u in have]
    sub_units = [units[i] for i in cols]
    vals = run.values[:, _columns(run, sub_units)]  # (S, V', D)
    est = float(metric_value(vals, dim_idx)[0])
    seed_w = _seed_weights(run, weights.shape[0], train_seed_rng)
    return _percentile_interval(est, metric_value(vals, dim_idx, weights[:, cols], seed_w), level)


@dataclass(frozen=True)
class PairedReplicates:
    """Metric(a) - metric(b) over the videos both runs scored: the estimate, its value on every bootstrap
    replicate (B,) (the same resamples for every pair of runs) and the number of paired videos."""

    estimate: float
    replicates: np.ndarray
    n_paired: int
    n_replicates: int = 1  # training seeds (replicates) behind the larger side

    def interval(self, level: float = 0.95) -> Interval:
        _check_level(level)
        return _percentile_interval(self.estimate, self.replicates, level)


def paired_replicates(a: RunScores, b: RunScores, dim_idx: Sequence[int], weights: np.ndarray,
                      units: Sequence[Unit], train_seed_rng: int | None = None) -> PairedReplicates:
    """Metric(a) - metric(b) over the videos both scored, on the same resamples (paired by prompt and seed).
    `train_seed_rng`: resample each run's training seeds too, jointly for runs with the same seeds."""
    common = set(a.units) & set(b.units)
    cols = [i for i, u in enumerate(units) if u in common]
    if not cols:
        raise ValueError(f"runs {a.run} and {b.run} share no (prompt, seed) video: nothing to pair")
    sub = [units[i] for i in cols]
    va, vb = a.values[:, _columns(a, sub)], b.values[:, _columns(b, sub)]
    est = float(metric_value(va, dim_idx)[0] - metric_value(vb, dim_idx)[0])
    w = weights[:, cols]
    B = weights.shape[0]
    sa, sb = _seed_weights(a, B, train_seed_rng), _seed_weights(b, B, train_seed_rng)
    return PairedReplicates(est, metric_value(va, dim_idx, w, sa) - metric_value(vb, dim_idx, w, sb), len(cols),
                            max(len(a.train_seeds), len(b.train_seeds)))


def paired_difference(a: RunScores, b: RunScores, dim_idx: Sequence[int], weights: np.ndarray, units: Sequence[Unit],
                      level: float = 0.95, train_seed_rng: int | None = None) -> tuple[Interval, int]:
    """Metric(a) - metric(b) over the videos both scored, on the same resamples (paired by prompt and seed).
    Returns the interval and the number of paired videos."""
    _check_level(level)
    pair = paired_replicates(a, b, dim_idx, weights, units, train_seed_rng)
    return pair.interval(level), pair.n_paired


def bootstrap_p_value(pair: PairedReplicates) -> float | None:
    """Two-sided bootstrap p-value of "no difference" for a paired difference: twice the smaller share of replicates
    on either side of zero, each share counted with the +1 of Davison & Hinkley (1997, Sec. 4.4) so that p is never
    0 on B replicates; capped at 1. It is the dual of the percentile interval: p < 1 - level roughly when that
    interval excludes zero. None without a finite estimate or replicate."""
    reps = pair.replicates[np.isfinite(pair.replicates)]
    if not np.isfinite(pair.estimate) or reps.size == 0:
        return None
    below = (1.0 + np.sum(reps <= 0.0)) / (reps.size + 1.0)
    above = (1.0 + np.sum(reps >= 0.0)) / (reps.size + 1.0)
    return float(min(1.0, 2.0 * min(below, above)))


def half_width(iv: Interval) -> float | None:
    """Half the width of an interval (the precision a comparison reached); None without both ends."""
    return None if iv.lo is None or iv.hi is None else _r((iv.hi - iv.lo) / 2.0)


def seed_spread(run: RunScores, dim_idx: Sequence[int]) -> dict:
    """The metric per training seed, their std (ddof 1; None with one seed) and range."""
    per = [float(metric_value(run.values[s : s + 1], dim_idx)[0]) for s in range(len(run.train_seeds))]
    fin = [x for x in per if np.isfinite(x)]
    return {
        "per_seed": {str(s): _r(x) for s, x in zip(run.train_seeds, per)},
        "std": _r(float(np.std(fin, ddof=1))) if len(fin) > 1 else None,
        "min": _r(min(fin)) if fin else None,
        "max": _r(max(fin)) if fin else None,
    }


def verdict(diff: Interval) -> str:
    """`higher` / `lower` when the interval excludes zero, else `no difference`. The interval's side decides, not the
    point estimate: a percentile interval need not contain its estimate."""
    if diff.includes_zero():
        return "no difference"
    return "higher" if diff.lo > 0.0 else "lower"
