"""`sara report`: the paper's Tables 1, 2, 3, 5, 6 from the per-run rubric and VBench outputs (evaluation/report.py).

Aggregates whatever runs were evaluated: every `<rubric.out_dir>/<run>/summary.json` (and the oracle's) and
every `<vbench.out_dir>/<run>/summary.json`. Writes `report.out_dir` (report.md + one CSV per table) and
`<out_dir>_plots/` (PNG plots: per-dimension bars per method, method x operator heatmap; DVC image plots, rendered
offline by `dvc plots show`); logs all files to the MLflow run `report`. The numbers themselves are logged once,
by the per-run stages (`rubric/<run>`, `vbench/<run>`), never again here.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "rubric", "vbench", "report"]


def gather(params: Params) -> tuple[dict, dict]:
    """(rubric view, vbench view) of every evaluated run, as `evaluation.report.build_report` reads them."""
    import json

    from evaluation.rubric.summaries import list_runs_with, merge_runs, read_run_summaries
    from sara.stages.vbench import merge_runs as merge_vbench

    rubric_dir = Path(params.rubric.out_dir)
    summaries = read_run_summaries(rubric_dir)
    if not summaries:
        raise FileNotFoundError(f"no {rubric_dir}/<run>/summary.json found: run `sara rubric --run <run>` first")
    vbench_dir = Path(params.vbench.out_dir)
    vbench = [json.loads((vbench_dir / r / "summary.json").read_text()) for r in list_runs_with(vbench_dir, "summary.json")]
    return merge_runs(summaries), merge_vbench(vbench)


def run(params: Params) -> dict:
    from evaluation.report import build_report
    from sara.io import atomic_dir
    from sara.tracking import SCALE_NOTE, log_artifact, stage_run

    out = Path(params.report.out_dir)
    plots = out.with_name(out.name + "_plots")
    rubric, vbench = gather(params)
    with stage_run("report", params, SECTIONS, tags={"sara.report_runs": ",".join(rubric["runs"])}):
        with atomic_dir(out) as tmp, atomic_dir(plots) as tmp_plots:
            metrics = build_report(rubric, vbench, params.report.main_run, SCALE_NOTE[params.project.scale], tmp, tmp_plots)
        log_artifact(out, "report")
        log_artifact(plots, "report_plots")
        print((out / "report.md").read_text())
    return metrics
