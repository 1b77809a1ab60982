"""The MLflow helper: runs named per stage, params of the listed sections, revision tags, FAILED on error."""

from __future__ import annotations

from pathlib import Path

import pytest

from sara.config import Params
from sara.tracking import child_run, flatten, log_metrics, stage_run


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


def test_child_runs_nest_under_the_stage_run_and_inherit_its_tags(tracking, monkeypatch) -> None:
    monkeypatch.setenv("SARA_SWEEP_ID", "sw1")
    with stage_run("compare", Params(), []) as parent:
        with child_run("compare/sara-or/seed0", params={"routing_op": "or", "seed": 0}, tags={"sara.run": "sara-or"}) as ok:
            log_metrics({"compare/grounded/TA_mean": 3.5})
        with pytest.raises(RuntimeError, match="boom"):
            with child_run("compare/sft/seed0", params={}, tags={}) as bad:
                raise RuntimeError("boom")
    child, p = tracking.get_run(ok.info.run_id), tracking.get_run(parent.info.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id and child.info.status == "FINISHED"
    assert child.data.tags["sara.stage"] == "compare" and child.data.tags["sara.sweep_id"] == "sw1"  # inherited
    assert child.data.tags["sara.run"] == "sara-or" and "sara.pid" not in child.data.tags
    assert child.data.params == {"routing_op": "or", "seed": "0"} and child.data.metrics == {"compare/grounded/TA_mean": 3.5}
    assert tracking.get_run(bad.info.run_id).info.status == "FAILED"
    assert p.info.status == "FINISHED" and "compare/grounded/TA_mean" not in p.data.metrics
    with pytest.raises(RuntimeError, match="child run 'x' needs an open stage run"):
        with child_run("x", params={}, tags={}):
            pass


def test_flatten_nests_with_dots() -> None:
    assert flatten("a", {"b": {"c": 1}, "d": [1, 2]}) == {"a.b.c": "1", "a.d": "[1, 2]"}


def test_a_temp_dvc_experiment_logs_to_the_workspace_store(tmp_path, monkeypatch) -> None:
    """`dvc exp run --temp` runs stages in <workspace>/.dvc/tmp/exps/<tmp>/, deleted afterwards: the default
    store must be the workspace's mlflow.db, not the copy's."""
    import os

    from sara.env import apply_offline_defaults

    workspace = tmp_path / "ws"
    copy = workspace / ".dvc" / "tmp" / "exps" / "tmpab12cd"
    copy.mkdir(parents=True)
    (workspace / "dvc.yaml").write_text("stages: {}\n")
    (copy / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(copy)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    apply_offline_defaults()
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{workspace.resolve() / 'mlflow.db'}"


def test_stage_run_logs_a_dotted_key_alone(tracking) -> None:
    with stage_run("sample", Params(), ["project", "train.out_dir"], variant="sft") as run:
        pass
    logged = tracking.get_run(run.info.run_id).data.params
    assert logged["train.out_dir"] == "models/dit" and "train.lr" not in logged


def test_the_experiment_is_tagged_as_model_development(tracking) -> None:
    """MLflow 3's UI opens an untagged experiment on the GenAI overview (traces, "no data"), not on its runs."""
    from flows.mlflow_runs import ensure_experiment

    with stage_run("data", Params(), ["data"]):
        pass
    exp = tracking.get_experiment_by_name(Params().project.mlflow_experiment)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    other = tracking.create_experiment("untagged")
    ensure_experiment(tracking, "untagged", Path("."))  # a sweep marks an existing experiment too
    assert tracking.get_experiment(other).tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_tracking_fixture_keeps_artifacts_out_of_the_checkout(tracking, tmp_path: Path):
    """A stage's artifacts under the `tracking` fixture land in the test's temp dir. MLflow's SQLite store puts an
    experiment it creates under ./mlruns of the working directory, which is the checkout under pytest: the suite
    wrote comparison figures and models there, shared by parallel workers and left behind."""
    import mlflow

    from sara.config import load_params

    name = load_params(Path(__file__).resolve().parents[1] / "params.yaml").project.mlflow_experiment
    experiment = mlflow.set_experiment(name)
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(tmp_path)
