"""The controlled comparison: the paper's Tables 1, 3, 5 and 6 with bootstrap intervals, training-seed spread and
paired differences against the reference runs, the orderings the paper claims, and the figures.

One module per job: records.py reads the per-video rubric records `<rubric_dir>/<run>/<prompt>_s<seed>.json`
(written by `sara rubric`; a run's other training seeds in `<run>.seed<k>/`) and the mechanism readouts;
numbers.py computes every number (statistics: evaluation/statistics.py; the interval, the resampling unit and the
pairing are documented there); primary.py decides the pre-registered claims of `comparison.claims` with a
correction for multiplicity; claims.py reads the paper's other orderings, exploratory; markdown.py and figures.py
present them.
Run names and the row order come from the run vocabulary (sara/runs.py).

Outputs (`comparison.out_dir`): `comparison.md` (docs-ready tables), `comparison.json` (every number of the
tables: per-run means, intervals, n_videos, training seeds, spread, paired differences, orderings; per training
seed of a run its own TA/MQ intervals and paired differences), and
`figures/`: `dims_<protocol>.png` (per-dimension bars with intervals), `operator_heatmap_<protocol>.png`,
`subjects_<protocol>.png` (paired TA differences by how many subjects a prompt names, when the prompts are known), and
`qualitative/<prompt>.png` (the methods side by side over time, one row per method).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from evaluation.comparison.figures import (heatmap_targets, plot_claims, plot_dims, plot_operator_heatmap, plot_subjects,
                                          write_qualitative)
from evaluation.comparison.markdown import render_markdown
from evaluation.comparison.numbers import StatsConfig, compare
from evaluation.comparison.records import discover_runs, load_run, read_mechanism
from sara.claims import Claim
from sara.runs import DEFAULT_TARGET, TARGETS


def build_comparison(
    rubric_dir: Path,
    out: Path,
    *,
    runs: list[str] | None,
    references: list[str],
    protocol: str,
    cfg: StatsConfig,
    default_train_seed: int,
    note: str,
    grid_frames: int = 8,
    mechanism_dir: Path | None = None,
    primary: Sequence[Claim] = (),
    grid_prompts: Iterable[str] | None = None,
    subjects: Mapping[str, int] | None = None,
    log=print,
) -> dict[str, Any]:
    """Read the rubric records, compute the comparison and write comparison.md, comparison.json and figures/.
    `subjects` ({prompt id: how many subjects it names}, records.subject_counts) adds the breakdown by subjects."""
    found = discover_runs(rubric_dir, default_train_seed)
    if runs is not None:
        missing = [r for r in runs if r not in found]
        if missing:
            raise FileNotFoundError(f"comparison.runs: no rubric records for {', '.join(missing)} under {rubric_dir}")
        found = {r: found[r] for r in runs}
    scores, videos = {}, {}
    for run, seed_dirs in found.items():
        scores[run], videos[run] = load_run(run, seed_dirs, protocol)
        log(f"[compare] {run:10s} training seeds {list(seed_dirs)} videos {len(scores[run].units)}")
    result = compare(scores, references, cfg, primary, subjects)
    result.update(protocol=protocol, note=note, rubric_dir=str(rubric_dir))
    mech = read_mechanism(mechanism_dir, found) if mechanism_dir is not None else {}
    if mech:
        result["mechanism"] = mech
    out.mkdir(parents=True, exist_ok=True)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    plot_dims(result, figs / f"dims_{protocol}.png", f"Per-dimension {protocol} rubric scores with {int(100 * cfg.level)}% intervals")
    for target in heatmap_targets(result):  # one map per TRD target: operator_heatmap_<protocol>[_<target>].png
        suffix = "" if target == DEFAULT_TARGET else f"_{target}"
        plot_operator_heatmap(result, figs / f"operator_heatmap_{protocol}{suffix}.png",
                              f"Method x routing operator ({protocol} judge, {TARGETS[target].label})", target)
    plot_claims(result, figs / f"claims_{protocol}.png",
                f"Pre-registered claims ({protocol} judge, Holm-Bonferroni)")
    plot_subjects(result, figs / f"subjects_{protocol}.png",
                  f"Paired TA differences by number of subjects ({protocol} judge; exploratory)")
    write_qualitative(videos, figs / "qualitative", grid_frames, grid_prompts)
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    (out / "comparison.md").write_text(render_markdown(result, protocol, note, mech))
    return result
