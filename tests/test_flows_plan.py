"""Sweep planning against a real DVC pipeline: points, overrides, shared stages, targets, refusals."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import pytest
import yaml
from prefect.states import Failed

from flows.dag import Dag, StageInfo, load_dag
from flows.dvc_runner import DvcError, exp_run, run_dvc
from flows.env import orchestration_env
from flows.plan import build_points, dvc_value, exp_name, params_file_overrides, plan_sweep
from flows.sara_flow import is_transient, tracking_uri
from flows_testlib import TOY_RUNS, make_toy_repo
from sara.config import ParamsError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_toy_repo(tmp_path_factory.mktemp("plan") / "repo", ROOT / "params.yaml")


@pytest.mark.slow  # git + dvc init of the toy DAG
def test_dag_is_read_from_dvc_yaml_with_foreach_expanded(toy: Path) -> None:
    dag = load_dag(toy)
    assert set(dag.stages) == {"data", *(f"{stage}@{r}" for r in TOY_RUNS for stage in ("train_dit", "rubric"))}
    assert dag.stages["rubric@sara-or"].upstream == {"train_dit@sara-or"}  # each run's evaluation reads its model
    sara_or = dag.stages["train_dit@sara-or"]
    assert sara_or.upstream == {"data"} and sara_or.item == "sara-or" and sara_or.base == "train_dit"
    assert sara_or.reads("train.seed") and sara_or.reads("trd") and not dag.stages["data"].reads("train.seed")
    assert dag.leaves({"data", "train_dit@sft"}) == ["train_dit@sft"]
    assert dag.ancestors({"train_dit@sft"}) == {"data"}


def test_dag_refuses_a_directory_without_dvc_yaml(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dvc.yaml not found"):
        load_dag(tmp_path)


def test_points_cover_methods_ops_seeds_and_lambdas() -> None:
    points = build_points(["sft", "sara"], ["and", "or"], [1, 2], [0.5, 1.0])
    assert len(points) == 2 * 2 + 2 * 2 * 2  # sft has the single operator `none`
    assert {p.run.name for p in points} == {"sft", "sara-and", "sara-or"}
    sara_or = next(p for p in points if p.run.name == "sara-or" and p.seed == 2 and p.lam_trd == 1.0)
    assert sara_or.overrides() == {"train.seed": 2, "trd.lam_trd": 1.0}  # the run is picked by the targets
    with pytest.raises(ParamsError, match="ops: method 'sara' needs at least one routing operator"):
        build_points(["sara"], [], [1], [0.5])


def test_plan_shares_the_unswept_stages_and_runs_each_point_on_its_own_stage(toy: Path) -> None:
    points = build_points(["sft", "sara"], ["and", "or"], [1, 2], [0.5])
    plan = plan_sweep(toy, load_dag(toy), "s1", points, overrides={"train.steps": 2})
    assert plan.shared_stages == ["data"] and plan.shared_targets == ["data"]
    assert plan.shared_overrides == {"train.steps": 2, "trd.lam_trd": 0.5}  # constant point keys are global
    for p in plan.points:
        # each point trains and evaluates its own model
        assert p.targets == [f"rubric@{p.point.run}", f"train_dit@{p.point.run}"]
        assert p.stages == [f"train_dit@{p.point.run}", f"rubric@{p.point.run}"]
        assert p.overrides["train.seed"] == p.point.seed and p.overrides["train.steps"] == 2
        assert p.params.train.seed == p.point.seed and p.params.train.steps == 2
        check = subprocess.run(["git", "check-ref-format", f"refs/exps/{p.exp_name}"])
        assert check.returncode == 0, p.exp_name
    assert len({p.exp_name for p in plan.points}) == len(points)


def test_a_single_point_runs_its_whole_closure_itself(toy: Path) -> None:
    plan = plan_sweep(toy, load_dag(toy), "s2", build_points(["sara"], ["xor"], [3], [0.5]))
    assert plan.shared_targets == [] and plan.points[0].stages == ["data", "train_dit@sara-xor", "rubric@sara-xor"]


def test_a_stage_with_a_persist_output_is_left_to_the_points(toy: Path) -> None:
    """DVC's run cache cannot restore it, so a shared run of it would be one run more, not one run instead."""
    dag = Dag({
        "data": StageInfo("data", ("data",), frozenset()),
        "aligner": StageInfo("aligner", ("aligner",), frozenset({"data"}), restorable=False),
        **{f"train_dit@sara-{op}": StageInfo(f"train_dit@sara-{op}", ("train", "trd"), frozenset({"aligner"}))
           for op in ("and", "or")},
    })  # fmt: skip
    plan = plan_sweep(toy, dag, "p", build_points(["sara"], ["and", "or"], [1], [0.5]))
    assert plan.shared_stages == ["data"] and plan.rerun_per_point == ["aligner"]
    assert plan.points[0].stages == ["aligner", "train_dit@sara-and"]


def test_a_sweep_over_a_carried_base_is_refused_naming_its_frozen_stages(toy: Path) -> None:
    """`dvc exp run --temp` checks every output out of DVC's cache; a base unpacked by scripts/lab_base_bundle.py is
    only in the work folder, so each point would fail on it after the sweep started: refused at the plan."""
    import dataclasses

    dag = load_dag(toy)
    dag = Dag({n: dataclasses.replace(i, frozen=n == "data") for n, i in dag.stages.items()})
    with pytest.raises(ValueError, match=r"^stages data are frozen \(a carried base\)"):
        plan_sweep(toy, dag, "f", build_points(["sara"], ["and"], [1], [0.5]))


