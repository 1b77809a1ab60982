"""The Wan DiT side of Stage 2: base model round trips (tiny and local), text conditioning, the feature hook, grids."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sara.config import Params, params_from_dict
from sara.models.dit import (
    BlockFeatureHook,
    encode_latents,
    frames_to_pixels,
    load_base,
    load_trained_transformer,
    read_manifest,
    save_base,
    tiny_transformer_config,
    token_grid,
)

PARAMS = Params()


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("base")
    save_base(PARAMS, out)
    return out


def test_tiny_base_round_trips_through_save_pretrained(tiny_base: Path):
    from diffusers import WanTransformer3DModel

    manifest = read_manifest(tiny_base)
    assert manifest["kind"] == "tiny" and manifest["text"] == {"kind": "minilm", "path": None, "max_tokens": 64}
    c = load_base(tiny_base, PARAMS.dit.kind)
    torch.manual_seed(PARAMS.dit.init_seed)  # the same seeded init init_dit used
    fresh = WanTransformer3DModel(**tiny_transformer_config(PARAMS.dit))
    for (k, a), (_, b) in zip(c.transformer.state_dict().items(), fresh.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    assert c.transformer.training and all(p.requires_grad for p in c.transformer.parameters())
    assert not any(p.requires_grad for p in c.vae.parameters()) and not any(p.requires_grad for p in c.transformer_2.parameters())
    # the low-noise expert is a different random init
    assert not torch.equal(next(c.transformer.parameters()), next(c.transformer_2.parameters()))
    with pytest.raises(ValueError, match="was built for dit.kind='tiny' but params say 'local'"):
        load_base(tiny_base, "local")


def pipeline_prompt_embeds(c, prompts: list[str]) -> torch.Tensor:
    """WanPipeline's own prompt encoding with the base's tokenizer and encoder (what diffusers would feed the DiT)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, WanPipeline

    pipe = WanPipeline(tokenizer=c.text.tokenizer, text_encoder=c.text.encoder, vae=c.vae,
                       scheduler=FlowMatchEulerDiscreteScheduler(), transformer=c.transformer)
    embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=c.text.max_tokens,
                                   device=torch.device("cpu"))
    return embeds


def test_text_conditioner_pads_with_exact_zeros_to_max_tokens(tiny_base: Path):
    c = load_base(tiny_base, PARAMS.dit.kind, with_low_noise=False)
    states = c.text(["a red circle bounces", "a much longer caption " * 40])
    assert states.shape == (2, 64, 384)
    # the conditioning Stage 2 trains with and the sampler passes is what the pipeline's own encoder path makes
    torch.testing.assert_close(states, pipeline_prompt_embeds(c, ["a red circle bounces", "a much longer caption " * 40]))
    n = len(c.text.tokenizer("a red circle bounces")["input_ids"])
    assert torch.count_nonzero(states[0, n:]) == 0 and torch.count_nonzero(states[0, :n].abs().sum(-1)) == n
    assert torch.count_nonzero(states[1].abs().sum(-1)) == 64  # truncated, not padded


def test_hook_returns_the_output_of_block_layer_minus_one(tiny_base: Path):
    c = load_base(tiny_base, PARAMS.dit.kind, with_low_noise=False)
    tr = c.transformer.eval()
    captured = {}
    handle = tr.blocks[0].register_forward_hook(lambda m, a, o: captured.__setitem__("b0", o))
    hook = BlockFeatureHook(tr, 1)  # 1-based: the output of blocks[0]
    z = torch.randn(1, 16, 3, 8, 8)
    tr(z, torch.tensor([950.0]), torch.randn(1, 64, 384))
    torch.testing.assert_close(hook.pop(), captured["b0"])
    with pytest.raises(RuntimeError, match="no features captured at trd.layer = 1"):
        hook.pop()
    handle.remove()
    hook.remove()
    with pytest.raises(ValueError, match=r"trd.layer = 3: must be in \[1, 2\]"):
        BlockFeatureHook(tr, 3)


def test_frames_latents_and_token_grid_shapes(tiny_base: Path):
    c = load_base(tiny_base, PARAMS.dit.kind, with_low_noise=False)
    frames = torch.randint(0, 256, (2, 16, 48, 48, 3), dtype=torch.uint8)
    px = frames_to_pixels(frames, 9, (64, 64))
    assert px.shape == (2, 3, 9, 64, 64) and float(px.min()) >= -1.0 and float(px.max()) <= 1.0
    # bin-centre frames, the same rule as the V-JEPA preprocessing: frame 0 of 9 from 16 is clip frame 0
    torch.testing.assert_close(frames_to_pixels(frames[:, :1], None, None)[:, :, 0], frames[:, 0].permute(0, 3, 1, 2).float() / 127.5 - 1)
    z = encode_latents(c.vae, px)
    assert z.shape == (2, 16, 3, 8, 8)
    assert token_grid(c.transformer, z.shape) == (3, 4, 4)
    # the posterior mean (not a sample: a resumed run must see the same z_0) in Wan's per-channel normalisation,
    # the inverse of WanPipeline's `latents * std + mean` before decoding
    posterior = c.vae.encode(px).latent_dist
    mean = torch.tensor(c.vae.config.latents_mean).view(1, -1, 1, 1, 1)
    std = torch.tensor(c.vae.config.latents_std).view(1, -1, 1, 1, 1)
    assert not torch.equal(mean, torch.zeros_like(mean)) and not torch.equal(std, torch.ones_like(std))
    assert float(posterior.std.min()) > 0  # a sample would differ from the mean
    torch.testing.assert_close(z, (posterior.mean - mean) / std, rtol=0, atol=0)


