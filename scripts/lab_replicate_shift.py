"""Does the lab pipeline reproduce a row? For every row of a merged results folder (scripts/lab_merge_seeds.py)
that has several replicates, the paired difference between each later replicate and the first, over the same
prompts and sampling seeds, with its bootstrap interval (evaluation/statistics.py).

    python scripts/lab_replicate_shift.py MERGED --out docs/lab/replicate_shift.md --plot docs/lab/replicate_shift.png

Two runs of one command are two replicates of the whole pipeline when the GPU's kernels are not deterministic
(docs/lab/replicates.md). A shift whose interval excludes zero is a row the pipeline did not reproduce; the
paired differences between methods of one replicate are of that size or smaller, so a single replicate cannot
decide them. A second table gives, per row in two or more replicates with a base, the row minus its own
replicate's base in each replicate, the spread of that between replicates, and the replicates a claim of that
kind would need to resolve `--effect` (0.03 by default) if the spread held.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def replicated_rows(rubric_dir: Path, train_seed: int) -> dict:
    """{row: RunScores over its replicates} for every row in two or more replicates, read once.
    `train_seed`: the label of the plain `<run>/` folders (the first run's train.seed)."""
    from evaluation.comparison.records import discover_runs, load_run

    return {run: load_run(run, seed_dirs, "grounded")[0]
            for run, seed_dirs in discover_runs(rubric_dir, default_seed=train_seed).items() if len(seed_dirs) >= 2}


def replicate_shifts(rows: dict, train_seed: int, n_boot: int = 2000, level: float = 0.95, seed: int = 0
                     ) -> list[dict]:
    """One entry per (row, later replicate, metric): the row's replicate minus the first run's (`train_seed`),
    paired."""
    from evaluation.comparison.claims import dim_index
    from evaluation.comparison.numbers import one_seed
    from evaluation.statistics import bootstrap_p_value, bootstrap_weights, paired_replicates

    out = []
    for run, scores in rows.items():
        units = list(scores.units)
        weights = bootstrap_weights(units, n_boot, seed, "prompt")  # (B, V)
        ref = scores.train_seeds.index(train_seed) if train_seed in scores.train_seeds else 0  # the first run's
        first = one_seed(scores, ref)
        for k in (k for k in range(len(scores.train_seeds)) if k != ref):
            for metric in ("TA", "MQ"):
                pair = paired_replicates(one_seed(scores, k), first, dim_index(metric), weights, units)
                iv = pair.interval(level)
                out.append({"run": run, "replicate": scores.train_seeds[k], "against": scores.train_seeds[ref],
                            "metric": metric, "shift": iv.estimate, "lo": iv.lo, "hi": iv.hi,
                            "p": bootstrap_p_value(pair), "n_paired": pair.n_paired})
    return out


def replicate_values(rows: dict, metric: str = "TA", n_boot: int = 2000, level: float = 0.95,
                     seed: int = 0) -> dict[str, dict[int, dict]]:
    """{row: {replicate: its metric with a prompt-bootstrap interval}}."""
    from evaluation.comparison.claims import dim_index
    from evaluation.comparison.numbers import one_seed
    from evaluation.statistics import bootstrap_weights, run_interval

    out: dict[str, dict[int, dict]] = {}
    for run, scores in rows.items():
        units = list(scores.units)
        weights = bootstrap_weights(units, n_boot, seed, "prompt")  # (B, V)
        out[run] = {t: run_interval(one_seed(scores, k), dim_index(metric), weights, units, level).to_dict()
                    for k, t in enumerate(scores.train_seeds)}
    return out


def plot_replicates(values: dict[str, dict[int, dict]], path: Path, metric: str = "TA") -> None:
    """Each row's replicates side by side, each with its 95% interval: a row the pipeline reproduced has
    overlapping bars at one height."""
    from evaluation.comparison.figures import _plt
    from sara.runs import row_label

    plt = _plt()
    labels = sorted({t for per in values.values() for t in per})
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.7 * len(values)))
    for i, (run, per) in enumerate(values.items()):
        for j, t in enumerate(labels):
            if t not in per:
                continue
            iv, y = per[t], i + (j - (len(labels) - 1) / 2) * 0.18
            ax.errorbar(iv["estimate"], y, xerr=[[iv["estimate"] - iv["lo"]], [iv["hi"] - iv["estimate"]]], fmt="o",
                        color=f"C{j}", capsize=3, label=f"replicate {t}")
    ax.set_yticks(range(len(values)), [row_label(r) for r in values])
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} (grounded judge), 95% interval over prompts")
    ax.set_title("Each row per replicate of the lab pipeline (unpaired intervals)", fontsize=10)
    handles, names = ax.get_legend_handles_labels()
    unique = dict(zip(names, handles))  # one entry per replicate
    ax.legend(unique.values(), unique.keys(), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def base_differences(rows: dict, effect: float, metric: str = "TA") -> list[dict]:
    """Per row trained in two or more replicates that also have a base: the row minus its own replicate's base,
    per replicate (what Stage 2 did to the model there), the spread of that between replicates (sd, ddof 1), and
    the replicates a claim of that kind would need to resolve a difference of `effect` at 95% if the spread held:
    n = ceil((1.96 sd / effect)^2), the normal approximation (a t-interval over so few replicates needs more)."""
    from evaluation.comparison.claims import dim_index
    from evaluation.comparison.numbers import with_seeds
    from evaluation.statistics import metric_value
    from sara.runs import BASE, ORACLE

    if BASE not in rows:
        return []
    base = rows[BASE]
    out = []
    for run, scores in rows.items():
        if run in (BASE, ORACLE):
            continue
        shared = [s for s in scores.train_seeds if s in base.train_seeds]
        if len(shared) < 2:
            continue
        per = {s: float(metric_value(with_seeds(scores, [s]).values, dim_index(metric))[0]
                        - metric_value(with_seeds(base, [s]).values, dim_index(metric))[0]) for s in shared}
        sd = float(np.std(list(per.values()), ddof=1))
        out.append({"run": run, "metric": metric, "per_replicate": per, "sd": sd,
                    "effect": effect, "replicates_needed": math.ceil((1.96 * sd / effect) ** 2)})
    return out


def base_markdown(rows: list[dict]) -> str:
    from sara.runs import row_label

    out = ["| row | metric | row - its replicate's base, per replicate | sd between replicates | "
           "replicates to resolve |", "|---|---|---|---|---|"]
    for r in rows:
        per = ", ".join(f"{v:+.3f} ({k})" for k, v in r["per_replicate"].items())
        out.append(f"| {row_label(r['run'])} | {r['metric']} | {per} | {r['sd']:.3f} | "
                   f"{r['replicates_needed']} for {r['effect']:.2f} |")
    return "\n".join(out) + "\n"


def markdown(rows: list[dict], level: float) -> str:
    from sara.runs import row_label

    pct = int(round(100 * level))
    out = [f"| row | replicates | metric | shift [{pct}% CI] | p | reproduced? |", "|---|---|---|---|---|---|"]
    for r in rows:
        same = r["lo"] <= 0.0 <= r["hi"]
        out.append(f"| {row_label(r['run'])} | {r['replicate']} - {r['against']} | {r['metric']} | "
                   f"{r['shift']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}] | {r['p']:.3f} | "
                   f"{'yes (no difference)' if same else '**no**'} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("merged", type=Path, help="a merged results folder (outputs/rubric/<run>.seed<k>/)")
    ap.add_argument("--out", type=Path, help="write the table here (markdown); stdout without it")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--effect", type=float, default=0.03, help="the difference a claim should resolve (TA points)")
    ap.add_argument("--plot", type=Path, help="also draw each row per replicate with its interval (PNG)")
    ap.add_argument("--params", type=Path, default=ROOT / "configs" / "lab.yaml",
                    help="the first run's params: train.seed labels its replicate")
    args = ap.parse_args(argv)
    rubric = args.merged / "outputs" / "rubric"
    try:
        train_seed = int(yaml.safe_load(args.params.read_text())["train"]["seed"])
        replicated = replicated_rows(rubric, train_seed)
        rows = replicate_shifts(replicated, train_seed, args.n_boot)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not rows:
        print(f"error: no row of {rubric} has two replicates (merge runs first: scripts/lab_merge_seeds.py)",
              file=sys.stderr)
        return 2
    table = markdown(rows, 0.95)
    against_base = base_differences(replicated, args.effect)
    if against_base:
        table += "\n" + base_markdown(against_base)
    if args.plot:
        plot_replicates(replicate_values(replicated, n_boot=args.n_boot), args.plot)
        print(f"wrote {args.plot}")
    if args.out:
        args.out.write_text(table)
        print(f"wrote {args.out}")
    else:
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
