"""Training and sampling agree on the diffusion conventions, end to end.

A tiny DiT is overfit on one clip by the Stage 2 training code (`train_stage2`, run `sft`), then sampled by the
project's sampler (`sara.sample.Sampler`: diffusers' WanPipeline with the UniPC flow schedule). If training's
noising (z_t = (1 - sigma) z_0 + sigma eps), velocity target (eps - z_0), timestep scale (1000 sigma) and latent
normalisation ((z - mean) / std) are what the pipeline inverts, the sampled video's latents are the clip's; a sign,
scale or normalisation mismatch sends the sampler elsewhere.

Threshold: relative error ||z_sampled - z_clip|| / ||z_clip - mean|| < 0.5, in the normalised latent space both
sides share. 150 CPU steps do not memorise the clip exactly: the overfit model reaches 0.32 (training loss 1.17 ->
0.01), the untrained model 3.45. Planted mismatches, each seen failing: velocity target z_0 - eps gives 6.1,
timestep 100 sigma gives 1.31, un-normalised training latents give 1.11, and with the noising's two terms swapped
the model cannot fit the clip at all (loss stays ~1), which the overfit check catches first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from sara.config import Params
from stage2_testlib import REPO, launcher_env, make_clips  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # 150 training steps of batch 8 and two samplings in this process: 10-15 s of CPU

REL_ERROR = 0.5


def _params(root: Path) -> Params:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["project"]["device"] = "cpu"
    raw["data"]["out_dir"] = str(root / "clips")
    raw["dit"].update(base_dir=str(root / "base"), frames=5, height=32, width=32, num_heads=4, head_dim=32,
                      text_max_tokens=8)  # latents (16, 2, 4, 4): 8 tokens; wide enough to memorise one clip
    # the whole noise range (not only the high-noise band), so one expert can run every sampling step
    raw["train"].update(steps=150, lr=1e-2, warmup_steps=0, weight_decay=0.0, grad_clip=1e9, batch_size=8,
                        zero_stage=0, t_min=0.0, t_max=1.0, cache_frozen_inputs=True, checkpoint_every=1000,
                        log_every=1, out_dir=str(root / "dit"), state_dir=str(root / "state"))
    # the one-process engine: the conventions live in the Stage 2 loop both engines share, and its steps are cheaper
    # than DeepSpeed's on CPU (test_single_engine holds the two engines to the same trajectory)
    raw["train"]["engine"] = "torch"
    # the trained model for every step (the low-noise expert would take over below t = 875), no CFG
    raw["sample"].update(frames=5, height=32, width=32, steps=8, boundary_ratio=0.001, guidance=1.0)
    return Params.model_validate(raw)


def sampled_latents(sampler, prompt: str, seed: int) -> torch.Tensor:
    """The latents the project's sampler hands the VAE decoder (pipeline space: z * std + mean)."""
    seen: list[torch.Tensor] = []
    decode = sampler.pipe.vae.decode
    sampler.pipe.vae.decode = lambda z, *a, **k: seen.append(z.detach().clone()) or decode(z, *a, **k)
    try:
        sampler.generate(prompt, seed)
    finally:
        sampler.pipe.vae.decode = decode
    (z,) = seen
    return z


def test_a_dit_overfit_on_one_clip_samples_that_clips_latents(tmp_path: Path, launcher_env):
    import sara.sample as sample_mod
    from sara.models.dit import frames_to_pixels, load_base, save_base
    from sara.runs import Run
    from sara.data.clipset import ClipSet
    from sara.train.stage2 import train_stage2

    params = _params(tmp_path)
    make_clips(tmp_path / "clips", n=1)
    save_base(params, tmp_path / "base")
    losses: list[float] = []
    train_stage2(params, Run("sft"), log=lambda rec, step: losses.append(rec["loss"]), resume=False, progress=False)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    print(f"training loss: first 10 steps {first:.4f}, last 10 steps {last:.4f}")
    assert last < 0.2 * first  # it learned the clip (the correct conventions reach ~0.01 of ~1.4)

    # the clip's latents computed here from the VAE's posterior mean, not by the training code's helper
    vae = load_base(tmp_path / "base", "tiny", "cpu", with_low_noise=False).vae
    clip = ClipSet(tmp_path / "clips")[0]
    pixels = frames_to_pixels(torch.from_numpy(clip.frames[None]), params.dit.frames, (params.dit.height, params.dit.width))
    with torch.no_grad():
        z_clip = vae.encode(pixels).latent_dist.mean  # (1, 16, 2, 4, 4)
    mean = torch.tensor(vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std).view(1, -1, 1, 1, 1)

    def error(sampler) -> float:
        z = sampled_latents(sampler, clip.caption, seed=0)
        return float(((z - z_clip) / std).norm() / ((z_clip - mean) / std).norm())

    trained = error(sample_mod.Sampler(params, "sft", base_dir=tmp_path / "base", runs_dir=tmp_path / "dit"))
    untrained = error(sample_mod.Sampler(params, "base", base_dir=tmp_path / "base"))
    assert untrained > 2 * REL_ERROR  # the threshold tells a model that learned the clip from one that did not
    print(f"relative latent error: overfit {trained:.3f}, untrained {untrained:.3f}")
    assert trained < REL_ERROR, (trained, untrained)
