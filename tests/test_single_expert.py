"""The one-GPU recipes (configs/wan2.1-t2v-1.3b.yaml, configs/wan2.2-ti2v-5b.yaml) and single-expert Wan models:
the recipes' settings, missing weights refused before any work, and the loaders read tiny `save_pretrained` models of
each architecture in the layout the hub repos download in (Wan-AI/Wan2.1-T2V-1.3B-Diffusers,
Wan-AI/Wan2.2-TI2V-5B-Diffusers: model_index.json + transformer/ vae/ text_encoder/ tokenizer/ scheduler/)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sara.config import ParamsError, load_params, params_from_dict
from sara.errors import MissingWeightsError

REPO = Path(__file__).resolve().parents[1]
RECIPES = {"wan2.1": REPO / "configs" / "wan2.1-t2v-1.3b.yaml", "wan2.2": REPO / "configs" / "wan2.2-ti2v-5b.yaml"}
HUB_DIRS = {"wan2.1": "/models/Wan2.1-T2V-1.3B-Diffusers", "wan2.2": "/models/Wan2.2-TI2V-5B-Diffusers"}

# The architecture-defining fields of each hub repo's config.json (diffusers' scripts/convert_wan_to_diffusers.py:
# "Wan-T2V-1.3B", "Wan2.2-TI2V-5B" and vae22_diffusers_config); widths and depths are shrunk to CPU size below.
HUB_TRANSFORMER = {
    "wan2.1": dict(patch_size=[1, 2, 2], in_channels=16, out_channels=16, qk_norm="rms_norm_across_heads", cross_attn_norm=True),
    "wan2.2": dict(patch_size=[1, 2, 2], in_channels=48, out_channels=48, qk_norm="rms_norm_across_heads", cross_attn_norm=True),
}
HUB_VAE = {
    "wan2.1": dict(z_dim=16, dim_mult=[1, 2, 4, 4], temperal_downsample=[False, True, True]),  # 4x8x8
    "wan2.2": dict(z_dim=48, is_residual=True, in_channels=12, out_channels=12, patch_size=2, dim_mult=[1, 2, 4, 4],
                   scale_factor_temporal=4, scale_factor_spatial=16, temperal_downsample=[False, True, True],
                   latents_mean=[0.0] * 48, latents_std=[1.0] * 48),  # 4x16x16
}
TEXT_DIM = 32  # the tiny UMT5's d_model (the real one: 4096)


def _recipe_raw(name: str) -> dict:
    return yaml.safe_load(RECIPES[name].read_text())


@pytest.mark.parametrize("name", ["wan2.1", "wan2.2"])
def test_recipes_are_single_expert_with_their_own_vae_umt5_and_vjepa2_vitl(name: str):
    from sara.models.dit import scaled_hook_layer

    p = load_params(RECIPES[name])
    assert set(_recipe_raw(name)) == set(p.model_dump())  # every section written out, as configs/paper.yaml
    d = p.dit
    assert d.kind == "local" and d.low_noise_path is None and p.sample.boundary_ratio is None
    assert p.sample.guidance_2 is None and p.train.validation.boundary_ratio is None
    # the hub layout: one checkout, one subfolder per component
    assert (d.path, d.vae_path, d.text_encoder_path) == tuple(f"{HUB_DIRS[name]}/{sub}" for sub in ("transformer", "vae", "text_encoder"))
    assert (p.vfm.kind, p.vfm.image_size, p.vfm.hidden_size, p.vfm.num_layers) == ("local", 256, 1024, 24)
    assert p.trd.layer == scaled_hook_layer(30) == 14  # 18 of 40 at 30 blocks (both models have 30)
    assert (p.train.t_min, p.train.t_max) == (0.0, 1.0)  # one expert denoises every step
    size = (d.frames, d.height, d.width)
    assert size == (p.sample.frames, p.sample.height, p.sample.width)
    if name == "wan2.1":
        assert size == (81, 480, 832) and p.train.offload == "none" and p.sample.fps == 16
    else:
        assert size == (121, 704, 1280) and p.train.offload == "optimizer" and p.sample.fps == 24


def test_scaled_hook_layer_keeps_the_papers_relative_depth():
    from sara.models.dit import scaled_hook_layer

    assert scaled_hook_layer(40) == 18 and scaled_hook_layer(30) == 14 and scaled_hook_layer(2) == 1
    assert scaled_hook_layer(1) == 1


@pytest.mark.parametrize("name", ["wan2.1", "wan2.2"])
def test_missing_recipe_weights_fail_before_any_work_with_one_line(name: str, tmp_path: Path, tracking):
    from sara.stages import init_dit

    raw = _recipe_raw(name)
    raw["dit"]["base_dir"] = str(tmp_path / "models" / "base")
    params = params_from_dict(raw)
    with pytest.raises(MissingWeightsError) as err:
        init_dit.run(params)
    assert str(err.value) == (f"dit.path = '{HUB_DIRS[name]}/transformer' does not exist: it must be a local directory "
                              "containing the Wan transformer (a single-expert model) in diffusers format "
                              "(config.json + safetensors)")
    assert not (tmp_path / "models").exists()
    experiments = [e.experiment_id for e in tracking.search_experiments()]
    assert not experiments or not tracking.search_runs(experiments)  # no MLflow run was opened


def test_expert_count_and_boundary_ratio_must_agree(tmp_path: Path):
    from sara.models.dit import local_manifest

    wan = _tiny_hub_checkout(tmp_path / "hub", "wan2.1")
    raw = _recipe_params(tmp_path, "wan2.1", wan)
    raw["dit"]["low_noise_path"] = str(wan / "transformer")
    with pytest.raises(ParamsError, match=r"^dit.low_noise_path = .* names a low-noise expert but sample.boundary_ratio "
                                          r"is null \(one expert\)"):
        local_manifest(params_from_dict(raw))
    # paper scale (a boundary): the low-noise expert is required, named in one line
    raw = _recipe_params(tmp_path, "wan2.1", wan)
    raw["sample"]["boundary_ratio"] = 0.875
    with pytest.raises(MissingWeightsError, match=r"^dit.low_noise_path is not set: .*Wan2.2 low-noise expert"):
        local_manifest(params_from_dict(raw))


def _tiny_hub_checkout(root: Path, name: str) -> Path:
    """A WanPipeline of `name`'s architecture at CPU size, saved as the hub repo lays it out."""
    from diffusers import AutoencoderKLWan, UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from sara.models.dit import minilm_dir

    if (root / "model_index.json").is_file():
        return root
    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**HUB_TRANSFORMER[name], num_attention_heads=2, attention_head_dim=8,
                                        text_dim=TEXT_DIM, freq_dim=32, ffn_dim=32, num_layers=2, rope_max_seq_len=64)
    vae = AutoencoderKLWan(**HUB_VAE[name], base_dim=8, **({"decoder_base_dim": 8} if name == "wan2.2" else {}),
                           num_res_blocks=1)
    text = UMT5EncoderModel(UMT5Config(vocab_size=31000, d_model=TEXT_DIM, d_kv=8, d_ff=64, num_layers=1, num_heads=4))
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir())  # any tokenizer: the layout is what is tested
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text, vae=vae, scheduler=scheduler, transformer=transformer,
                       expand_timesteps=name == "wan2.2")  # the TI2V-5B repo's pipeline config
    pipe.save_pretrained(root)
    return root


