"""`sara study report` (the DVC stage `study_report`): Fig. 5 from the votes (evaluation/study/report.py).

Votes: with `study.rater: scripted` the scripted raters (the grounded judge's stand-in, evaluation/study/rater.py)
rate the build now, into `<study.out_dir>/report/votes.sqlite`; with `human`, the people's votes in `study.db`
(written by `sara study serve`; a DVC dep of this stage then). Writes `<study.out_dir>/report/` (study.md,
study.json, votes.csv), `<study.out_dir>/plots/fig5.png` and the DVC metrics `<study.out_dir>/metrics.json`.
MLflow run `study_report` (tag `sara.study.rater`): metrics `study/<baseline>/win`, `.../tie`, `.../loss` (percent,
with `_lo` / `_hi`), `study/<baseline>/n_votes`, `.../sign_p`, `.../sign_p_prompts`, `study/alpha_ordinal`,
`study/alpha_nominal`, `study/attention_pass_rate`, `study/raters_kept`, `study/raters_excluded`, `study/votes`;
artifacts `study/fig5.png` and the report folder under `study/`.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "study.rater", "study.db", "study.scripted_noise", "study.scripted_tie_margin",
            "study.max_failed_checks", "study.n_boot", "study.level", "study.seed", "study.out_dir"]
RATER_NOTE = {"scripted": "scripted raters: votes by the grounded judge's scores, a stand-in for people",
              "human": "people rating blind through `sara study serve`"}


def run(params: Params) -> dict:
    from evaluation.study.design import MEDIA_DIR, StudyLayout, load_study
    from evaluation.study.rater import scripted_votes
    from evaluation.study.report import analyse, metrics, write_report
    from evaluation.study.session import Session
    from evaluation.study.store import VoteStore, read_votes
    from sara.io import atomic_dir, write_json
    from sara.runs import row_label
    from sara.stages.per_run import nest
    from sara.tracking import SCALE_NOTE, log_artifact, log_metrics, stage_run

    s = params.study
    layout = StudyLayout(s.out_dir)
    study = load_study(layout.build)
    note = f"{RATER_NOTE[s.rater]}; {SCALE_NOTE[params.project.scale]}"
    with stage_run("study_report", params, SECTIONS, tags={"sara.study.rater": s.rater}):
        with atomic_dir(layout.report) as tmp, atomic_dir(layout.plots) as tmp_plots:
            if s.rater == "scripted":
                store = VoteStore(tmp / "votes.sqlite", study.fingerprint)
                try:
                    scripted_votes(Session(study, store), Path(layout.build) / MEDIA_DIR, noise=s.scripted_noise,
                                   tie_margin=s.scripted_tie_margin, seed=s.seed)
                    votes = store.votes()
                finally:
                    store.close()
            else:
                votes = read_votes(s.db, study.fingerprint)
            result = analyse(study, votes, rater_kind=s.rater, n_boot=s.n_boot, level=s.level, seed=s.seed,
                             max_failed_checks=s.max_failed_checks)
            labels = {r: "SARA" if r == study.main_run else row_label(r)
                      for r in (study.main_run, *study.baselines)}  # the paper's names, as in the report
            write_report(result, study, votes, labels, note, tmp, tmp_plots)
        numbers = metrics(result)
        write_json(layout.metrics, {"study": nest(numbers)})
        log_metrics({f"study/{k}": v for k, v in numbers.items()})
        log_artifact(Path(layout.plots) / "fig5.png", "study")
        log_artifact(layout.report, "study/report")
        print((Path(layout.report) / "study.md").read_text())
    return result
