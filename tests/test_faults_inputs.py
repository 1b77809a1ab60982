"""Prompt-set errors before any MLflow run, and explicit weights_only (issue: faults, round 2, findings 8 and 10).

Before: a broken prompt set named the item and the field, but in a 21-25-line traceback raised after the stage had
opened its MLflow run; `sara/stages/mechanism.py` relied on torch's default for `weights_only`.
"""

from __future__ import annotations

import ast
import copy
from pathlib import Path

import pytest

import sara.data.prompts as prompts_mod

REPO = Path(__file__).resolve().parents[1]


def _broken_set(monkeypatch, damage) -> None:
    """The packaged synthetic prompt set with one item damaged by `damage(item)`."""
    original = prompts_mod.prompt_set_raw

    def raw(name: str):
        data = copy.deepcopy(original(name))
        damage(data["items"][4])
        return data

    monkeypatch.setattr(prompts_mod, "prompt_set_raw", raw)


@pytest.mark.parametrize(("stage", "damage", "message"), [
    ("sample", lambda it: it["caption"]["structured_caption"].pop("english"),
     "prompt set synthetic/syn_05"),
    ("rubric", lambda it: it["spec"].update(style="neon"), "prompt set synthetic/syn_05: invalid spec: style"),
    ("sample", lambda it: it.pop("caption"), "prompt set synthetic/syn_05: caption: field required"),
])
def test_a_broken_prompt_set_is_one_line_before_an_mlflow_run_opens(tmp_path: Path, tracking, monkeypatch, capsys,
                                                                   stage, damage, message):
    from sara.cli import main

    _broken_set(monkeypatch, damage)
    (tmp_path / "p.yaml").write_text(f"sample:\n  out_dir: {tmp_path / 'samples'}\nrubric:\n  out_dir: {tmp_path / 'r'}\n")
    assert main([stage, "--run", "base", "--params", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {message}"), err
    experiment = tracking.get_experiment_by_name("sara")
    assert experiment is None or tracking.search_runs([experiment.experiment_id]) == []  # no run was opened


def test_a_broken_vbench_suite_is_one_line_before_an_mlflow_run_opens(tmp_path: Path, tracking, capsys):
    from sara.cli import main

    suite = tmp_path / "VBench_full_info.json"
    suite.write_text('[{"prompt_en": "a cat"}, {"prompt": "a dog"}]')
    (tmp_path / "p.yaml").write_text(f"sample:\n  out_dir: {tmp_path / 'samples'}\n  vbench_prompts: {suite}\n")
    assert main(["sample", "--run", "base", "--params", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {suite}: VBench prompt suite cannot be read: every entry needs a 'prompt_en' string"]
    assert not tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id])  # no run opened


def test_every_torch_load_says_weights_only():
    """torch.load unpickles code unless told not to; each call says which it wants (weights_only=True almost
    everywhere), so no caller depends on torch's default (which changed in torch 2.6)."""
    silent = []
    for path in sorted([*REPO.glob("sara/**/*.py"), *REPO.glob("evaluation/**/*.py"), *REPO.glob("flows/**/*.py")]):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and "weights_only" not in {k.arg for k in node.keywords}):
                silent.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not silent, f"torch.load without weights_only: {silent}"
