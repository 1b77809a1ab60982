"""`sara report`: the paper's Tables 1, 2, 3, 5, 6 from our rubric and VBench outputs (evaluation/report.py).

Writes `report.out_dir` (report.md + one CSV per table), `<out_dir>_plots/` (PNG plots: per-dimension bars per
method, method x operator heatmap; DVC image plots, rendered offline) and `<out_dir>_metrics.json` (DVC
metrics); logs the metrics and all files to the MLflow run `report`.
"""

from __future__ import annotations

import json
from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "rubric", "vbench", "report"]


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def run(params: Params) -> dict:
    from sara.io import atomic_dir, write_json
    from evaluation.report import build_report
    from sara.tracking import SCALE_NOTE, log_artifact, log_metrics, stage_run

    out = Path(params.report.out_dir)
    plots = out.with_name(out.name + "_plots")
    rubric = _read(Path(params.rubric.out_dir) / "summary.json")
    if not rubric:
        raise FileNotFoundError(f"{params.rubric.out_dir}/summary.json not found: run `sara rubric` first")
    vbench = _read(Path(params.vbench.out_dir) / "summary.json")
    with stage_run("report", params, SECTIONS):
        with atomic_dir(out) as tmp, atomic_dir(plots) as tmp_plots:
            metrics = build_report(rubric, vbench, params.report.main_run, SCALE_NOTE[params.project.scale], tmp, tmp_plots)
        write_json(out.with_name(out.name + "_metrics.json"), metrics)
        log_metrics(metrics)
        log_artifact(out, "report")
        log_artifact(plots, "report_plots")
        print((out / "report.md").read_text())
    return metrics
