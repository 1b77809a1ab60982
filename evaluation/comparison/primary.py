"""Pre-registered claims with multiplicity control: the primary family of `comparison.claims`, tested together.

Why. A comparison that tests nine orderings at 95% each, uncorrected, reports about one false "holds" per run by
chance alone. So the claims that decide are written in params before the runs are trained (the primary family,
`comparison.claims`, in the form of sara/claims.py) and tested as one family with the Holm-Bonferroni step-down
procedure (Holm 1979), which bounds the chance of any false "holds" in the family by alpha = 1 - level under any
dependence between the claims. Every other ordering the comparison shows is exploratory: reported with its raw
p-value and labelled so, never "holds".

The test of one claim `a > b on M` (or `<`): the paired difference M(a) - M(b) over the videos both runs scored,
with its bootstrap replicates on the comparison's one shared resampling (evaluation/statistics.py), and its
two-sided bootstrap p-value (`bootstrap_p_value`). A claim holds when its Holm-adjusted p-value is at most alpha
and the estimate has the claimed sign. With a family of one claim this is the interval excluding zero on the
claimed side; every further claim makes each test stricter. A primary claim whose runs were not compared stays in
the family with p = 1: the family was fixed before the run, and a missing member must not loosen the others.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from evaluation.statistics import PairedReplicates, bootstrap_p_value, half_width
from sara.claims import Claim

# (a, b, metric) -> the paired difference of a and b on the comparison's resamples, or None when a or b is not there
PairFn = Callable[[str, str, str], "PairedReplicates | None"]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    With the m p-values sorted ascending, p_(1) <= ... <= p_(m), the adjusted value of the i-th smallest is
    max over j <= i of min(1, (m - j + 1) * p_(j)): each is multiplied by the number of hypotheses still in play
    when it is tested, and the running maximum keeps the step-down order (a smaller raw p never gets a larger
    adjusted p). Rejecting where adjusted <= alpha is Holm's procedure at familywise level alpha. Written out here:
    it is those three lines, and scipy has no Holm (its `false_discovery_control` is Benjamini-Hochberg).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1 or np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must be a list of numbers in [0, 1], got {list(p_values)}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])  # (m - j + 1) * p_(j), j = 1..m
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return [float(x) for x in adjusted]


def _entry(claim: Claim, pair: PairedReplicates | None, level: float, label: Callable[[str], str]) -> dict[str, Any]:
    """The numbers of one claim: difference with interval, half-width, paired videos and raw p-value."""
    out: dict[str, Any] = {"claim": f"{label(claim.a)} {claim.relation} {label(claim.b)} on {claim.metric}",
                           "text": claim.text, "a": claim.a, "b": claim.b, "relation": claim.relation,
                           "metric": claim.metric}
    if pair is None:
        return {**out, "difference": None, "half_width": None, "n_paired": 0, "n_replicates": 0, "p_raw": None}
    iv = pair.interval(level)
    return {**out, "difference": iv.to_dict(), "half_width": half_width(iv), "n_paired": pair.n_paired,
            "n_replicates": pair.n_replicates, "p_raw": bootstrap_p_value(pair)}


def decide_primary(claims: Sequence[Claim], pair: PairFn, level: float,
                 label: Callable[[str], str] = str, unpaired: Callable[[Claim], str] = lambda c: "not run"
                 ) -> dict[str, Any]:
    """The primary family: each claim's difference, raw and Holm-adjusted p-value and verdict (`holds`,
    `not shown`, or, when `pair` gives nothing, `unpaired(claim)`: `not run` when a run is missing), at
    familywise alpha = 1 - level."""
    alpha = 1.0 - level
    entries = [_entry(c, pair(c.a, c.b, c.metric), level, label) for c in claims]
    raw = [1.0 if e["p_raw"] is None else e["p_raw"] for e in entries]  # a missing member counts as p = 1
    adjusted = holm(raw) if entries else []
    for c, e, p_adj in zip(claims, entries, adjusted):
        e["p_holm"] = round(p_adj, 6)
        e["p_raw"] = None if e["p_raw"] is None else round(e["p_raw"], 6)
        if e["difference"] is None:
            e["verdict"] = unpaired(c)
        else:
            right_side = c.sign * e["difference"]["estimate"] > 0
            e["verdict"] = "holds" if right_side and p_adj <= alpha else "not shown"
    return {"method": "holm", "alpha": round(alpha, 6), "p_value": "two-sided bootstrap (evaluation/statistics.py)",
            "n_claims": len(entries), "claims": entries}


def half_widths_reached(differences: dict[str, dict[str, dict[str, Any]]], metrics: Sequence[str] = ("TA", "MQ")
                        ) -> dict[str, dict[str, float | int | None]]:
    """Per metric, the largest, median and smallest half-width of the paired-difference intervals against the
    references (`differences[ref][run][metric]`): the precision the comparison reached."""
    out: dict[str, dict[str, float | int | None]] = {}
    for m in metrics:
        hw = [d[m]["half_width"] for per_run in differences.values() for d in per_run.values()
              if d.get(m, {}).get("half_width") is not None]
        out[m] = {"max": max(hw) if hw else None, "median": float(np.median(hw)) if hw else None,
                  "min": min(hw) if hw else None, "n": len(hw)}
    return out
