"""Rubric evaluation over sampled runs (grounded judge + a scripted VLM judge), then the paper-style report."""

from __future__ import annotations

import json

import numpy as np
import pytest

import evaluation.rubric.evaluate as rubric_evaluate
import sara.sample as sample_mod
from evaluation.report import build_report
from evaluation.rubric.dimensions import MQ_DIMS, TA_DIMS
from evaluation.rubric.evaluate import evaluate_all
from evaluation.vbench.scores import vb1_scores
from sara.config import load_params, params_from_dict
from sara.data.synthetic import SceneSpec, render
from sara.data.video_io import write_video
from sara.runs import NO_ROUTING


class ScriptedJudge:
    """A judge whose replies are fixed: every TA dim 4, MQ dims 2 except one invalid (camera_motion)."""

    def __init__(self, name: str):
        self.name = name

    def reply(self, group, d, frames, video_path):
        dims = TA_DIMS if group == "TA" else MQ_DIMS
        body = {dim: {"score": 4 if group == "TA" else 2, "reason": "scripted"} for dim in dims}
        if group == "MQ":
            body["camera_motion"] = {"score": "n/a"}
        return "```json\n" + json.dumps(body) + "\n```", ""


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    prompts = sample_mod.load_prompts("synthetic")[:2]
    monkeypatch.setattr(sample_mod, "load_prompts", lambda name: prompts)
    monkeypatch.setattr(rubric_evaluate, "load_prompts", lambda name: prompts)  # the rubric scores the same two
    raw = load_params("params.yaml").model_dump(mode="json")
    raw["sample"]["out_dir"] = str(tmp_path / "samples")
    raw["rubric"]["retries"] = 0
    p = params_from_dict(raw)
    s = p.sample
    for run, freeze in (("base", False), ("sft", True)):
        d = tmp_path / "samples" / run
        d.mkdir(parents=True)
        vids = []
        for it in prompts:
            frames, _, _ = render(SceneSpec.model_validate(it.spec), s.frames, s.height, s.width, s.fps)
            if freeze:
                frames = np.repeat(frames[:1], len(frames), 0)
            write_video(d / f"{it.id}_s0.mp4", frames, s.fps)
            vids.append({"prompt_id": it.id, "seed": 0, "mp4": f"{it.id}_s0.mp4"})
        (d / "index.json").write_text(json.dumps({"run": run, "videos": vids}))
    return p, tmp_path


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_rubric_scores_every_run_and_the_oracle_under_both_protocols(setup):
    p, tmp = setup
    summary = evaluate_all(p, tmp / "rubric", judges=[ScriptedJudge("j1"), ScriptedJudge("j2")])
    assert summary["runs"] == ["oracle", "base", "sft"]
    g = summary["protocols"]["grounded"]["runs"]
    assert g["oracle"]["TA"]["mean"] == 5.0 and g["oracle"]["MQ"]["mean"] == 5.0
    assert g["base"]["MQ"]["mean"] == 5.0  # the base "samples" here are the rendered truth itself
    assert g["sft"]["dims"]["motion_amplitude"]["mean"] < g["base"]["dims"]["motion_amplitude"]["mean"] and g["sft"]["dims"]["entity_count"]["mean"] == 5.0
    v = summary["protocols"]["vlm"]
    assert v["judges"] == ["j1", "j2"]
    assert v["runs"]["sft"]["TA"] == {"mean": 4.0, "vote": 4.0, "n_valid": 2 * 2 * 6, "n_dims": 6}
    assert g["oracle"]["TA"]["n_dims"] == 5  # no person in these prompts: person_appearance does not apply
    assert v["runs"]["sft"]["dims"]["camera_motion"] == {"mean": None, "vote": None, "n_valid": 0, "n_videos": 0}
    assert v["runs"]["sft"]["MQ"]["mean"] is None  # a dimension never valid: no MQ average, not a guessed one
    rec = json.loads((tmp / "rubric" / "sft" / "syn_01_s0.json").read_text())
    assert rec["judges"]["j1"]["MQ"]["invalid"]["camera_motion"].startswith("score 'n/a'")
    assert rec["judges"]["j1"]["TA"]["attempts"][0]["content"].startswith("```json")
    assert (tmp / "rubric" / "oracle" / "syn_01_s0.mp4").is_file() and (tmp / "rubric" / "oracle" / "syn_01_s0.png").is_file()


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_report_tables_name_their_judges_and_never_zero_fill(setup):
    p, tmp = setup
    summary = evaluate_all(p, tmp / "rubric", judges=[ScriptedJudge("j1")])
    v1 = vb1_scores({"temporal_flickering": 0.97})
    vbench = {"enabled": True, "vbench2": "off", "runs": {
        r: {"mode": "custom_input", "vbench1": {"raw": {"temporal_flickering": 0.97}, "missing": {"dynamic_degree": ["x/raft-things.pth (from y)"]}, "scores": v1}}
        for r in ("base", "sft")}}
    metrics = build_report(summary, vbench, "sara-or", "embedded default", tmp / "report", tmp / "plots")
    md = (tmp / "report" / "report.md").read_text()
    assert "Table 1 (grounded)" in md and "Table 1 (vlm)" in md and "Table 2: VBench" in md
    assert "VLM judges: j1" in md and "grounded judge: measured against the renderer's ground truth" in md
    assert "| Real video (oracle) | 5.0000 | 5.0000 | 5.0000 | 5.0000 | 2 |" in md
    assert "(partial 1/7)" in md and "dynamic_degree: x/raft-things.pth" in md
    t1 = (tmp / "report" / "table1_rubric_vlm.csv").read_text().splitlines()
    assert t1[0] == "Method,TA mean,TA vote,MQ mean,MQ vote,videos,n_valid"
    assert t1[2].split(",")[3] == "-"  # MQ has no valid average: shown as missing
    assert sorted(x.name for x in (tmp / "plots").iterdir()) == [
        "operator_heatmap_grounded.png", "operator_heatmap_vlm.png", "rubric_dims_grounded.png", "rubric_dims_vlm.png"]
    assert metrics["rubric.grounded.oracle.TA_mean"] == 5.0
    assert "vbench1.base.Quality_partial" in metrics and not any(k.endswith(".Total") for k in metrics)


