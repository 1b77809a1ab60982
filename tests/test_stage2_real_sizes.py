"""benchmarks/stage2_real_sizes.py: its FLOP count, its table, and its `--tiny` CPU mode end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import stage2_real_sizes as bench  # noqa: E402
from stage2_testlib import launcher_env  # noqa: E402,F401  (fixture)


@pytest.mark.parametrize("model", list(bench.TINY))
def test_the_analytic_dit_flops_are_what_a_flop_counter_sees(model: str):
    """MFU's numerator: every matmul of a WanTransformer3DModel forward (attention counted through the math path)."""
    from diffusers import WanTransformer3DModel
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    size = bench.TINY[model]
    f, h, w = bench.latent_shape(size["pixels"], size["spatial"])
    dit = WanTransformer3DModel(num_attention_heads=size["heads"], attention_head_dim=size["head_dim"],
                                in_channels=size["channels"], out_channels=size["channels"], text_dim=size["text"][1],
                                ffn_dim=size["ffn"], num_layers=size["layers"])
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        dit(torch.randn(1, size["channels"], f, h, w), torch.tensor([500.0]), torch.randn(1, *size["text"]))
    assert bench.dit_forward_flops(size, f * (h // 2) * (w // 2)) == counter.get_total_flops()


def test_real_shapes_are_the_ones_the_issue_names():
    assert bench.latent_shape(bench.MODELS["wan2.1-t2v-1.3b"]["pixels"], 8) == (21, 60, 104)  # 32,760 tokens
    assert bench.latent_shape(bench.MODELS["wan2.2-ti2v-5b"]["pixels"], 16) == (31, 44, 80)  # 27,280 tokens
    assert [r[2] for r in bench.MATRIX if r[3] == "recipe"] == [{}] * 4  # recipe rows run the recipe's own settings
    assert bench.engine_params("wan2.2-ti2v-5b", {}, tiny=False).offload == "optimizer"


def test_the_table_says_why_a_row_is_missing_and_estimates_the_validation_share():
    train = {"zero_stage": 2, "offload": "none", "grad_checkpointing": True, "precision": "bf16"}
    ok = {"model": "wan2.1-t2v-1.3b", "run": "sft", "note": "recipe", "train": train, "step_ms_median": 3000.0,
          "tokens": 32760, "peak_mem_gib": 29.3, "host_peak_gib": 12.0, "matmul_tflops": 800.0, "dit_flops": 1.2e15,
          "dit_fwd_nograd_ms": 700.0}
    oom = {**ok, "note": "", "error": "OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"}
    skipped = {**ok, "note": "", "skipped": True}
    text = bench.table([ok, oom, skipped])
    assert "| 3.00 s | 10,920 | 50.0% | 29.3 GiB | 12.0 GiB | recipe |" in text
    assert "| out of memory |" in text and "| skipped: time budget |" in text
    assert "800 TFLOP/s" in text
    # 2 prompts x 25 steps x CFG = 100 forwards of 0.7 s every 1000 steps of 3 s
    assert "every 1000 steps) ~ 2.3% of training time" in text


@pytest.mark.slow(wall_s=47)
def test_tiny_mode_runs_the_recipe_offload_and_zero3_rows_on_cpu(tmp_path: Path):
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "stage2_real_sizes.py"), "--tiny", "--only", "0,3,4",
                        "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=900, cwd=REPO)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = json.loads((tmp_path / "stage2_real_sizes.json").read_text())
    assert [(x["model"], x["run"], x["train"]["zero_stage"], x["train"]["offload"]) for x in rows] == [
        ("wan2.1-t2v-1.3b", "sft", 2, "none"), ("wan2.2-ti2v-5b", "sara-or", 2, "optimizer"),
        ("wan2.2-ti2v-5b", "sft", 3, "all")]
    assert all("error" not in x and x["step_ms_median"] > 0 for x in rows), [x.get("error") for x in rows]
    md = (tmp_path / "stage2_real_sizes.md").read_text()
    assert md.count("\n| wan") == 3 and "(tiny sizes)" in md


def test_timing_the_aux_loss_alone_leaves_deepspeeds_gradient_buckets_alone(monkeypatch, launcher_env):
    """On one H100 the Wan2.2-TI2V-5B SARA-OR row (ZeRO-2, optimizer offload) stopped with DeepSpeed's "gradient
    computed twice for this partition": after the timed steps, `bench_method` timed the aux loss alone with
    `backward()` through the engine's module and no optimizer step, so once a reduce bucket filled between two of
    those passes ZeRO-2 saw a parameter's gradient again. A small bucket makes it fill on CPU; training itself was
    never affected (each step has one backward)."""
    import sara.train.engine as engine
    from stage2 import bench_method

    config = engine.deepspeed_config

    def small_bucket(train, precision):
        cfg = config(train, precision)
        cfg["zero_optimization"]["reduce_bucket_size"] = 1000  # elements: several flushes per backward
        return cfg

    monkeypatch.setattr(engine, "deepspeed_config", small_bucket)
    size = dict(bench.TINY["wan2.2-ti2v-5b"])
    size["latent"] = bench.latent_shape(size["pixels"], size["spatial"])
    train = bench.engine_params("wan2.2-ti2v-5b", {}, tiny=True)
    assert (train.zero_stage, train.offload) == (2, "optimizer")
    res = bench_method("videorepa", size, torch.device("cpu"), 1, 1, train)
    assert res["aux_loss_fwd_bwd_ms"] > 0 and res["step_ms_median"] > 0


@pytest.mark.parametrize("model, expected", [
    # DiffSynth-Studio 2.1.12's diffsynth/configs/model_configs.py, the Wan2.1-T2V-1.3B and Wan2.2-TI2V-5B entries
    ("wan2.1-t2v-1.3b", dict(dim=1536, ffn_dim=8960, in_dim=16, out_dim=16, num_heads=12, num_layers=30)),
    ("wan2.2-ti2v-5b", dict(dim=3072, ffn_dim=14336, in_dim=48, out_dim=48, num_heads=24, num_layers=30)),
])
def test_the_public_trainer_benchmark_builds_the_same_models(model: str, expected: dict):
    """benchmarks/diffsynth_step.py times DiffSynth-Studio's step on the sizes our rows time: its WanModel
    arguments, read from our size table, must be the public configs of the same two models."""
    import diffsynth_step

    kwargs = diffsynth_step.wan_model_kwargs(bench.MODELS[model])
    assert {k: kwargs[k] for k in expected} == expected
    assert (kwargs["text_dim"], kwargs["patch_size"], kwargs["has_image_input"]) == (4096, (1, 2, 2), False)