def test_explicit_targets_are_templates_over_the_point(toy: Path) -> None:
    dag = load_dag(toy)
    plan = plan_sweep(toy, dag, "s3", build_points(["sara"], ["and"], [1], [0.5]), targets=["train_dit@{run}"])
    assert plan.points[0].targets == ["train_dit@sara-and"]
    with pytest.raises(ParamsError, match=r"targets: 'sample@sara-and' \(from 'sample@\{run\}'\) is not a stage"):
        plan_sweep(toy, dag, "s3", build_points(["sara"], ["and"], [1], [0.5]), targets=["sample@{run}"])


def test_bad_overrides_are_refused_naming_the_key(toy: Path) -> None:
    dag = load_dag(toy)
    points = build_points(["sara"], ["and"], [1], [0.5])
    with pytest.raises(ParamsError, match="train.stepz: unknown key"):
        plan_sweep(toy, dag, "bad", points, overrides={"train.stepz": 3})
    with pytest.raises(ParamsError, match=r"sweep point sara-and/seed1/lam-1"):
        plan_sweep(toy, dag, "bad", build_points(["sara"], ["and"], [1], [-1.0]))
    with pytest.raises(ParamsError, match="override train.steps.x: train.steps is not a section"):
        plan_sweep(toy, dag, "bad", points, overrides={"train.steps.x": 1})


def test_a_params_file_reaches_dvc_as_overrides_of_its_differences(toy: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load((toy / "params.yaml").read_text())
    raw["data"]["n_train"] = 2
    raw["methods"]["videorepa"]["margin"] = 0.3
    micro = tmp_path / "micro.yaml"
    micro.write_text(yaml.safe_dump(raw))
    assert params_file_overrides(toy, str(micro)) == {"data.n_train": 2, "methods.videorepa.margin": 0.3}
    with pytest.raises(ParamsError, match="params file not found"):
        params_file_overrides(toy, "configs/nope.yaml")


@pytest.mark.parametrize("value", [0.5, 3, "or", ["and", "or"], True, None, math.inf])
def test_override_values_round_trip_through_yaml(value: object) -> None:
    assert yaml.safe_load(dvc_value(value)) == value


def test_exp_names_are_valid_git_refs() -> None:
    (point,) = build_points(["sara"], ["or"], [7], [0.25])
    assert exp_name("2026 sweep", point) == "2026-sweep-sara-or-s7-l0p25"


def test_only_lock_races_are_retried() -> None:
    lock = DvcError(["exp", "run"], 255, "ERROR: Unable to acquire lock. Most likely another DVC process is running")
    stage = DvcError(["exp", "run"], 255, "ERROR: failed to reproduce 'train_dit@sft': exited with 1")
    assert lock.transient and not stage.transient
    assert is_transient(None, None, Failed(data=lock))
    assert not is_transient(None, None, Failed(data=stage))
    assert not is_transient(None, None, Failed(data=ValueError("bad")))


@pytest.mark.slow  # a `dvc` process
def test_a_failing_dvc_command_raises_with_its_output(toy: Path) -> None:
    env = orchestration_env(toy)
    with pytest.raises(DvcError, match="nonexistent") as err:
        run_dvc(["exp", "run", "--temp", "nonexistent"], toy, env, log=lambda _: None)
    assert not err.value.transient


@pytest.mark.slow  # `dvc exp run` on the toy DAG
def test_an_existing_experiment_is_reused_not_rerun(toy: Path) -> None:
    env = {**orchestration_env(toy), "MLFLOW_TRACKING_URI": f"sqlite:///{toy / 'plan.db'}"}
    first = exp_run(toy, "reuse-1", ["data"], {"data.seed": 5}, env, log=lambda _: None)
    assert first.ran == ["data"] and first.rev and not first.reused
    again = exp_run(toy, "reuse-1", ["data"], {"data.seed": 5}, env, log=lambda _: None)
    assert again.reused and again.rev == first.rev and again.ran == []
    shown = subprocess.run(["git", "-C", str(toy), "show", f"{first.rev}:params.yaml"], capture_output=True, text=True)
    assert yaml.safe_load(shown.stdout)["data"]["seed"] == 5  # DVC recorded the override with the experiment


def test_tracking_uri_is_made_absolute_for_temp_copies(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    assert tracking_uri(tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_a_cached_stage_takes_its_metrics_from_the_stage_run_never_from_another_point(tracking) -> None:
    """Two sweep points with the same params (their runs differ only by their targets) must not copy each other's
    copied metrics: a point run carries its targets' `dvc.stage` tag but is no stage run."""
    from flows.mlflow_runs import _previous_stage_run
    from sara.config import Params
    from sara.tracking import log_metrics, stage_run

    params = Params()
    with stage_run("masks", params, ["project", "data", "masks"]) as stage:
        log_metrics({"coverage.or.fg_fg": 0.5})
    exp = tracking.get_experiment_by_name(params.project.mlflow_experiment).experiment_id
    other = tracking.create_run(exp, tags={"dvc.stage": "masks", "sara.kind": "sweep_point"})
    tracking.log_metric(other.info.run_id, "masks/coverage.or.fg_fg", 0.5)
    tracking.set_terminated(other.info.run_id, "FINISHED")
    assert _previous_stage_run(tracking, exp, "masks", params).info.run_id == stage.info.run_id