def _stage_params(p, tmp):
    raw = p.model_dump(mode="json")
    raw["rubric"]["out_dir"] = str(tmp / "rubric")
    raw["vbench"]["out_dir"] = str(tmp / "vbench")
    raw["vbench"]["enabled"] = False
    raw["report"]["out_dir"] = str(tmp / "report")
    return params_from_dict(raw)


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_rubric_stage_evaluates_one_run_under_stable_metric_names(setup, tracking, metrics_dir):
    """`sara rubric --run sft` scores sft only; MLflow and DVC names never contain the run; identity as params."""
    from sara.stages import rubric as stage

    p, tmp = setup
    p = _stage_params(p, tmp)
    summary = stage.run(p, "sft")
    assert sorted(x.name for x in (tmp / "rubric").iterdir()) == ["sft"]  # base and the oracle are not re-scored
    assert summary["run"] == "sft" and (tmp / "rubric" / "sft" / "summary.json").is_file()
    on_disk = json.loads((metrics_dir / "sft" / "rubric.json").read_text())["rubric"]["grounded"]
    g = summary["protocols"]["grounded"]["result"]
    assert on_disk["TA_mean"] == round(g["TA"]["mean"], 4) and on_disk["MQ_mean"] == round(g["MQ"]["mean"], 4)
    assert on_disk["motion_amplitude"] == round(g["dims"]["motion_amplitude"]["mean"], 4)
    (run,) = tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id])
    assert run.info.run_name == "rubric/sft"
    m = run.data.metrics
    assert m["rubric/grounded/TA_mean"] == on_disk["TA_mean"] and m["rubric/grounded/MQ_mean"] == on_disk["MQ_mean"]
    assert "rubric/grounded/motion_amplitude" in m and not any("sft" in k for k in m)
    assert {k: run.data.params[k] for k in ("method", "routing_op", "seed", "lam_trd")} == {
        "method": "sft", "routing_op": NO_ROUTING, "seed": str(p.train.seed), "lam_trd": f"{p.trd.lam_trd:g}"}
    assert run.data.tags["sara.method"] == "sft" and run.data.tags["sara.routing_op"] == NO_ROUTING


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_report_aggregates_the_per_run_evaluations_and_logs_no_metric_twice(setup, tracking, metrics_dir):
    from sara.stages import report, rubric

    p, tmp = setup
    p = _stage_params(p, tmp)
    with pytest.raises(FileNotFoundError, match="sara rubric --run"):
        report.run(p)
    for run in ("oracle", "base", "sft"):
        rubric.run(p, run)
    report.run(p)
    md = (tmp / "report" / "report.md").read_text()
    assert "| Real video (oracle) | 5.0000 | 5.0000 | 5.0000 | 5.0000 | 2 |" in md
    assert "| Pretrained Wan2.2 |" in md and "| SFT |" in md
    runs = tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id])
    (rep,) = [r for r in runs if r.info.run_name == "report"]
    assert rep.data.metrics == {}  # the numbers live on rubric/<run>, once
    assert sorted(r.info.run_name for r in runs if r.info.run_name != "report") == ["rubric/base", "rubric/oracle", "rubric/sft"]


def test_the_papers_heatmap_holds_only_runs_on_the_default_target():
    """A run on another TRD target (sara-or@oracle) has the same (method, operator) cell as sara-or: in the
    report's heatmap it would overwrite the lab encoder's number (the comparison draws one map per target)."""
    from evaluation.report import METHOD_OP

    assert METHOD_OP["sara-or"] == ("SARA", "or") and "sara-or@oracle" not in METHOD_OP
    assert len(set(METHOD_OP.values())) == len(METHOD_OP)  # one run per cell
