"""`sara study build` (the DVC stage `study_build`): the blind study's pairs from the sampled videos.

Pairs the main run (`study.main_run`, default `report.main_run`) with each of `study.baselines` on every prompt and
sampling seed of `<sample.out_dir>/<run>/`, adds `study.attention_checks` attention checks, plans `study.raters`
raters (order, sides) and writes `<study.out_dir>/build/` atomically: study.json (the key; never served),
media/ (stripped copies under opaque ids), raters.txt (the rater ids to hand out). evaluation/study/build.py.
MLflow run `study_build`: metrics `study/pairs`, `study/attention_checks`, `study/raters`, raters.txt as artifact.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "sample.out_dir", "report.main_run", "study.main_run", "study.baselines", "study.raters",
            "study.attention_checks", "study.seed", "study.out_dir"]


def run(params: Params) -> dict:
    from evaluation.study.build import build_study, read_sources
    from evaluation.study.design import RATERS_FILE, StudyLayout
    from sara.io import atomic_dir
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(StudyLayout(params.study.out_dir).build)
    sources = read_sources(Path(params.sample.out_dir), params.study.main_run or params.report.main_run,
                           params.study.baselines)  # checked before a run opens: a missing sample opens none
    with stage_run("study_build", params, SECTIONS):
        with atomic_dir(out) as tmp:
            study = build_study(sources, raters=params.study.raters, attention_checks=params.study.attention_checks,
                                seed=params.study.seed, out=tmp)
        checks = sum(p.kind == "attention" for p in study.pairs)
        log_metrics({"study/pairs": len(study.pairs) - checks, "study/attention_checks": checks,
                     "study/raters": len(study.plans)})
        log_artifact(out / RATERS_FILE)
    return {"pairs": len(study.pairs), "raters": len(study.plans)}
