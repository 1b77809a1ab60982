"""The blind side-by-side user study of the paper's Fig. 5: the main run against each baseline, win / tie / loss.

Modules, one job each:
- design.py   the study file: pairs, opaque ids, every rater's order and sides (what `sara study build` writes);
- media.py    videos a rater may see: metadata stripped by a lossless re-mux, the corrupted attention-check copy;
- build.py    the build from the sampled videos (`sara study-build`, DVC stage `study_build`);
- store.py    the votes in SQLite (WAL): one row per vote, committed before the next pair is shown;
- session.py  the rules shared by the web page and the scripted rater: what a rater sees next, which vote counts;
- page.py     the rater's page (HTML, CSS, JavaScript in one document);
- server.py   the local web server (`sara study serve`, FastAPI + uvicorn, 127.0.0.1 by default);
- rater.py    the scripted rater: votes by grounded-judge scores, a stand-in for people, never a person;
- stats.py    bootstrap over prompts and raters, sign test, Krippendorff's alpha, votes needed for an interval;
- report.py   Fig. 5's table and figure, the vote export (`sara study-report`, DVC stage `study_report`).
docs/evaluation.md#blind-user-study describes how to run a study with people.
"""
