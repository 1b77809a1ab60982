"""Strict params: every params file validates, bad input is refused naming the key, dvc.yaml keys exist."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from sara.config import Params, ParamsError, load_params, params_from_dict
from sara.weights import require_dir

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILES = sorted([ROOT / "params.yaml", *(ROOT / "configs").glob("**/*.yaml")])


def _raw() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize("path", PARAMS_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_params_file_in_the_repo_validates(path: Path) -> None:
    params = load_params(path)
    assert isinstance(params, Params)


def test_params_yaml_lists_every_field_explicitly() -> None:
    # DVC tracks only keys present in the file, so the defaults in code must all be spelled out in params.yaml.
    def keys(d: dict, prefix: str = "") -> set[str]:
        out = set()
        for k, v in d.items():
            path = f"{prefix}{k}"
            out.add(path)
            if isinstance(v, dict):
                out |= keys(v, path + ".")
        return out

    assert keys(Params().model_dump(mode="python")) <= keys(_raw())


def test_unknown_key_is_refused_with_its_path() -> None:
    raw = _raw()
    raw["aligner"]["learning_rate"] = 1e-3
    with pytest.raises(ParamsError, match=r"aligner\.learning_rate: unknown key"):
        params_from_dict(raw)


def test_unknown_section_is_refused() -> None:
    raw = _raw()
    raw["optimiser"] = {"lr": 1}
    with pytest.raises(ParamsError, match=r"optimiser: unknown key"):
        params_from_dict(raw)


def test_out_of_range_value_is_refused_with_its_path() -> None:
    raw = _raw()
    raw["aligner"]["lr"] = 0
    with pytest.raises(ParamsError, match=r"aligner\.lr: must be > 0"):
        params_from_dict(raw)


def test_wrong_type_is_refused_with_its_path() -> None:
    raw = _raw()
    raw["data"]["frames"] = "many"
    with pytest.raises(ParamsError, match=r"data\.frames: "):
        params_from_dict(raw)


def test_bad_routing_operator_is_refused() -> None:
    from sara.runs import Run

    with pytest.raises(ValueError, match="unknown run 'sara-nand'"):
        Run.parse("sara-nand")


def test_cross_field_rule_is_refused() -> None:
    raw = _raw()
    raw["data"]["min_entities"], raw["data"]["max_entities"] = 3, 2
    with pytest.raises(ParamsError, match=r"data: min_entities must be <= max_entities"):
        params_from_dict(raw)


def test_params_are_frozen() -> None:
    """A stage cannot change a param after validation: the error names the field and says why."""
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ValidationError) as err:
        params.data.frames = 3  # type: ignore[misc]
    (e,) = err.value.errors()
    assert e["type"] == "frozen_instance" and e["loc"] == ("frames",)
    with pytest.raises(ValidationError, match=r"data\n.*frozen"):
        params.data = params.data  # type: ignore[misc]
    assert params.data.frames == load_params(ROOT / "params.yaml").data.frames  # nothing changed


def test_missing_params_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="params file not found: .*nope.yaml"):
        load_params(tmp_path / "nope.yaml")


def test_infinite_tau_round_trips_through_yaml() -> None:
    assert math.isinf(load_params(ROOT / "params.yaml").trd.tau)


def test_require_dir_names_param_path_and_content(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"dit\.path is not set: .*Wan2\.2 weights"):
        require_dir("dit.path", None, "Wan2.2 weights")
    with pytest.raises(FileNotFoundError, match=r"dit\.path = '.*missing' does not exist: .*Wan2\.2 weights"):
        require_dir("dit.path", str(tmp_path / "missing"), "Wan2.2 weights")
    assert require_dir("dit.path", str(tmp_path), "x") == tmp_path


@pytest.mark.slow  # over 2 s on the 2-core machine (docs/testing.md)
def test_every_params_key_named_in_dvc_yaml_exists_in_params_yaml() -> None:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    raw = _raw()
    repo = Repo(str(ROOT))
    try:
        checked = 0
        for stage in repo.index.stages:
            for dep in stage.deps:
                if not isinstance(dep, ParamsDependency):
                    continue
                for key in dep.params:
                    node = raw
                    for part in key.split("."):
                        assert isinstance(node, dict) and part in node, f"{stage.addressing}: params key {key!r} missing"
                        node = node[part]
                    checked += 1
        assert checked > 0
    finally:
        repo.close()


def test_the_run_matrix_is_checked_before_any_work() -> None:
    raw = _raw()
    raw["matrix"]["runs"] = ["sft", "sara-or", "sara-maybe"]
    with pytest.raises(ParamsError, match=r"matrix\.runs: unknown run 'sara-maybe'") as err:
        params_from_dict(raw)
    assert "\n" not in str(err.value)
    raw["matrix"]["runs"] = ["sft", "sara-or", "sft"]
    with pytest.raises(ParamsError, match="'sft' is listed twice"):
        params_from_dict(raw)
    raw["matrix"]["runs"] = ["sft", "videorepa@oracle"]
    with pytest.raises(ParamsError, match="report.main_run = 'sara-or' is not a run the DAG trains"):
        params_from_dict(raw)
    raw["matrix"]["runs"] = ["sft", "sara-or"]  # the study's baselines must be sampled: base or the matrix
    raw["comparison"]["references"] = ["sft"]
    with pytest.raises(ParamsError, match="study: 'videorepa' is not a sampled run \\(base, sft, sara-or\\)"):
        params_from_dict(raw)


@pytest.mark.parametrize("section", ["data", "pretrain.corpus"])
def test_entity_range_is_checked_for_clips_and_corpus(section: str):
    """The corpus section lost `min_entities <= max_entities` when it copied the clips' fields; both share one
    definition now (sara.config.SceneParams), so neither can lose it again."""
    raw: dict = {}
    node = raw
    for part in section.split("."):
        node = node.setdefault(part, {})
    node.update(min_entities=3, max_entities=2)
    with pytest.raises(ParamsError, match=re.escape(f"{section}: min_entities must be <= max_entities")):
        params_from_dict(raw)
