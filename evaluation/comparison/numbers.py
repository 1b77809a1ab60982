"""The comparison's numbers (the body of comparison.json): per run and metric an interval and the training-seed
spread, per training seed its own intervals, paired differences against the reference runs, the paper's
orderings (claims.py), and the exploratory breakdown by how many subjects a prompt names (`by_subjects`). The
interval, the resampling unit and the pairing: evaluation/statistics.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from evaluation.comparison.claims import METRICS, NO_SHARED_REPLICATE, dim_index, evaluate_claims
from evaluation.comparison.primary import decide_primary, half_widths_reached
from evaluation.statistics import (PairedReplicates, RunScores, bootstrap_p_value, bootstrap_weights, half_width,
                                   paired_difference, paired_replicates, run_interval, seed_spread, verdict)
from sara.claims import Claim
from sara.runs import BASE, ORACLE, row_label


@dataclass(frozen=True)
class StatsConfig:
    n_boot: int = 2000
    level: float = 0.95
    scheme: str = "prompt"
    seed: int = 0


SUMMARY = ("TA", "MQ")  # the metrics given per training seed (and logged per child run in MLflow)


def with_seeds(r: RunScores, seeds: Sequence[int]) -> RunScores:
    """The training seeds `seeds` of a run, alone."""
    idx = [r.train_seeds.index(s) for s in seeds]
    return RunScores(r.run, r.units, r.dims, tuple(seeds), r.values[idx])  # (len(seeds), V, D)


def one_seed(r: RunScores, k: int) -> RunScores:
    """Training seed k (the k-th of `r.train_seeds`) of a run, alone."""
    return with_seeds(r, [r.train_seeds[k]])


def replicates_of_the_pipeline(runs: dict[str, RunScores]) -> bool:
    """Whether the training seeds are replicates of the whole lab pipeline: the base has several, so each seed
    label has its own base (runs merged by scripts/lab_merge_seeds.py). Then two rows compare only on the replicates
    both have. With one base (a DAG that trained `--extra-train-seeds`) every training seed shares it."""
    return BASE in runs and len(runs[BASE].train_seeds) > 1


def on_shared_replicates(a: RunScores, b: RunScores) -> tuple[RunScores, RunScores] | None:
    """Both rows on the training seeds (replicates) they share; None when they share none."""
    shared = [s for s in a.train_seeds if s in b.train_seeds]
    return (with_seeds(a, shared), with_seeds(b, shared)) if shared else None


def same_replicate(ref: RunScores, seed: int) -> RunScores:
    """The reference's training seed `seed` when it has it (the same replicate: in a lab run its rows share one
    base), else the reference over all its training seeds (a base common to every training seed)."""
    return with_seeds(ref, [seed]) if seed in ref.train_seeds and len(ref.train_seeds) > 1 else ref


def per_train_seed(r: RunScores, runs: dict[str, RunScores], references: Iterable[str], weights: np.ndarray,
                   units: list, level: float) -> dict[str, Any]:
    """TA/MQ of one training seed of a run with intervals, and its paired differences against each reference run
    (its same training seed, `same_replicate`; none against a reference of other lab replicates only), on the same
    video resamples as the tables."""
    (seed,) = r.train_seeds
    out: dict[str, Any] = {"metrics": {m: run_interval(r, dim_index(m), weights, units, level).to_dict() for m in SUMMARY},
                           "differences": {}}
    by_replicate = replicates_of_the_pipeline(runs)
    for ref in references:
        if ref in runs and ref != r.run and (seed in runs[ref].train_seeds or not by_replicate):
            out["differences"][ref] = {}
            for m in SUMMARY:
                iv, n = paired_difference(r, same_replicate(runs[ref], seed), dim_index(m), weights, units, level)
                out["differences"][ref][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": n}
    return out


def pair_on(a: RunScores, b: RunScores, m: str, weights: np.ndarray, units: Sequence, by_replicate: bool,
            train_seed_rng: int | None) -> PairedReplicates | None:
    """a - b on metric m on the resamples `weights` over `units`; None for rows of different lab replicates when
    the training seeds are replicates of the whole pipeline (`by_replicate`, replicates_of_the_pipeline)."""
    both = on_shared_replicates(a, b) if by_replicate else (a, b)
    return None if both is None else paired_replicates(*both, dim_index(m), weights, units, train_seed_rng)


def by_subjects(runs: dict[str, RunScores], references: Iterable[str], subjects: Mapping[str, int],
                cfg: StatsConfig) -> dict[str, Any] | None:
    """Exploratory: on the prompts that name k subjects (`subjects`: {prompt id: k}), for each k, every run's TA
    and MQ and its paired differences against each reference, with the tables' pairing and replicate rules. Each
    group has its own bootstrap draw over its own prompts; nothing is corrected for multiplicity. Prompts with no
    count are left out (`left_out`). None when fewer than two groups have videos."""
    units = sorted(set().union(*(r.units for r in runs.values())))
    groups = sorted({subjects[p] for p, _ in units if p in subjects})
    if len(groups) < 2:
        return None
    by_replicate = replicates_of_the_pipeline(runs)
    out: dict[str, Any] = {"groups": {}, "runs": {}, "differences": {},
                           "left_out": len({p for p, _ in units if p not in subjects})}
    for k in groups:
        key = str(k)
        group = [u for u in units if subjects.get(u[0]) == k]
        weights = bootstrap_weights(group, cfg.n_boot, cfg.seed, cfg.scheme)  # (B, len(group))
        out["groups"][key] = {"n_prompts": len({p for p, _ in group}), "n_videos": len(group)}
        for name, r in runs.items():
            if set(r.units) & set(group):
                out["runs"].setdefault(name, {})[key] = {
                    m: run_interval(r, dim_index(m), weights, group, cfg.level, cfg.seed).to_dict() for m in SUMMARY}
        for ref in references:
            if ref not in runs:
                continue
            for name, r in runs.items():
                if name in (ref, ORACLE) or not set(r.units) & set(runs[ref].units) & set(group):
                    continue
                cell = {}
                for m in SUMMARY:
                    paired = pair_on(r, runs[ref], m, weights, group, by_replicate, cfg.seed)
                    if paired is None:
                        cell[m] = {"estimate": None, "lo": None, "hi": None, "verdict": NO_SHARED_REPLICATE,
                                   "n_paired": 0, "p_raw": None}
                        continue
                    iv = paired.interval(cfg.level)
                    cell[m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": paired.n_paired,
                               "p_raw": bootstrap_p_value(paired)}
                out["differences"].setdefault(ref, {}).setdefault(name, {})[key] = cell
    return out


def compare(runs: dict[str, RunScores], references: Iterable[str], cfg: StatsConfig,
            primary: Sequence[Claim] = (), subjects: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Every number of the comparison (the body of comparison.json); `primary` are the pre-registered claims;
    `subjects` ({prompt id: how many subjects it names}) adds the exploratory breakdown `by_subjects`."""
    references = list(references)  # read once per run
    if not runs:
        raise ValueError("no runs to compare")
    units = sorted(set().union(*(r.units for r in runs.values())))
    weights = bootstrap_weights(units, cfg.n_boot, cfg.seed, cfg.scheme)  # (B, V): one draw shared by every run
    out_runs: dict[str, Any] = {}
    replicates = cfg.seed  # training seeds resampled too, with this rng seed (evaluation/statistics.py)
    for name, r in runs.items():
        metrics = {}
        for m in METRICS:
            iv = run_interval(r, dim_index(m), weights, units, cfg.level, replicates)
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
    by_replicate = replicates_of_the_pipeline(runs)

    def pair_rows(a: RunScores, b: RunScores, m: str) -> PairedReplicates | None:
        """a - b on metric m on the shared resamples; None across lab replicates (replicates_of_the_pipeline)."""
        return pair_on(a, b, m, weights, units, by_replicate, replicates)

    def pair(a: str, b: str, m: str) -> PairedReplicates | None:  # a claim's paired difference
        return pair_rows(runs[a], runs[b], m) if a in runs and b in runs else None

    def unpaired(c: Claim) -> str:
        return "not run" if c.a not in runs or c.b not in runs else NO_SHARED_REPLICATE

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
                paired = pair_rows(r, runs[ref], m)
                if paired is None:
                    diffs[ref][name][m] = {"estimate": None, "lo": None, "hi": None, "verdict": NO_SHARED_REPLICATE,
                                           "n_paired": 0, "half_width": None}
                    continue
                iv = paired.interval(cfg.level)
                diffs[ref][name][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": paired.n_paired,
                                       "half_width": half_width(iv)}
    claims = evaluate_claims(runs, pair, cfg.level, primary)
    primary_claims = {**decide_primary(primary, pair, cfg.level, row_label, unpaired),
                      "half_widths": half_widths_reached(diffs)}
    result = {
        "statistics": {"n_boot": cfg.n_boot, "level": cfg.level, "scheme": cfg.scheme, "seed": cfg.seed,
                       "train_seeds": "resampled",
                       "n_units": len(units), "n_prompts": len({p for p, _ in units})},
        "runs": out_runs,
        "differences": diffs,
        "primary_claims": primary_claims,
        "claims": claims,
    }
    breakdown = by_subjects(runs, references, subjects, cfg) if subjects else None
    if breakdown:
        result["by_subjects"] = breakdown
    return result
