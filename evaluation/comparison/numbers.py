"""The comparison's numbers (the body of comparison.json): per run and metric an interval and the training-seed
spread, per training seed its own intervals, paired differences against the reference runs, and the paper's
orderings (claims.py). The interval, the resampling unit and the pairing: evaluation/statistics.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from evaluation.comparison.claims import METRICS, dim_index, evaluate_claims
from evaluation.comparison.primary import decide_primary, half_widths_reached
from evaluation.statistics import (RunScores, bootstrap_weights, half_width, paired_difference, paired_replicates,
                                   run_interval, seed_spread, verdict)
from sara.claims import Claim
from sara.runs import BASE, ORACLE, row_label


@dataclass(frozen=True)
class StatsConfig:
    n_boot: int = 2000
    level: float = 0.95
    scheme: str = "prompt"
    seed: int = 0


SUMMARY = ("TA", "MQ")  # the metrics given per training seed (and logged per child run in MLflow)


def one_seed(r: RunScores, k: int) -> RunScores:
    """Training seed k (the k-th of `r.train_seeds`) of a run, alone."""
    return RunScores(r.run, r.units, r.dims, (r.train_seeds[k],), r.values[k : k + 1])  # (1, V, D)


def per_train_seed(r: RunScores, runs: dict[str, RunScores], references: Iterable[str], weights: np.ndarray,
                   units: list, level: float) -> dict[str, Any]:
    """TA/MQ of one training seed of a run with intervals, and its paired differences against each reference run
    (the reference over all its training seeds, as in the tables), on the same resamples as the tables."""
    out: dict[str, Any] = {"metrics": {m: run_interval(r, dim_index(m), weights, units, level).to_dict() for m in SUMMARY},
                           "differences": {}}
    for ref in references:
        if ref in runs and ref != r.run:
            out["differences"][ref] = {}
            for m in SUMMARY:
                iv, n = paired_difference(r, runs[ref], dim_index(m), weights, units, level)
                out["differences"][ref][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": n}
    return out


def compare(runs: dict[str, RunScores], references: Iterable[str], cfg: StatsConfig,
            primary: Sequence[Claim] = ()) -> dict[str, Any]:
    """Every number of the comparison (the body of comparison.json); `primary` are the pre-registered claims."""
    references = list(references)  # read once per run
    if not runs:
        raise ValueError("no runs to compare")
    units = sorted(set().union(*(r.units for r in runs.values())))
    weights = bootstrap_weights(units, cfg.n_boot, cfg.seed, cfg.scheme)  # (B, V): one draw shared by every run
    out_runs: dict[str, Any] = {}
    for name, r in runs.items():
        metrics = {}
        for m in METRICS:
            iv = run_interval(r, dim_index(m), weights, units, cfg.level)
            metrics[m] = {**iv.to_dict(), "spread": seed_spread(r, dim_index(m))}
        trained = name not in (ORACLE, BASE)
        out_runs[name] = {
            "label": row_label(name),
            # the base has training seeds only as replicates of the whole lab pipeline (scripts/lab_merge_seeds.py)
            "train_seeds": list(r.train_seeds) if trained or len(r.train_seeds) > 1 else [],
            "n_videos": len(r.units),
            "n_prompts": len({p for p, _ in r.units}),
            "sampling_seeds": sorted({s for _, s in r.units}),
            "metrics": metrics,
        }
        if trained:
            out_runs[name]["per_train_seed"] = {
                str(seed): per_train_seed(one_seed(r, k), runs, references, weights, units, cfg.level)
                for k, seed in enumerate(r.train_seeds)}
    diffs: dict[str, Any] = {}
    for ref in references:
        if ref not in runs:
            continue
        diffs[ref] = {}
        for name, r in runs.items():
            if name in (ref, ORACLE):
                continue
            diffs[ref][name] = {}
            for m in METRICS:
                iv, n = paired_difference(r, runs[ref], dim_index(m), weights, units, cfg.level)
                diffs[ref][name][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": n, "half_width": half_width(iv)}
    claims = evaluate_claims(runs, weights, units, cfg.level, primary)

    def pair(a: str, b: str, m: str):  # a primary claim's paired difference, on the same resamples
        return paired_replicates(runs[a], runs[b], dim_index(m), weights, units) if a in runs and b in runs else None

    primary_claims = {**decide_primary(primary, pair, cfg.level, row_label), "half_widths": half_widths_reached(diffs)}
    return {
        "statistics": {"n_boot": cfg.n_boot, "level": cfg.level, "scheme": cfg.scheme, "seed": cfg.seed,
                       "n_units": len(units), "n_prompts": len({p for p, _ in units})},
        "runs": out_runs,
        "differences": diffs,
        "primary_claims": primary_claims,
        "claims": claims,
    }
