"""`sara compare`: the controlled comparison of every evaluated run with intervals (evaluation/comparison/).

Reads the per-video rubric records under `rubric.out_dir` (training seed k of a run in `<run>.seed<k>/`) and the
mechanism readouts `<run>.json` under `comparison.mechanism_dir` (default `mechanism.out_dir`, what the DAG's
`mechanism-<run>` stages write) when present; writes `comparison.out_dir` atomically (comparison.md,
comparison.json, figures/).

MLflow: one parent run `compare` (the files as artifacts, the paper's orderings as `compare/<a>_vs_<b>/<metric>`)
and one child per run and training seed, `compare/<run>/seed<k>` (`compare/base`, `compare/oracle`: no training
seed), with the run's identity as params (method, routing_op, seed, lam_trd, protocol) and its numbers as metrics,
so the UI shows runs and routing operators side by side as columns. Child metrics, under `compare/<protocol>/`:
- this training seed: `TA_mean`, `TA_lo`, `TA_hi` (the same for MQ), `n_videos`, `n_prompts`, and against each
  reference `vs_<ref>/TA_diff`, `vs_<ref>/TA_diff_lo`, `vs_<ref>/TA_diff_hi`, `vs_<ref>/n_paired` (the same for MQ;
  a run with a TRD target is spelled by its stage id there, `vs_videorepa-oracle`: MLflow keys take no `@`);
- the run over all its training seeds (the numbers of comparison.md): the same names under `all_seeds/`, plus
  `all_seeds/n_train_seeds` and `all_seeds/<dimension>` (per-dimension means), and, on the prompts that name k
  subjects (exploratory), `all_seeds/subjects_<k>/TA_mean` and `all_seeds/subjects_<k>/vs_<ref>/TA_diff`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sara.config import Params

# train.seed: the seed of <run>/; sample.prompt_set: how many subjects each prompt names (the breakdown by subjects)
SECTIONS = ["project", "train.seed", "sample.prompt_set", "rubric", "comparison", "mechanism.out_dir"]


def mechanism_dir(params: Params) -> str:
    """Where compare reads the mechanism readouts (also the DAG's compare deps, sara/pipeline.py)."""
    return params.comparison.mechanism_dir or params.mechanism.out_dir


def grid_prompts(params: Params) -> list[str] | None:
    """The prompt ids that get a qualitative grid (`comparison.grid_prompt_set`), None for every prompt."""
    from sara.data.prompts import load_prompt_set

    name = params.comparison.grid_prompt_set
    return None if name is None else [p.id for p in load_prompt_set(name)]


def subjects(params: Params) -> dict[str, int]:
    """{prompt id: how many subjects it names} of the sampled prompt set (`sample.prompt_set`)."""
    from evaluation.comparison.records import subject_counts
    from sara.data.prompts import load_prompt_set

    return subject_counts(load_prompt_set(params.sample.prompt_set))


def _block(prefix: str, metrics: dict, differences: dict[str, dict]) -> dict[str, float | None]:
    """TA/MQ with intervals and the paired differences against each reference, under `prefix`."""
    from evaluation.comparison.numbers import SUMMARY

    out: dict[str, float | None] = {}
    for m in SUMMARY:
        iv = metrics[m]
        out.update({f"{prefix}{m}_mean": iv["estimate"], f"{prefix}{m}_lo": iv["lo"], f"{prefix}{m}_hi": iv["hi"]})
        for ref, d in differences.items():
            key = f"{prefix}vs_{_metric_id(ref)}/{m}_diff"
            out.update({key: d[m]["estimate"], f"{key}_lo": d[m]["lo"], f"{key}_hi": d[m]["hi"],
                        f"{prefix}vs_{_metric_id(ref)}/n_paired": d[m]["n_paired"]})
    return out


def child_metrics(result: dict[str, Any], run: str, train_seed: str | None) -> dict[str, float | None]:
    """The metrics of the child run of `run` (and training seed `train_seed`; None for base and oracle)."""
    r, proto = result["runs"][run], result["protocol"]
    pre = f"compare/{proto}/"
    pooled = {ref: d[run] for ref, d in result["differences"].items() if run in d}
    out = _block(f"{pre}all_seeds/", r["metrics"], pooled)
    out.update(subject_metrics(result, run, f"{pre}all_seeds/"))
    out.update({f"{pre}all_seeds/{dim}": v["estimate"] for dim, v in r["metrics"].items() if dim not in ("TA", "MQ")})
    out[f"{pre}all_seeds/n_train_seeds"] = len(r["train_seeds"])
    one = r["per_train_seed"][train_seed] if train_seed is not None else {"metrics": r["metrics"], "differences": pooled}
    out.update(_block(pre, one["metrics"], one["differences"]))
    out.update({f"{pre}n_videos": r["n_videos"], f"{pre}n_prompts": r["n_prompts"]})
    return out


def subject_metrics(result: dict[str, Any], run: str, prefix: str) -> dict[str, float | None]:
    """The run's TA on the prompts that name k subjects and its paired TA differences against each reference
    (comparison.json's exploratory `by_subjects`): `<prefix>subjects_<k>/TA_mean` (`_lo`, `_hi`) and
    `<prefix>subjects_<k>/vs_<ref>/TA_diff` (`_lo`, `_hi`); nothing without the breakdown."""
    block = result.get("by_subjects")
    if not block:
        return {}
    out: dict[str, float | None] = {}
    for k, per in block["runs"].get(run, {}).items():
        iv = per["TA"]
        key = f"{prefix}subjects_{k}/TA"
        out.update({f"{key}_mean": iv["estimate"], f"{key}_lo": iv["lo"], f"{key}_hi": iv["hi"]})
    for ref, per_run in block["differences"].items():
        for k, cell in per_run.get(run, {}).items():
            d, key = cell["TA"], f"{prefix}subjects_{k}/vs_{_metric_id(ref)}/TA_diff"
            out.update({key: d["estimate"], f"{key}_lo": d["lo"], f"{key}_hi": d["hi"]})
    return out


def _metric_id(row: str) -> str:
    """A row's name as an MLflow metric key may spell it (no `@`): the run's stage id, `sara-or-oracle`."""
    from sara.runs import Run, parse_row

    parsed = parse_row(row)
    return parsed.stage_id if isinstance(parsed, Run) else parsed


def primary_metrics(block: dict[str, Any]) -> dict[str, float | None]:
    """The pre-registered claims on the parent run: `compare/primary/<i>_<a>_vs_<b>/<metric>/{diff,half_width,
    p_raw,p_holm,holds}` (i: the claim's place in comparison.claims; a and b as stage ids, `sara-or-oracle`)."""
    out: dict[str, float | None] = {}
    for i, c in enumerate(block["claims"], 1):
        key = f"compare/primary/{i}_{_metric_id(c['a'])}_vs_{_metric_id(c['b'])}/{c['metric']}"
        d = c["difference"] or {}
        out.update({f"{key}/diff": d.get("estimate"), f"{key}/half_width": c["half_width"], f"{key}/p_raw": c["p_raw"],
                    f"{key}/p_holm": c["p_holm"], f"{key}/holds": float(c["verdict"] == "holds")})
    return out


def log_children(params: Params, result: dict[str, Any]) -> int:
    """One child run per (run, training seed) under the active `compare` run; returns how many."""
    from sara.tracking import child_run, log_metrics, run_identity

    n = 0
    for run, r in result["runs"].items():
        for seed in r.get("per_train_seed") or [None]:
            identity, tags = run_identity(params, run, None if seed is None else int(seed))
            name = f"compare/{run}" if seed is None else f"compare/{run}/seed{seed}"
            with child_run(name, params={**identity, "protocol": result["protocol"]},
                           tags={**tags, "sara.train_seed": seed or "none"}):
                log_metrics(child_metrics(result, run, seed))
            n += 1
    return n


def compare_records(params: Params, rubric_dir: Path, mechanism: Path, out: Path, grids: list[str] | None) -> dict:
    """The comparison of the rubric records under `rubric_dir` with the params' comparison section (the
    pre-registered claims included) into `out`; `grids`: the prompts that get a qualitative grid (videos needed)."""
    from evaluation.comparison import build_comparison
    from evaluation.comparison.numbers import StatsConfig
    from sara.claims import parse_claim
    from sara.tracking import SCALE_NOTE

    c = params.comparison
    return build_comparison(
        rubric_dir, out, runs=c.runs, references=c.references, protocol=c.protocol,
        cfg=StatsConfig(c.n_boot, c.level, c.scheme, c.seed), default_train_seed=params.train.seed,
        note=SCALE_NOTE.get(params.project.scale, params.project.scale), grid_frames=c.grid_frames,
        mechanism_dir=mechanism, primary=[parse_claim(x) for x in c.claims], grid_prompts=grids,
        subjects=subjects(params))


def run(params: Params) -> dict:
    from sara.io import atomic_dir
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.comparison.out_dir)
    with stage_run("compare", params, SECTIONS):
        with atomic_dir(out) as tmp:
            result = compare_records(params, Path(params.rubric.out_dir), Path(mechanism_dir(params)), tmp,
                                     grid_prompts(params))
        # the claims' differences on the parent; each run's (and training seed's) numbers on its own child
        log_metrics({f"compare/{_metric_id(x['a'])}_vs_{_metric_id(x['b'])}/{x['metric']}": x["difference"]["estimate"]
                     for x in result["claims"] if "difference" in x and x["difference"]["estimate"] is not None})
        log_metrics(primary_metrics(result["primary_claims"]))
        n = log_children(params, result)
        log_artifact(out, "comparison")
        print((out / "comparison.md").read_text())
        print(f"[compare] MLflow: parent run `compare` with {n} child runs (one per run and training seed)")
    return result
