"""`sara compare`: the controlled comparison of every evaluated run with intervals (evaluation/comparison.py).

Reads the per-video rubric records under `rubric.out_dir` (training seed k of a run in `<run>.seed<k>/`) and the
mechanism readouts under `comparison.mechanism_dir` when present; writes `comparison.out_dir` atomically
(comparison.md, comparison.json, figures/) and logs it as artifacts of the MLflow run `compare`.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "train", "rubric", "comparison"]


def run(params: Params) -> dict:
    from evaluation.comparison import StatsConfig, build_comparison
    from sara.io import atomic_dir
    from sara.tracking import SCALE_NOTE, log_artifact, log_metrics, stage_run

    c = params.comparison
    out = Path(c.out_dir)
    note = SCALE_NOTE.get(params.project.scale, params.project.scale)
    with stage_run("compare", params, SECTIONS):
        with atomic_dir(out) as tmp:
            result = build_comparison(
                Path(params.rubric.out_dir), tmp, runs=c.runs, references=c.references, protocol=c.protocol,
                cfg=StatsConfig(c.n_boot, c.level, c.scheme, c.seed), default_train_seed=params.train.seed, note=note,
                grid_frames=c.grid_frames, mechanism_dir=Path(c.mechanism_dir),
            )
        # the claims' differences as metrics of this one run (the per-run means live on each run's own rubric run)
        log_metrics({f"compare/{x['a']}_vs_{x['b']}/{x['metric']}": x["difference"]["estimate"]
                     for x in result["claims"] if "difference" in x and x["difference"]["estimate"] is not None})
        log_artifact(out, "comparison")
        print((out / "comparison.md").read_text())
    return result
