"""Two-expert sampling on tiny models saved with save_pretrained, mp4 + contact sheets, VBench file naming."""

from __future__ import annotations

import json

import numpy as np
import pytest

import sara.sample as sample_mod
from sara.data.video_io import contact_sheet
from sara.config import load_params, params_from_dict


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from sara.models.dit import save_base

    root = tmp_path_factory.mktemp("base")
    params = load_params("params.yaml")
    save_base(params, root / "base")
    return params, root



def test_sampler_is_deterministic_per_seed_and_uses_both_experts(tiny):
    params, root = tiny
    s = sample_mod.Sampler(params, "base", base_dir=root / "base")
    a, b, c = s.generate("a red circle", 0), s.generate("a red circle", 0), s.generate("a red circle", 1)
    assert a.shape == (9, 64, 64, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert s.pipe.config.boundary_ratio == 0.875 and s.pipe.transformer_2 is not None
    # 4 shifted UniPC steps: three above the 875 boundary (high-noise expert), one below (low-noise expert)
    assert [int(t) >= 875 for t in s.pipe.scheduler.timesteps] == [True, True, True, False]


def test_seeds_of_a_prompt_sample_in_one_batch_with_the_videos_of_single_seeds(tiny):
    """Sampling batches every seed of a prompt (3x fewer pipeline calls on the lab's 18 prompts x 3 seeds); each
    video keeps its own seeded noise, so it matches the one-seed video up to batched-matmul rounding."""
    params, root = tiny
    s = sample_mod.Sampler(params, "base", base_dir=root / "base")
    batch = s.generate_seeds("a red circle", [1, 0])
    for seed, video in zip([1, 0], batch):
        single = s.generate_seeds("a red circle", [seed])[0]
        assert np.abs(video.astype(int) - single.astype(int)).max() <= 2
    assert not np.array_equal(batch[0], batch[1])


def test_prompts_and_seeds_sample_in_one_batch_with_the_videos_of_single_prompts(tiny):
    """On the H200 a lab sample stage spent 35-41 s on 18 pipeline calls of 3 videos each, launch-bound; batching
    across prompts keeps each video's own seeded noise and prompt, so a video matches its one-prompt batch."""
    params, root = tiny
    s = sample_mod.Sampler(params, "base", base_dir=root / "base")
    prompts, seeds = ["a red circle", "a blue square", "a red circle"], [0, 0, 1]
    batch = s.generate_batch(prompts, seeds)
    for prompt, seed, video in zip(prompts, seeds, batch):
        single = s.generate_seeds(prompt, [seed])[0]
        assert np.abs(video.astype(int) - single.astype(int)).max() <= 2
    assert not np.array_equal(batch[0], batch[1])


def test_sample_run_batches_videos_per_call_across_prompts(tiny, tmp_path, monkeypatch):
    params, root = tiny
    prompts = sample_mod.load_prompts("synthetic")[:3]
    monkeypatch.setattr(sample_mod, "load_prompts", lambda name: prompts)
    calls: list[int] = []
    original = sample_mod.Sampler.generate_batch
    monkeypatch.setattr(sample_mod.Sampler, "generate_batch",
                        lambda self, ps, ss: calls.append(len(ps)) or original(self, ps, ss))
    raw = params.model_dump(mode="json")
    raw["sample"].update(seeds=[0, 3], videos_per_call=4)
    index = sample_mod.sample_run(params_from_dict(raw), "base", tmp_path / "base", base_dir=root / "base")
    assert calls == [4, 2]  # 3 prompts x 2 seeds in calls of at most 4 videos
    assert [(v["prompt_id"], v["seed"]) for v in index["videos"]] == [
        (it.id, seed) for it in prompts for seed in (0, 3)]


def test_trained_run_replaces_only_the_high_noise_expert(tiny, tmp_path):
    """A run's folder holds the trained high-noise expert (here: the base one with every weight shifted); sampling
    that run uses it for the high-noise steps and keeps the base model's low-noise expert and VAE."""
    import torch
    from diffusers import WanTransformer3DModel

    params, root = tiny
    trained = WanTransformer3DModel.from_pretrained(root / "base" / "transformer")
    with torch.no_grad():
        for p in trained.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    trained.save_pretrained(tmp_path / "sft" / "transformer")
    s = sample_mod.Sampler(params, "sft", base_dir=root / "base", runs_dir=tmp_path)
    base = sample_mod.Sampler(params, "base", base_dir=root / "base")

    def same(a, b) -> bool:
        return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))

    assert same(s.pipe.transformer, trained) and not same(base.pipe.transformer, trained)
    assert same(s.pipe.transformer_2, base.pipe.transformer_2) and same(s.pipe.vae, base.pipe.vae)
    assert not np.array_equal(s.generate("x", 0), base.generate("x", 0))  # three of four steps run the trained one
    with pytest.raises(FileNotFoundError, match="has no trained transformer"):
        sample_mod.Sampler(params, "moalign", base_dir=root / "base", runs_dir=tmp_path)


def test_sample_run_writes_videos_sheets_index_and_vbench_names(tiny, tmp_path, monkeypatch):
    params, root = tiny
    prompts = sample_mod.load_prompts("synthetic")[:2]
    monkeypatch.setattr(sample_mod, "load_prompts", lambda name: prompts)
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps([{"prompt_en": "a cat", "dimension": ["x"]}, {"prompt_en": "a dog", "dimension": ["y"]},
                                 {"prompt_en": "a cat", "dimension": ["z"]}]))
    raw = params.model_dump(mode="json")
    raw["sample"].update(vbench_prompts=str(suite), vbench_videos_per_prompt=2, seeds=[0, 3])
    p = params_from_dict(raw)
    out = tmp_path / "base"
    index = sample_mod.sample_run(p, "base", out, base_dir=root / "base", log=lambda s: None)
    names = sorted(x.name for x in out.iterdir())
    assert names == ["index.json", "syn_01_s0.mp4", "syn_01_s0.png", "syn_01_s3.mp4", "syn_01_s3.png",
                     "syn_02_s0.mp4", "syn_02_s0.png", "syn_02_s3.mp4", "syn_02_s3.png", "vbench"]
    assert sorted(x.name for x in (out / "vbench").iterdir()) == ["a cat-0.mp4", "a cat-1.mp4", "a dog-0.mp4", "a dog-1.mp4"]
    assert index["sampler"]["steps"] == 4 and index["sampler"]["boundary_ratio"] == 0.875
    assert index["suites"]["vbench"] == {"prompts": 2, "videos_per_prompt": 2, "dir": "vbench"}
    from sara.data.video_io import read_video

    frames, fps = read_video(out / "syn_01_s0.mp4")
    assert frames.shape == (9, 64, 64, 3) and fps == 8


def test_contact_sheet_layout_and_vbench_filename():
    frames = np.zeros((9, 16, 16, 3), np.uint8)
    frames[4] = 255
    sheet = contact_sheet(frames, scale=2, gap=2)
    assert sheet.shape == (32, 9 * 34 - 2, 3)
    assert sheet[20, 4 * 34 + 20].tolist() == [255, 255, 255] and sheet[20, 3 * 34 + 20].tolist() == [0, 0, 0]
    assert contact_sheet(frames, label="x").shape[0] == 32 + 14
    assert sample_mod.vbench_filename("a cat on a mat", 3) == "a cat on a mat-3.mp4"
    with pytest.raises(ValueError, match="contains '/'"):
        sample_mod.vbench_filename("AC/DC", 0)
