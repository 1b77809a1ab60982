"""Fig. 5 from the votes: win / tie / loss of the main run against each baseline, with intervals and checks.

Exclusion rule (stated in every output): a rater is kept when they answered at least one attention check and
failed at most `max_failed_checks` of those they answered; choosing the corrupted video or a tie fails a check.
Only kept raters' compare votes enter the table, the tests and the agreement; the attention pass rate is over
every rater. Statistics: stats.py. Outputs (`write_report`):
  study.md    the table (percent, with intervals), sign tests, agreement, attention, votes needed
  study.json  the same numbers, per rater too
  votes.csv   the export: one row per vote, every rater (the format is documented in docs/evaluation.md)
  fig5.png    stacked bars, one per baseline (into the plots folder)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.study.design import Study
from evaluation.study.stats import (OUTCOMES, bootstrap_shares, design_effect, krippendorff_alpha, outcome, sign_test,
                                    votes_needed)
from evaluation.study.store import Vote

HALF_WIDTH = 0.05  # the interval half-width the "votes needed" column plans for (5 percentage points)
CODE = {"loss": 0.0, "tie": 1.0, "win": 2.0}  # ordinal coding for the agreement


def exclusion_rule(max_failed: int) -> str:
    return (f"a rater is kept when they answered at least one attention check and failed at most {max_failed} "
            f"(a tie or the corrupted video fails a check)")


def raters_summary(study: Study, votes: list[Vote], max_failed: int) -> dict[str, dict[str, Any]]:
    out = {r: {"votes": 0, "checks": 0, "passed": 0} for r in study.plans}
    for v in votes:
        row = out[v.rater]
        row["votes"] += 1
        if study.pair(v.pair).kind == "attention":
            row["checks"] += 1
            row["passed"] += outcome(v.left_side, v.choice) == "win"
    for row in out.values():
        row["kept"] = row["checks"] > 0 and row["checks"] - row["passed"] <= max_failed
    return out


def _pct(x: float) -> float | None:
    return None if not np.isfinite(x) else round(100.0 * float(x), 2)


def baseline_result(study: Study, votes: list[Vote], baseline: str, kept: list[str], n_boot: int, level: float,
                    seed: int) -> dict[str, Any]:
    mine = [(study.pair(v.pair), v) for v in votes if v.rater in kept and study.pair(v.pair).baseline == baseline]
    prompts = sorted({(p.prompt_id, p.seed) for p in study.pairs if p.baseline == baseline})
    p_idx, r_idx = {u: i for i, u in enumerate(prompts)}, {r: i for i, r in enumerate(kept)}
    counts = np.zeros((len(prompts), max(len(kept), 1), 3))  # (P, R, 3) votes per prompt, rater, outcome
    for pair, v in mine:
        counts[p_idx[(pair.prompt_id, pair.seed)], r_idx[v.rater], OUTCOMES.index(outcome(v.left_side, v.choice))] += 1
    boot = bootstrap_shares(counts, n_boot, level, seed)
    n = int(counts.sum())
    wins, ties, losses = (int(x) for x in counts.sum((0, 1)))
    per_prompt = counts.sum(1)  # (P, 3)
    win = float(boot["estimate"][0])
    deff = design_effect(win, boot["replicates"][:, 0], n) if n else None
    return {
        "n_votes": n, "n_prompts": len(prompts), "wins": wins, "ties": ties, "losses": losses,
        **{k: {"estimate": _pct(boot["estimate"][i]), "lo": _pct(boot["lo"][i]), "hi": _pct(boot["hi"][i])}
           for i, k in enumerate(OUTCOMES)},
        "sign_p": sign_test(wins, losses),
        "sign_p_prompts": sign_test(int((per_prompt[:, 0] > per_prompt[:, 2]).sum()),
                                    int((per_prompt[:, 0] < per_prompt[:, 2]).sum())),
        "design_effect": None if deff is None else round(deff, 3),
        "votes_needed": None if deff is None else votes_needed(min(max(win, 0.05), 0.95), HALF_WIDTH, level, max(deff, 1.0)),
    }


def agreement(study: Study, votes: list[Vote], kept: list[str]) -> dict[str, Any]:
    units = [p.id for p in study.pairs if p.kind == "compare"]
    u_idx, r_idx = {u: i for i, u in enumerate(units)}, {r: i for i, r in enumerate(kept)}
    data = np.full((len(kept), len(units)), np.nan)  # (raters, units), NaN = not rated
    for v in votes:
        if v.rater in r_idx and v.pair in u_idx:
            data[r_idx[v.rater], u_idx[v.pair]] = CODE[outcome(v.left_side, v.choice)]
    rated_twice = int((np.isfinite(data).sum(0) >= 2).sum())
    alpha = {m: krippendorff_alpha(data, m) if rated_twice else None for m in ("ordinal", "nominal")}
    return {"alpha_ordinal": alpha["ordinal"], "alpha_nominal": alpha["nominal"], "units": rated_twice,
            "raters": len(kept)}


def analyse(study: Study, votes: list[Vote], *, rater_kind: str, n_boot: int, level: float, seed: int,
            max_failed_checks: int) -> dict[str, Any]:
    raters = raters_summary(study, votes, max_failed_checks)
    kept = [r for r, row in raters.items() if row["kept"]]
    answered = sum(r["checks"] for r in raters.values())
    passed = sum(r["passed"] for r in raters.values())
    return {
        "main_run": study.main_run, "rater_kind": rater_kind, "fingerprint": study.fingerprint,
        "level": level, "n_boot": n_boot, "question": study.question,
        "exclusion_rule": exclusion_rule(max_failed_checks),
        "attention": {"answered": answered, "passed": passed, "pass_rate": _pct(passed / answered) if answered else None},
        "raters_kept": len(kept), "raters_excluded": sorted(set(raters) - set(kept)), "votes": len(votes),
        "raters": raters,
        "baselines": {b: baseline_result(study, votes, b, kept, n_boot, level, seed) for b in study.baselines},
        "agreement": agreement(study, votes, kept),
    }


def metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """Stable names, logged to MLflow with the prefix `study/`: `<baseline>/win` ... in percent."""
    out: dict[str, float | None] = {}
    for b, r in result["baselines"].items():
        for k in OUTCOMES:
            out.update({f"{b}/{k}": r[k]["estimate"], f"{b}/{k}_lo": r[k]["lo"], f"{b}/{k}_hi": r[k]["hi"]})
        out.update({f"{b}/n_votes": r["n_votes"], f"{b}/sign_p": r["sign_p"], f"{b}/sign_p_prompts": r["sign_p_prompts"]})
    a = result["agreement"]
    out.update({"alpha_ordinal": a["alpha_ordinal"], "alpha_nominal": a["alpha_nominal"],
                "attention_pass_rate": result["attention"]["pass_rate"], "raters_kept": result["raters_kept"],
                "raters_excluded": len(result["raters_excluded"]), "votes": result["votes"]})
    return out


def _fmt(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def markdown(result: dict[str, Any], labels: dict[str, str], note: str) -> str:
    main = labels[result["main_run"]]
    pct = int(round(100 * result["level"]))
    lines = [f"# Blind side-by-side study (paper Fig. 5): {main} against each baseline", "", f"_{note}_", "",
             f"Question: \"{result['question']}\"", "",
             f"| {main} vs | win % [{pct}% CI] | tie % | loss % | votes | sign test p (votes / prompts) | "
             f"votes for +-{int(HALF_WIDTH * 100)} pts |", "|---|---|---|---|---|---|---|"]
    for b, r in result["baselines"].items():
        cell = lambda k: f"{_fmt(r[k]['estimate'])} [{_fmt(r[k]['lo'])}, {_fmt(r[k]['hi'])}]"  # noqa: E731
        lines.append(f"| {labels[b]} | {cell('win')} | {cell('tie')} | {cell('loss')} | {r['n_votes']} | "
                     f"{_fmt(r['sign_p'], 3)} / {_fmt(r['sign_p_prompts'], 3)} | {r['votes_needed'] or '-'} |")
    a, att = result["agreement"], result["attention"]
    lines += [
        "", f"Intervals: percentile bootstrap over prompts and raters ({result['n_boot']} replicates). Sign tests: exact "
        "binomial on wins against losses (ties left out), over votes and over prompts (majority per prompt). "
        "Votes needed: for an interval of that half-width at the observed win share and design effect.",
        "", f"Agreement (compare pairs rated by two or more kept raters: {a['units']}; raters: {a['raters']}): "
        f"Krippendorff's alpha ordinal {_fmt(a['alpha_ordinal'], 3)}, nominal {_fmt(a['alpha_nominal'], 3)}.",
        "", f"Attention checks: {att['passed']} of {att['answered']} passed ({_fmt(att['pass_rate'])}%). Rule: "
        f"{result['exclusion_rule']}. Kept {result['raters_kept']} of {len(result['raters'])} raters"
        + (f"; excluded: {', '.join(result['raters_excluded'])}." if result["raters_excluded"] else "."),
        "", "| rater | votes | checks passed | kept |", "|---|---|---|---|",
        *(f"| {r} | {row['votes']} | {row['passed']}/{row['checks']} | {'yes' if row['kept'] else 'no'} |"
          for r, row in result["raters"].items()),
    ]
    return "\n".join(lines) + "\n"


EXPORT_COLUMNS = ("rater", "position", "pair", "kind", "prompt_id", "seed", "baseline", "left", "right", "choice",
                  "outcome", "voted_at", "rater_kept")


def export_votes(study: Study, votes: list[Vote], raters: dict[str, dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(EXPORT_COLUMNS)
        for v in votes:
            p = study.pair(v.pair)
            left, right = (p.a, p.b) if v.left_side == "a" else (p.b, p.a)
            result = outcome(v.left_side, v.choice)
            if p.kind == "attention":
                result = "pass" if result == "win" else "fail"
            w.writerow([v.rater, v.position, p.id, p.kind, p.prompt_id, p.seed, p.baseline or "", left.source,
                        right.source, v.choice, result, v.voted_at, "yes" if raters[v.rater]["kept"] else "no"])


def figure(result: dict[str, Any], labels: dict[str, str], path: Path, note: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(result["baselines"])
    colours = {"win": "#2f6db3", "tie": "#b8b8b8", "loss": "#d9822b"}
    main = labels[result["main_run"]]
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(rows) + 1.6))
    for y, b in enumerate(rows):
        left = 0.0
        for k in OUTCOMES:
            v = result["baselines"][b][k]["estimate"] or 0.0
            ax.barh(y, v, left=left, color=colours[k], edgecolor="white", label=k if y == 0 else None)
            if v >= 6:
                ax.text(left + v / 2, y, f"{v:.1f}%", ha="center", va="center", fontsize=9,
                        color="white" if k != "tie" else "black")
            left += v
    ax.set_yticks(range(len(rows)), [f"{main} vs {labels[b]}" for b in rows])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("votes (%)")
    ax.legend(["win", "tie", "loss"], ncol=3, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    fig.text(0.01, 0.01, note, fontsize=7, color="#555")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=130)
    plt.close(fig)


def write_report(result: dict[str, Any], study: Study, votes: list[Vote], labels: dict[str, str], note: str,
                 out: Path, plots: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    plots.mkdir(parents=True, exist_ok=True)
    (out / "study.md").write_text(markdown(result, labels, note))
    (out / "study.json").write_text(json.dumps(result, indent=1))
    export_votes(study, votes, result["raters"], out / "votes.csv")
    figure(result, labels, plots / "fig5.png", note)
