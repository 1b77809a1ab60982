"""The run vocabulary (sara/runs.py): one torch-free home of every run name, parsed by one parser, read by config,
methods, stages, tracking, evaluation, the DAG generator and the flows."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from sara.config import Params
from sara.runs import (ALL_RUNS, BASE, DAG_RUNS, DEFAULT_TARGET, METHODS, NO_ROUTING, ORACLE, ROW_ORDER, Run,
                       in_row_order, row_of_stage_item, split_stage_name, stage_name)

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    """First-party modules a file imports anywhere (also inside functions) at run time (not for type checkers)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING" for n in ast.walk(block)}
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.split(".")[0] == "sara"}


def test_config_and_the_vocabulary_import_in_one_direction():
    """sara.config reads the vocabulary; the vocabulary never imports the config (it was a circle)."""
    assert "sara.config" not in _imported_modules(ROOT / "sara" / "runs.py")
    assert "sara.runs" in _imported_modules(ROOT / "sara" / "config.py")


def test_the_vocabulary_is_torch_free():
    code = "import sys, sara.runs; assert 'torch' not in sys.modules and 'sara.config' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


@pytest.mark.parametrize("path", ["sara/losses/routing.py", "sara/config.py", "evaluation/comparison/claims.py",
                                  "evaluation/comparison/numbers.py", "evaluation/comparison/markdown.py",
                                  "evaluation/rubric/evaluate.py", "sara/stages/per_run.py", "evaluation/report.py"])
def test_operators_oracle_and_row_order_are_spelled_once(path: str):
    """`ROUTING_OPS`, `RoutingOp`, `ORACLE` and the row order were defined three times each."""
    tree = ast.parse((ROOT / path).read_text())
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not assigned & {"ROUTING_OPS", "RoutingOp", "MethodName", "ORACLE", "ROW_ORDER"}
    assert "\"sara-none\"" not in (ROOT / path).read_text()


def test_no_routing_is_not_the_operator_none():
    assert Run("videorepa").routing_op == NO_ROUTING != "none"
    assert Run("sara", "none").routing_op == "none"
    assert Run("sft").op is None and Run.parse("sara-none").op == "none"


def test_tracking_identity_tells_no_routing_from_sara_none():
    from sara.tracking import run_identity

    sft, _ = run_identity(Params(), Run("sft"))
    none, tags = run_identity(Params(), "sara-none")
    assert sft["routing_op"] == NO_ROUTING and none["routing_op"] == "none" and tags["sara.run"] == "sara-none"
    assert run_identity(Params(), BASE)[0]["method"] == BASE and "target" not in sft
    assert run_identity(Params(), Run("sara", "or"))[0]["target"] == DEFAULT_TARGET


def test_the_default_target_is_left_out_of_the_name():
    run = Run("sara", "or")
    assert run.target == DEFAULT_TARGET and run.name == "sara-or" == run.stage_id
    assert Run.parse("sara-or") == run and Run.from_stage_id("sara-or") == run
    with pytest.raises(ValueError, match="the default 'lab' is left out"):
        Run.parse(f"sara-or@{DEFAULT_TARGET}")
    with pytest.raises(ValueError, match="unknown run 'sara-or@nowhere'"):
        Run.parse("sara-or@nowhere")
    with pytest.raises(ValueError, match="unknown TRD target"):
        Run("sara", "or", "nowhere")


def test_a_new_target_lands_in_the_vocabulary_alone(monkeypatch):
    """Registering a target is all it takes: names, stage ids, params, inputs and the list of valid runs follow."""
    import sara.runs as runs

    monkeypatch.setitem(runs.TARGETS, "oracle", runs.Target("oracle", "oracle target", ("data",), lambda p: ("x",)))
    run = Run.parse("sara-or@oracle")
    assert (run.method, run.op, run.target) == ("sara", "or", "oracle")
    assert run.name == "sara-or@oracle" and run.stage_id == "sara-or-oracle"
    assert Run.from_stage_id(run.stage_id) == run and stage_name("train_dit", run) == "train_dit-sara-or-oracle"
    assert run.label == "SARA (OR) [oracle target]" and run.inputs(Params())[-3:] == ("x", "models/aligner", "data/masks")
    assert Run.parse("videorepa@oracle").stage_id == "videorepa-oracle"
    with pytest.raises(ValueError, match="sft has no TRD target"):
        Run.parse("sft@oracle")
    assert Run("sara", "or", "oracle") in runs._every_run()


def test_row_order_and_stage_names():
    assert ROW_ORDER[:2] == (ORACLE, BASE) and set(ROW_ORDER[2:]) == {r.name for r in ALL_RUNS}
    assert in_row_order(["sara-xor", "zzz", "sft", ORACLE]) == [ORACLE, "sft", "sara-xor", "zzz"]
    assert split_stage_name("train_dit-sara-or") == ("train_dit", "sara-or") and split_stage_name("masks") == ("masks", None)
    assert row_of_stage_item("sara-or") == Run("sara", "or") and row_of_stage_item("base") == BASE
    assert row_of_stage_item("not-a-run") is None and row_of_stage_item(None) is None
    assert set(DAG_RUNS) <= set(ALL_RUNS) and set(METHODS) == {r.method for r in DAG_RUNS}


def test_train_dit_takes_a_typed_run_parsed_once_on_the_command_line():
    """`sara train-dit --run` parses the name once (argparse); the stage and train_stage2 receive the Run."""
    import argparse

    import sara.stages.train_dit as stage
    from sara.train.stage2 import train_stage2

    parser = argparse.ArgumentParser()
    stage.add_arguments(parser)
    assert parser.parse_args(["--run", "sara-or"]).run == Run("sara", "or")
    with pytest.raises(SystemExit):
        parser.parse_args(["--run", "sara-nand"])
    assert train_stage2.__annotations__["run"] == "Run" and stage.run.__annotations__["run"] == "Run"
