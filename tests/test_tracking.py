"""The MLflow helper: runs named per stage, params of the listed sections, revision tags, FAILED on error."""

from __future__ import annotations


import pytest

from sara.config import Params
from sara.tracking import flatten, log_metrics, stage_run


def test_stage_run_logs_listed_sections_and_tags(tracking) -> None:
    params = Params()
    with stage_run("masks", params, ["project", "masks"], variant="gt") as run:
        log_metrics({"p_fg": 0.25, "bad": float("nan")}, step=0)
    r = tracking.get_run(run.info.run_id)
    assert r.info.status == "FINISHED"
    assert r.info.run_name == "masks/gt"
    assert r.data.params["masks.backend"] == "groundtruth"
    assert "aligner.lr" not in r.data.params  # only the sections the stage reads
    assert r.data.tags["sara.stage"] == "masks"
    assert r.data.tags["sara.scale"] == "embedded"
    assert "proves the plumbing" in r.data.tags["sara.scale_note"]
    assert r.data.metrics["p_fg"] == 0.25
    assert r.data.tags["nonfinite.bad"] == "nan"  # a non-finite value is kept visible, not dropped


def test_stage_run_marks_failed_and_reraises(tracking) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with stage_run("data", Params(), ["data"]) as run:
            raise RuntimeError("boom")
    assert tracking.get_run(run.info.run_id).info.status == "FAILED"


def test_parent_run_and_orchestration_ids_come_from_the_environment(tracking, monkeypatch) -> None:
    with stage_run("sweep", Params(), []) as parent:
        pass
    monkeypatch.setenv("SARA_MLFLOW_PARENT_RUN_ID", parent.info.run_id)
    monkeypatch.setenv("SARA_PREFECT_FLOW_RUN_ID", "flow-123")
    with stage_run("train_dit", Params(), ["train"], variant="sara-or") as child:
        pass
    tags = tracking.get_run(child.info.run_id).data.tags
    assert tags["mlflow.parentRunId"] == parent.info.run_id
    assert tags["prefect.flow_run_id"] == "flow-123"


def test_flatten_nests_with_dots() -> None:
    assert flatten("a", {"b": {"c": 1}, "d": [1, 2]}) == {"a.b.c": "1", "a.d": "[1, 2]"}
