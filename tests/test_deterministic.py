"""`project.deterministic`: a stage process asks torch for deterministic kernels (sara/env.py). Two lab runs of one
command disagreed by more than their intervals (docs/lab/replicates.md); the lab did not ask for deterministic
kernels. Each test runs in its own process: the setting is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import os, sys, torch
import sara.stages.check_params as stage
stage.run = lambda params, **kw: print("deterministic", torch.are_deterministic_algorithms_enabled(),
                                       torch.is_deterministic_algorithms_warn_only_enabled(),
                                       torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
from sara.cli import main_here
sys.exit(main_here(["check-params", "--params", sys.argv[1]], lifeline=False))
"""


def _stage_sees(tmp_path: Path, deterministic: bool | None) -> str:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    if deterministic is not None:
        raw["project"]["deterministic"] = deterministic
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if k != "CUBLAS_WORKSPACE_CONFIG"}
    out = subprocess.run([sys.executable, "-c", PROBE, str(params)], cwd=ROOT, capture_output=True, text=True,
                         env={**env, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert out.returncode == 0, out.stderr
    return next(line for line in out.stdout.splitlines() if line.startswith("deterministic"))


def test_a_stage_asks_for_deterministic_kernels_when_the_params_say_so(tmp_path: Path):
    # strict, not warn_only: with warn_only, torch keeps flash attention's non-deterministic backward, and two H100
    # trainings differed as much as with the setting off (benchmarks/determinism.md)
    assert _stage_sees(tmp_path, True) == "deterministic True False False :4096:8"


@pytest.mark.parametrize("deterministic", [False, None])
def test_by_default_a_stage_leaves_torch_as_it_is(tmp_path: Path, deterministic: bool | None):
    assert _stage_sees(tmp_path, deterministic) == "deterministic False False False None"


def test_the_lab_params_name_the_setting():
    """The lab's knob is visible where its users look, off until two GPU runs have shown it makes them agree."""
    lab = yaml.safe_load((ROOT / "configs" / "lab.yaml").read_text())
    assert lab["project"]["deterministic"] is False


def _probe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("determinism", ROOT / "benchmarks" / "determinism.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow(wall_s=25)  # two Stage 2 trainings, each a fresh process
def test_the_probe_finds_two_cpu_trainings_identical(workspace: Path, tmp_path: Path):
    """benchmarks/determinism.py on the tiny base: two 3-step trainings of SFT with project.deterministic on give
    the same model bit for bit, and the table says so (benchmarks/determinism.md has both settings)."""
    from stage2_testlib import write_params

    sub = workspace / "determinism"
    sub.mkdir(exist_ok=True)
    params = write_params(sub, "p")
    out = tmp_path / "out"
    assert _probe().main(["--params", str(params), "--run", "sft", "--steps", "3", "--out", str(out),
                          "--settings", "true"]) == 0
    table = (out / "determinism.md").read_text()
    assert "| true | yes | 0 | 0 of " in table and "| false |" not in table
    assert table.rstrip().endswith("| none |")  # a CPU's kernels are deterministic: torch names none
    assert (out / "deterministic_true" / "training1" / "train.log").is_file()  # the process's own words are kept


def test_the_probe_lists_the_kernels_torch_names_as_not_deterministic():
    """torch's two texts, as a training's log holds them: the generic alert and attention's backward. Before, the
    probe dropped the training's log, so an H100 run that was not reproducible could not say which kernel was not."""
    log = (".../torch/autograd/graph.py:829: UserWarning: Flash Attention defaults to a non-deterministic algorithm. "
           "To explicitly enable determinism call torch.use_deterministic_algorithms(True, warn_only=False).\n"
           "  return Variable._execution_engine.run_backward(\n"
           ".../stage2.py:88: UserWarning: scatter_add_cuda_kernel does not have a deterministic implementation, but "
           "you set 'torch.use_deterministic_algorithms(True, warn_only=True)'.\n"
           "UserWarning: Flash Attention defaults to a non-deterministic algorithm. To explicitly ...\n")
    assert _probe().kernel_warnings(log) == ["Flash Attention", "scatter_add_cuda_kernel"]
    assert _probe().kernel_warnings("step 1 loss 0.5\n") == []


def test_a_training_stopped_by_strict_mode_is_a_row_naming_the_op(tmp_path: Path, monkeypatch):
    """Strict mode (sara.env.deterministic_kernels) stops a training at an op with no deterministic kernel: the
    probe's table says so for that setting, naming the op, and still measures the other setting."""
    probe = _probe()

    def fake_train(params, run, steps, deterministic, out):
        if deterministic:
            raise RuntimeError("training sft failed:\nRuntimeError: index_put_ does not have a deterministic "
                               "implementation, but you set 'torch.use_deterministic_algorithms(True)'.")
        (out / "train.log").parent.mkdir(parents=True, exist_ok=True)
        (out / "train.log").write_text("")
        return 1.0

    monkeypatch.setattr(probe, "train", fake_train)
    monkeypatch.setattr(probe, "model_difference", lambda a, b: {"identical": True, "max_abs_diff": 0.0, "tensors": 2, "differ": 0})
    monkeypatch.setattr(probe, "machine", lambda: "test machine")
    params = tmp_path / "params.yaml"
    params.write_text("project: {}\n")
    assert probe.main(["--params", str(params), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "determinism.md").read_text()
    assert "| false | yes | 0 | 0 of 2 | 1.0 s, 1.0 s | none |" in table
    assert "| true | stopped | - | - | - | RuntimeError: index_put_ does not have a deterministic implementation" in table


def test_the_probe_names_a_model_that_differs(tmp_path: Path):
    """Two run folders that differ in one weight by 0.25: not identical, and the largest difference is 0.25."""
    import torch
    from safetensors.torch import save_file

    folders = []
    for i, shift in enumerate((0.0, 0.25)):
        run = tmp_path / f"r{i}"
        (run / "transformer").mkdir(parents=True)
        w = torch.zeros(3, 2)
        w[1, 1] += shift
        save_file({"a.weight": w, "b.bias": torch.ones(2)}, run / "transformer" / "diffusion_pytorch_model.safetensors")
        torch.save({"proj.w": torch.ones(2, 2)}, run / "aux.pt")  # a flat state dict, as Stage 2 exports it
        folders.append(run)
    d = _probe().model_difference(*folders)
    assert d == {"identical": False, "max_abs_diff": 0.25, "tensors": 3, "differ": 1}
    assert _probe().model_difference(folders[0], folders[0])["identical"] is True


def test_a_bad_setting_is_one_line_naming_it(capsys):
    with pytest.raises(SystemExit) as stop:
        _probe().main(["--settings", "true,maybe"])
    assert stop.value.code == 2
    assert "--settings: 'maybe' is not true or false" in capsys.readouterr().err
