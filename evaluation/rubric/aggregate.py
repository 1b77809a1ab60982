"""Aggregation of judge scores (the paper's VLM rubric): per dimension by mean and by vote, then TA / MQ averages.

Per video and dimension, over the judges that gave a valid score:
- mean: the average score;
- vote: the most frequent score, ties going to the higher score (with three judges that all disagree: the max).
Per method, each dimension is the average of its per-video values over the videos where at least one judge was
valid; TA is the average of the 6 TA dimensions and MQ of the 7 MQ dimensions. `n_valid` counts the valid
(video, judge) scores behind each number, so a judge that failed is visible instead of silently dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from evaluation.rubric.dimensions import ALL_DIMS, GROUPS


def vote(scores: Iterable[int]) -> int:
    """Majority score; ties go to the higher score. Raises on an empty list."""
    counts = Counter(int(s) for s in scores)
    if not counts:
        raise ValueError("vote over no valid scores")
    top = max(counts.values())
    return max(s for s, c in counts.items() if c == top)


def mean(values: Iterable[float]) -> float:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("mean over no values")
    return sum(vals) / len(vals)


def per_video(scores_by_judge: Mapping[str, Mapping[str, int | None]]) -> dict[str, dict]:
    """One video: `{judge: {dim: score|None}}` -> `{dim: {"mean", "vote", "n_valid"}}` (dims with no valid score omitted)."""
    out: dict[str, dict] = {}
    for dim in ALL_DIMS:
        vals = [s[dim] for s in scores_by_judge.values() if s.get(dim) is not None]
        if vals:
            out[dim] = {"mean": mean(vals), "vote": float(vote(vals)), "n_valid": len(vals)}
    return out


def per_method(videos: Iterable[Mapping[str, Mapping[str, int | None]]], *, skip_inapplicable: bool = False) -> dict:
    """All videos of one method -> per-dimension mean/vote, TA/MQ averages and n_valid.

    Returns `{"dims": {dim: {"mean", "vote", "n_valid", "n_videos"}}, "TA": {"mean", "vote", "n_valid",
    "n_dims"}, "MQ": {...}, "n_videos": int}`. A group average is None when any of its dimensions has no valid
    score at all (a judge that never answered it must not be averaged away), unless `skip_inapplicable`: then
    dimensions with no score are left out of the average (the grounded judge returns None for a dimension that
    does not apply, e.g. person_appearance without persons) and `n_dims` says how many were averaged.
    """
    per_dim: dict[str, dict[str, list]] = {d: {"mean": [], "vote": [], "n_valid": []} for d in ALL_DIMS}
    n_videos = 0
    for v in videos:
        n_videos += 1
        for dim, agg in per_video(v).items():
            for k in ("mean", "vote", "n_valid"):
                per_dim[dim][k].append(agg[k])
    dims: dict[str, dict] = {}
    for dim, acc in per_dim.items():
        if acc["mean"]:
            dims[dim] = {
                "mean": mean(acc["mean"]),
                "vote": mean(acc["vote"]),
                "n_valid": int(sum(acc["n_valid"])),
                "n_videos": len(acc["mean"]),
            }
        else:
            dims[dim] = {"mean": None, "vote": None, "n_valid": 0, "n_videos": 0}
    out: dict = {"dims": dims, "n_videos": n_videos}
    for group, names in GROUPS.items():
        g = {}
        for k in ("mean", "vote"):
            vals = [dims[d][k] for d in names]
            if skip_inapplicable:
                vals = [v for v in vals if v is not None]
                g[k] = mean(vals) if vals else None
            else:
                g[k] = None if any(v is None for v in vals) else mean(vals)
        g["n_dims"] = sum(dims[d]["mean"] is not None for d in names)
        g["n_valid"] = int(sum(dims[d]["n_valid"] for d in names))
        out[group] = g
    return out