def _recipe_params(tmp: Path, name: str, checkout: Path) -> dict:
    """The recipe with its /models/<repo> checkout replaced by `checkout`, at CPU clip sizes."""
    raw = _recipe_raw(name)
    for key in ("path", "vae_path", "text_encoder_path"):
        raw["dit"][key] = raw["dit"][key].replace(HUB_DIRS[name], str(checkout))
    size = dict(frames=5, height=64, width=64)
    raw["dit"].update(size, text_max_tokens=16, base_dir=str(tmp / "base"))
    raw["sample"].update(size, steps=2)
    raw["project"]["device"] = "cpu"
    return raw


@pytest.mark.parametrize("name, latent", [("wan2.1", (1, 16, 2, 8, 8)), ("wan2.2", (1, 48, 2, 4, 4))])
def test_loaders_read_the_hub_layout_of_each_architecture(name: str, latent: tuple, tmp_path: Path):
    from sara.models.dit import encode_latents, frames_to_pixels, load_base, save_base, token_grid
    from sara.sample import Sampler

    checkout = _tiny_hub_checkout(tmp_path / "hub", name)
    index = json.loads((checkout / "model_index.json").read_text())
    assert {"transformer", "vae", "text_encoder", "tokenizer", "scheduler"} <= set(index)
    params = params_from_dict(_recipe_params(tmp_path, name, checkout))
    manifest = save_base(params, tmp_path / "base")
    assert manifest["transformer_2"] is None and manifest["transformer"] == str((checkout / "transformer").resolve())
    base = load_base(tmp_path / "base", "local", with_low_noise=False)
    assert base.text.kind == "umt5" and base.vae.config.z_dim == latent[1]
    clip = torch.randint(0, 256, (1, 9, 64, 64, 3), dtype=torch.uint8)
    z = encode_latents(base.vae, frames_to_pixels(clip, 5, (64, 64)))
    assert z.shape == latent  # Wan2.1 VAE: 4x8x8, 16 channels; Wan2.2 VAE: 4x16x16, 48 channels
    states = base.text(["a red circle"])
    assert states.shape == (1, 16, TEXT_DIM)
    pred = base.transformer(z, torch.tensor([900.0]), states, return_dict=False)[0]
    assert pred.shape == z.shape and token_grid(base.transformer, z.shape) == (2, latent[3] // 2, latent[4] // 2)
    # sampling: one expert for every step, no low-noise expert loaded
    s = Sampler(params, "base", base_dir=tmp_path / "base")
    assert s.pipe.transformer_2 is None and s.pipe.config.boundary_ratio is None
    video = s.generate("a red circle", 0)
    assert video.shape == (5, 64, 64, 3) and video.dtype == np.uint8
    with pytest.raises(ParamsError, match="holds a single-expert model"):  # a boundary needs a second expert
        Sampler(params.model_copy(update={"sample": params.sample.model_copy(update={"boundary_ratio": 0.875})}),
                "base", base_dir=tmp_path / "base")


def test_offload_settings_reach_deepspeed_and_need_the_right_zero_stage():
    from sara.config import TrainParams
    from sara.train.engine import deepspeed_config

    cfg = deepspeed_config(TrainParams(zero_stage=2, offload="optimizer"), "bf16")
    assert cfg["zero_optimization"]["offload_optimizer"]["device"] == "cpu"
    assert "offload_param" not in cfg["zero_optimization"] and cfg["zero_force_ds_cpu_optimizer"] is False
    cfg = deepspeed_config(TrainParams(zero_stage=3, offload="all"), "bf16")
    assert cfg["zero_optimization"]["offload_param"]["device"] == "cpu"
    assert "offload_optimizer" not in deepspeed_config(TrainParams(zero_stage=2), "bf16")["zero_optimization"]
    with pytest.raises(ParamsError, match=r"^invalid params in <dict>: train: offload 'all' needs zero_stage 3"):
        params_from_dict({"train": {"zero_stage": 2, "offload": "all"}})
    with pytest.raises(ParamsError, match=r"train: offload 'optimizer' needs zero_stage >= 1"):
        params_from_dict({"train": {"zero_stage": 0, "offload": "optimizer"}})
