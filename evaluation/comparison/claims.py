"""The paper's orderings (Tables 1 and 3), each tested on the comparison's paired bootstrap: consistent, reversed,
no difference, or cannot tell at this size (with the number of prompts that would tell, if the difference held).

They are exploratory: each is read from its own uncorrected interval and carries its raw p-value, so none of them
"holds". The claims that decide are the pre-registered ones of `comparison.claims`, tested together with a
correction for multiplicity (primary.py); an ordering registered there is left out here."""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from evaluation.rubric.dimensions import ALL_DIMS, MQ_DIMS, TA_DIMS
from evaluation.statistics import Interval, PairedReplicates, RunScores, bootstrap_p_value, half_width
from sara.claims import Claim
from sara.runs import Run, row_label

NO_SHARED_REPLICATE = "no shared replicate"  # the verdict of two rows trained in different lab replicates
METRICS: dict[str, tuple[str, ...]] = {"TA": TA_DIMS, "MQ": MQ_DIMS, **{d: (d,) for d in ALL_DIMS}}
SFT, VIDEOREPA = Run("sft").name, Run("videorepa").name
OR, AND, XOR = (Run("sara", op).name for op in ("or", "and", "xor"))  # type: ignore[arg-type]
# The paper's orderings: (a, relation, b, metric)
CLAIMS: list[tuple[str, str, str, str]] = [
    (OR, ">", VIDEOREPA, "TA"),
    (VIDEOREPA, ">=", SFT, "TA"),
    (OR, ">", SFT, "TA"),
    (OR, ">", AND, "TA"),
    (AND, ">", XOR, "TA"),
    (OR, ">", AND, "MQ"),
    (AND, ">", XOR, "MQ"),
    (OR, ">", SFT, "MQ"),
    (OR, ">", VIDEOREPA, "MQ"),
]


def dim_index(metric: str) -> list[int]:
    """Columns of the rubric dimensions a metric averages (TA, MQ or one dimension)."""
    return [ALL_DIMS.index(d) for d in METRICS[metric]]


def claim_verdict(relation: str, diff: Interval) -> str:
    """Verdict of an exploratory ordering from its uncorrected interval: never "holds", which only a pre-registered
    claim reaches, after the correction for multiplicity (primary.py)."""
    if diff.estimate is None or diff.lo is None or diff.hi is None:
        return "cannot tell (no scores)"
    if diff.lo > 0:
        return "consistent (uncorrected)"
    if diff.hi < 0:
        return "reversed (uncorrected)"
    return "no difference (consistent with >=)" if relation == ">=" else "cannot tell at this size"


def prompts_needed(diff: Interval, n_prompts: int) -> int | None:
    """Rough number of prompts at which an interval of this width (shrinking as 1/sqrt(prompts)) would exclude
    zero, if the estimated difference held: n * (half-width / |difference|)^2. None when it already does or is 0."""
    if diff.estimate is None or diff.lo is None or diff.hi is None or not diff.includes_zero() or diff.estimate == 0:
        return None
    half = (diff.hi - diff.lo) / 2.0
    return int(math.ceil(n_prompts * (half / abs(diff.estimate)) ** 2))


def evaluate_claims(runs: dict[str, RunScores], pair: Callable[[str, str, str], PairedReplicates | None], level: float,
                    primary: Sequence[Claim] = ()) -> list[dict[str, Any]]:
    """Every claim of CLAIMS but those registered in `primary`, each from `pair(a, b, metric)` (numbers.py: the
    shared bootstrap draw); `not run` when a side has no scores, `no shared replicate` when the two rows come from
    different lab replicates. Each is exploratory, with its raw p-value and half-width."""
    registered = {(c.a, c.relation, c.b, c.metric) for c in primary}
    claims = []
    for a, rel, b, m in CLAIMS:
        if (a, rel, b, m) in registered:
            continue  # decided in the primary family
        entry: dict[str, Any] = {"claim": f"{row_label(a)} {rel} {row_label(b)} on {m}", "a": a, "b": b, "relation": rel,
                                 "metric": m, "family": "exploratory"}
        if a not in runs or b not in runs:
            entry.update(verdict="not run", missing=[x for x in (a, b) if x not in runs])
        elif (paired := pair(a, b, m)) is None:
            entry.update(verdict=NO_SHARED_REPLICATE)
        else:
            iv = paired.interval(level)
            n_prompts = len({p for p, _ in set(runs[a].units) & set(runs[b].units)})
            entry.update(difference=iv.to_dict(), n_paired=paired.n_paired, n_replicates=paired.n_replicates,
                         verdict=claim_verdict(rel, iv), prompts_needed=prompts_needed(iv, n_prompts),
                         half_width=half_width(iv), p_raw=bootstrap_p_value(paired))
        claims.append(entry)
    return claims