def test_local_kind_writes_a_manifest_and_loads_the_same_code_path(tmp_path: Path, tiny_base: Path):
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

    from sara.models.dit import minilm_dir

    wan = tmp_path / "Wan2.2-tiny"
    for sub, src in (("transformer", "transformer"), ("transformer_2", "transformer_2"), ("vae", "vae")):
        cls = AutoencoderKLWan if sub == "vae" else WanTransformer3DModel
        model = cls.from_pretrained(tiny_base / src)
        if sub != "vae":  # the local expert reads UMT5 states of width 32
            model = WanTransformer3DModel(**{**tiny_transformer_config(PARAMS.dit), "text_dim": 32})
        model.save_pretrained(wan / sub)
    UMT5EncoderModel(UMT5Config(vocab_size=31000, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4)).save_pretrained(wan / "text_encoder")
    AutoTokenizer.from_pretrained(minilm_dir()).save_pretrained(wan / "tokenizer")  # any tokenizer: sibling dir
    dit = {"kind": "local", "path": str(wan / "transformer"), "low_noise_path": str(wan / "transformer_2"),
           "vae_path": str(wan / "vae"), "text_encoder_path": str(wan / "text_encoder"), "text_max_tokens": 16}
    params = params_from_dict({"dit": dit})
    manifest = save_base(params, tmp_path / "base")
    assert manifest["transformer"] == str((wan / "transformer").resolve())
    assert not (tmp_path / "base" / "transformer").exists()  # weights are never copied
    c = load_base(tmp_path / "base", params.dit.kind)
    states = c.text(["a caption"])
    assert states.shape == (1, 16, 32)
    torch.testing.assert_close(states, pipeline_prompt_embeds(c, ["a caption"]))  # UMT5 as WanPipeline encodes it
    out = c.transformer(torch.randn(1, 16, 3, 8, 8), torch.tensor([900.0]), states).sample
    assert out.shape == (1, 16, 3, 8, 8)
    # a missing directory is one clear error naming the param, the path and what belongs there
    bad = params_from_dict({"dit": {**dit, "vae_path": str(tmp_path / "nope")}})
    with pytest.raises(FileNotFoundError, match=r"dit.vae_path = '.*nope' does not exist: it must be a local directory containing the Wan AutoencoderKLWan"):
        save_base(bad, tmp_path / "base2")
    with pytest.raises(FileNotFoundError, match="dit.path is not set"):
        save_base(params_from_dict({"dit": {**dit, "path": None}}), tmp_path / "base3")


def test_load_trained_transformer_reads_a_run_dir(tmp_path: Path, tiny_base: Path):
    from diffusers import WanTransformer3DModel

    WanTransformer3DModel.from_pretrained(tiny_base / "transformer").save_pretrained(tmp_path / "run" / "transformer")
    m = load_trained_transformer(tmp_path / "run")
    assert not m.training and not any(p.requires_grad for p in m.parameters())
    with pytest.raises(FileNotFoundError, match="has no trained transformer"):
        load_trained_transformer(tmp_path / "missing")


@pytest.mark.parametrize("section", ["dit", "sample"])
def test_frame_counts_must_be_4k_plus_1(section: str):
    """Both frame counts the Wan VAE sees (training clips and sampled videos) are checked at params time."""
    from sara.config import ParamsError

    for bad in (8, 10, 12):
        with pytest.raises(ParamsError, match=rf"{section}\.frames: must be 4k\+1"):
            params_from_dict({section: {"frames": bad}})
    for good in (1, 9, 17, 81):
        assert getattr(params_from_dict({section: {"frames": good}}), section).frames == good


def test_the_base_model_seed_is_its_own_param(tmp_path):
    """`train.seed` (a Stage 2 sweep axis) must not change the base model; `dit.init_seed` does."""
    from safetensors.torch import load_file

    from sara.models.dit import save_base

    def base_weights(name: str, **overrides) -> dict:
        raw = PARAMS.model_dump()
        for key, value in overrides.items():
            section, field = key.split(".")
            raw[section][field] = value
        save_base(Params.model_validate(raw), tmp_path / name)
        return load_file(tmp_path / name / "transformer" / "diffusion_pytorch_model.safetensors")

    ref = base_weights("ref")
    same = base_weights("train_seed", **{"train.seed": PARAMS.train.seed + 1})
    other = base_weights("init_seed", **{"dit.init_seed": PARAMS.dit.init_seed + 1})
    assert all(torch.equal(ref[k], same[k]) for k in ref)
    assert any(not torch.equal(ref[k], other[k]) for k in ref)
