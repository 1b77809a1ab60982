"""Validation videos during Stage 2 (sara.train.validation, sara.stages.validation_log) at micro size on CPU: when
it samples, what it samples, that it leaves training untouched, and what lands in the run's MLflow run."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch

from sara.config import load_params
from stage2_testlib import REPO, sara_here, weights, write_params


def _params(base_dir: Path | None = None, **validation):
    """params.yaml with validation every 2 steps at 2 denoising steps (and the base model at `base_dir`)."""
    params = load_params(REPO / "params.yaml")
    v = params.train.validation.model_copy(update={"every": 2, "steps": 2, **validation})
    dit = params.dit.model_copy(update={"base_dir": str(base_dir)}) if base_dir else params.dit
    return params.model_copy(update={"train": params.train.model_copy(update={"validation": v}), "dit": dit})


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    from sara.models.dit import save_base

    root = tmp_path_factory.mktemp("validation_base")
    save_base(load_params(REPO / "params.yaml"), root)
    return root


def _setup(params, base_dir: Path):
    """The parts of a Stage2Setup a validator reads (models as build_stage2 loads them)."""
    from sara.models.dit import load_base

    base = load_base(base_dir, params.dit.kind, "cpu", torch.float32, with_low_noise=False)
    return SimpleNamespace(base=base, model=SimpleNamespace(transformer=base.transformer), device=torch.device("cpu"),
                           dist=SimpleNamespace(is_main=True))


def test_validator_samples_the_fixed_prompts_every_n_steps_and_leaves_training_untouched(tiny_base: Path):
    from sara.data.prompts import load_prompt_set
    from sara.train.validation import build_validator

    params = _params(tiny_base)
    setup = _setup(params, tiny_base)
    calls = []
    validate = build_validator(params, setup, lambda step, videos, seconds: calls.append((step, videos, seconds)))
    net = setup.model.transformer
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()

    assert validate(1) is None and calls == []  # not a validation step
    videos = validate(2)
    assert [c[0] for c in calls] == [2] and calls[0][1] is videos and calls[0][2] > 0
    items = load_prompt_set("synthetic")[:2]
    assert [v.prompt_id for v in videos] == [i.id for i in items] and all(v.spec == i.spec for v, i in zip(videos, items))
    assert all(v.frames.shape == (9, 64, 64, 3) and v.frames.dtype == np.uint8 and v.step == 2 for v in videos)
    # training is untouched: train mode, weights, no grads, and the global RNG (exact resume draws from it)
    assert net.training and all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None for p in net.parameters()) and torch.equal(rng, torch.get_rng_state())
    # the same weights sample the same videos; other weights other videos
    again = validate(4)
    assert all(np.array_equal(a.frames, b.frames) for a, b in zip(videos, again))
    with torch.no_grad():
        net.proj_out.bias.add_(0.5)
    assert not np.array_equal(validate(6)[0].frames, videos[0].frames)


def test_validation_is_off_by_default_and_loads_a_low_noise_expert_only_with_a_boundary(tiny_base: Path):
    from sara.train.validation import build_validator

    params = load_params(REPO / "params.yaml")
    assert params.train.validation.every == 0 and load_params(REPO / "configs" / "paper.yaml").train.validation.every == 0
    setup = _setup(params, tiny_base)
    assert build_validator(params, setup, None)(100) is None  # off: a no-op, nothing built
    validator = build_validator(_params(tiny_base, boundary_ratio=0.875), setup, None)
    assert validator.pipe.transformer_2 is not None and validator.pipe.config.boundary_ratio == 0.875
    assert build_validator(_params(), setup, None).pipe.transformer_2 is None  # one expert: nothing else loaded


def test_the_sink_logs_mp4s_and_grounded_scores_into_the_run(tracking, tmp_path: Path):
    from sara.data.prompts import load_prompt_set
    from sara.data.synthetic import render
    from sara.stages.validation_log import log_validation
    from sara.train.validation import ValidationVideo

    items = load_prompt_set("synthetic")[:2]
    truth = [render(i.spec, 9, 64, 64, 8)[0] for i in items]  # the renderer's own clips: the grounded judge's 5s
    videos = [ValidationVideo(4, i.id, 0, frames, 8, i.spec) for i, frames in zip(items, truth)]
    videos.append(ValidationVideo(4, "real_01", 0, truth[0], 8, None))  # no ground truth: logged, not scored
    mlflow.set_experiment("sara")
    with mlflow.start_run() as run:
        log_validation(4, videos, 1.5)
    files = sorted(a.path for a in tracking.list_artifacts(run.info.run_id, "validation/step_000004"))
    assert files == sorted(f"validation/step_000004/{v.prompt_id}_s0.mp4" for v in videos)
    metrics = tracking.get_run(run.info.run_id).data.metrics
    assert metrics["val_seconds"] == 1.5 and metrics["val_TA"] >= 4.5 and metrics["val_MQ"] >= 4.0
    assert [m.step for m in tracking.get_metric_history(run.info.run_id, "val_TA")] == [4]


@pytest.mark.slow
def test_a_stage2_run_logs_validation_videos_and_trains_exactly_as_without(workspace: Path):
    """`sara train-dit` with train.validation.every 2: videos and scores at steps 2 and 4 in the run's MLflow run,
    and bitwise the same final weights as the same run without validation."""
    plain, validated = workspace / "val_off", workspace / "val_on"
    plain.mkdir(), validated.mkdir()
    r = sara_here(plain, "train-dit", "--params", str(write_params(plain, "p", steps=4, checkpoint_every=4)), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    on = write_params(validated, "p", steps=4, checkpoint_every=4, validation={**_params().train.validation.model_dump()})
    r = sara_here(validated, "train-dit", "--params", str(on), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    wa, wb = weights(plain / "dit" / "sft"), weights(validated / "dit" / "sft")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{validated / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("sara").experiment_id])[0]
    for step in (2, 4):
        names = [a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(run.info.run_id, f"validation/step_{step:06d}")]
        assert len(names) == 2 and all(n.endswith("_s0.mp4") for n in names)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_TA")] == [2, 4]
