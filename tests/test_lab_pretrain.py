"""Lab scale at micro size on CPU: corpus, VAE, VideoMAE encoder and base DiT pretraining through the same code
the GPU runs (2 steps each), the encoder gates, the learning curve, and the loaders downstream stages use."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sara.config import params_from_dict

ROOT = Path(__file__).resolve().parents[1]


def micro_lab_params(tmp: Path, steps: int = 2, **extra):
    raw = yaml.safe_load((ROOT / "configs" / "lab.yaml").read_text())
    raw["project"]["device"] = "cpu"
    c = raw["pretrain"]["corpus"]
    c.update(n_train=6, n_heldout=4, frames=5, height=32, width=32, workers=1, out_dir=str(tmp / "corpus"))
    raw["pretrain"]["vae"].update(base_dim=8, dim_mult=[1, 1, 1], steps=steps, batch_size=2, eval_clips=2,
                                  out_dir=str(tmp / "vae"))
    raw["pretrain"]["vfm"].update(hidden_size=32, num_layers=1, num_heads=2, decoder_hidden_size=16, decoder_num_layers=1,
                                  steps=steps, batch_size=2, probe_clips=4, eval_every=1, out_dir=str(tmp / "vfm"))
    raw["pretrain"]["dit"].update(steps=2, batch_size=2, compile=False, eval_every=1, eval_steps=2, ema_decay=0.5)
    raw["vfm"].update(path=str(tmp / "vfm"), frames=4, image_size=32, patch_size=8, hidden_size=32, num_layers=1, num_heads=2)
    raw["dit"].update(num_layers=1, num_heads=2, head_dim=16, frames=5, height=32, width=32, base_dir=str(tmp / "base"))
    raw["sample"].update(frames=5, height=32, width=32, steps=2)
    for k, v in extra.items():
        section, key = k.split("__")
        raw[section][key] = v
    return params_from_dict(raw, "micro lab")


@pytest.fixture(scope="module")
def micro_lab(tmp_path_factory):
    from sara.io import atomic_dir
    from sara.stages import corpus, pretrain_vae, pretrain_vfm
    from sara.stages.pretrain_dit import pretrain_base

    tmp = tmp_path_factory.mktemp("lab")
    params = micro_lab_params(tmp)
    with atomic_dir(tmp / "corpus") as d:
        corpus.build_output(params, d)
    with atomic_dir(tmp / "vae") as d:
        pretrain_vae.build_output(params, d)
    with atomic_dir(tmp / "vfm") as d:
        pretrain_vfm.build_output(params, d)
    with atomic_dir(tmp / "base") as d:
        pretrain_base(params, d)
    return tmp, params


def test_lab_config_holds_the_whole_caption():
    from sara.config import load_params

    p = load_params(ROOT / "configs" / "lab.yaml")
    assert p.project.scale == "lab" and p.dit.text_max_tokens >= 512
    assert p.vfm.kind == "videomae" and p.vfm.path == p.pretrain.vfm.out_dir
    assert (p.dit.frames, p.dit.height, p.dit.width) == (p.pretrain.corpus.frames, p.pretrain.corpus.height, p.pretrain.corpus.width)


@pytest.mark.slow(wall_s=25)  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_corpus_is_deterministic_and_labelled(micro_lab):
    from sara.data.corpus import MOTION_CLASSES, load_corpus, render_clip

    tmp, params = micro_lab
    train, held = load_corpus(tmp / "corpus", "train"), load_corpus(tmp / "corpus", "heldout")
    assert train.frames.shape == (6, 5, 32, 32, 3) and len(train.captions) == 6
    assert held.masks.shape == (4, 4, 5, 32, 32)
    again = render_clip(params.pretrain.corpus, "train", 3)
    np.testing.assert_array_equal(again["frames"], train.frames[3])  # parallel or not, clip i is clip i
    assert all(lab_["motion"] in MOTION_CLASSES for clip in held.labels for lab_ in clip)


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_vae_gate_metrics_and_normalisation_are_those_of_the_saved_model(micro_lab):
    """Recomputed from the saved VAE: the held-out PSNR (8-bit, mean over the first eval_clips clips) and its gate,
    and the latent normalisation as the per-channel mean / std of the training clips' posterior means."""
    from diffusers import AutoencoderKLWan

    from sara.data.corpus import load_corpus

    tmp, params = micro_lab
    m = json.loads((tmp / "vae" / "metrics.json").read_text())
    assert m["steps_done"] == 2 and (tmp / "vae" / "reconstruction.png").is_file()
    vae = AutoencoderKLWan.from_pretrained(tmp / "vae").eval()

    def posterior_mean(frames: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1  # (B, 3, F, H, W) in [-1, 1]
        with torch.no_grad():
            return vae.encode(x).latent_dist.mean

    held = load_corpus(tmp / "corpus", "heldout").frames[: params.pretrain.vae.eval_clips]
    with torch.no_grad():
        rec = vae.decode(posterior_mean(held)).sample.clamp(-1, 1)
    rec = ((rec + 1) * 127.5).round().permute(0, 2, 3, 4, 1).numpy()  # (B, F, H, W, 3) 8-bit
    mse = ((rec - held.astype(np.float64)) ** 2).reshape(len(held), -1).mean(1)
    psnr = float(np.mean(10 * np.log10(255.0**2 / mse)))
    assert m["psnr_db"] == pytest.approx(psnr, abs=2e-3) and m["heldout_clips"] == len(held) == 2
    assert m["min_psnr_db"] == params.pretrain.vae.min_psnr_db and m["gate_met"] == (psnr >= m["min_psnr_db"])

    z = posterior_mean(load_corpus(tmp / "corpus", "train").frames).transpose(0, 1).flatten(1)  # (C, all positions)
    np.testing.assert_allclose(vae.config.latents_mean, z.mean(1).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(vae.config.latents_std, z.std(1).numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_vfm_gates_compare_pretrained_with_random(micro_lab):
    tmp, _ = micro_lab
    m = json.loads((tmp / "vfm" / "metrics.json").read_text())
    for which in ("pretrained", "random_init"):
        assert set(m["probe"][which]) >= {"shape", "motion", "pair_auroc"}
    assert isinstance(m["gate_met"], bool)


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_lab_encoder_loads_as_vfm_kind_videomae(micro_lab):
    from sara.models.encoders import build_vfm

    tmp, params = micro_lab
    enc = build_vfm(params.vfm, "cpu")
    feats = enc.features(torch.zeros(1, 5, 32, 32, 3, dtype=torch.uint8))
    assert feats.shape == (1, 2, 16, 32) and enc.tag.startswith("vjepa2-")


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_base_dit_is_pretrained_with_a_curve_and_loads(micro_lab):
    """The base folder holds the pretrained DiT as both experts (moved from its seeded init) and the lab VAE, and
    keeps one curve video per prompt at every evaluated step."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from sara.models.dit import load_base, tiny_transformer_config
    from sara.sample import load_prompts

    tmp, params = micro_lab
    base = tmp / "base"
    manifest = json.loads((base / "manifest.json").read_text())
    assert manifest["pretrained"] and manifest["text"]["max_tokens"] == 512
    assert manifest["pretrain"]["steps_done"] == 2 and manifest["pretrain"]["flops_per_step"] > 0
    curve = json.loads((base / "curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [1, 2]
    assert curve["scored"] and all(p["TA"] is not None and p["MQ"] is not None for p in curve["points"])
    ids = sorted(it.id for it in load_prompts(params.pretrain.dit.eval_prompt_set))
    for p in curve["points"]:
        with np.load(base / "curve" / p["videos"]) as videos:
            assert sorted(videos.files) == ids and videos[ids[0]].shape == (5, 32, 32, 3)

    comps = load_base(base, params.dit.kind, "cpu", with_low_noise=True)
    assert comps.text.max_tokens == 512
    torch.manual_seed(params.dit.init_seed)
    init = WanTransformer3DModel(**tiny_transformer_config(params.dit)).state_dict()
    high, low = comps.transformer.state_dict(), comps.transformer_2.state_dict()
    assert all(torch.equal(high[k], low[k]) for k in high)  # the pretrained model is both experts
    assert any(not torch.equal(high[k], init[k]) for k in high)  # and pretraining moved it
    vae, lab_vae = comps.vae.state_dict(), AutoencoderKLWan.from_pretrained(tmp / "vae").state_dict()
    assert vae.keys() == lab_vae.keys() and all(torch.equal(vae[k], lab_vae[k]) for k in lab_vae)  # the lab VAE


def test_videomae_kind_loads_real_weights_from_a_local_dir(tmp_path):
    """A tiny save_pretrained VideoMAE (the format of real VideoMAE checkpoints) loads through vfm.kind videomae."""
    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from sara.config import VFMParams
    from sara.models.encoders import build_vfm

    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=2, decoder_intermediate_size=32)
    VideoMAEForPreTraining(cfg).save_pretrained(tmp_path / "mae")
    p = VFMParams(kind="videomae", path=str(tmp_path / "mae"), frames=4, image_size=32)
    enc = build_vfm(p, "cpu")
    assert enc.grid == (2, 4, 4) and enc.dim == 32
    assert enc.features(torch.zeros(2, 8, 40, 40, 3, dtype=torch.uint8)).shape == (2, 2, 16, 32)
    with pytest.raises(ValueError, match="image_size"):
        build_vfm(VFMParams(kind="videomae", path=str(tmp_path / "mae"), frames=4, image_size=64), "cpu")
    with pytest.raises(FileNotFoundError, match="vfm.path"):
        build_vfm(VFMParams(kind="videomae", path=str(tmp_path / "missing"), frames=4, image_size=32), "cpu")


def test_a_videomae_encoder_has_the_same_tag_in_another_folder(tmp_path, monkeypatch):
    """The encoder's tag (its feature cache key, and what the Stage 1 aligner records it was trained on) names its
    weights, not where they are: the lab's work folder copied for a second training seed, or a base carried to
    another machine (scripts/lab_base_bundle.py), once failed Stage 2 with "params.vfm builds encoder vjepa2-..., but
    the aligner ... was trained on vjepa2-..." because the tag held the absolute path. `vfm.path` is relative, as
    in the lab params, and resolved from each folder."""
    import shutil

    from transformers import VideoMAEConfig, VideoMAEForPreTraining

    from sara.config import VFMParams
    from sara.models.encoders import build_vfm

    cfg = VideoMAEConfig(image_size=32, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=64, decoder_hidden_size=16, decoder_num_hidden_layers=1,
                         decoder_num_attention_heads=2, decoder_intermediate_size=32)
    VideoMAEForPreTraining(cfg).save_pretrained(tmp_path / "one" / "models" / "vfm")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    p = VFMParams(kind="videomae", path="models/vfm", frames=4, image_size=32)
    tags = []
    for folder in ("one", "two"):
        monkeypatch.chdir(tmp_path / folder)
        tags.append(build_vfm(p, "cpu").tag)
    assert tags[0] == tags[1]


def test_minilm_fp16_copy_loads_in_both_loaders(tmp_path):
    import importlib.util

    from sara.config import TextParams
    from sara.models.dit import build_text_conditioner
    from sara.models.encoders import build_text_model

    spec = importlib.util.spec_from_file_location("minilm_fp16", ROOT / "scripts" / "minilm_fp16.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.write_fp16_copy(tmp_path / "minilm16")
    assert (out / "model.safetensors").stat().st_size < 50e6
    ref = build_text_conditioner({"kind": "minilm", "path": None, "max_tokens": 16})(["a red circle"])
    half = build_text_conditioner({"kind": "minilm", "path": str(out), "max_tokens": 16})(["a red circle"])
    assert half.dtype == torch.float32 and torch.allclose(ref, half, atol=2e-2)
    assert build_text_model(TextParams(path=str(out)), "cpu").model.dtype == torch.float32
    with pytest.raises(FileNotFoundError, match="text_encoder_path"):
        build_text_conditioner({"kind": "minilm", "path": str(tmp_path / "nope"), "max_tokens": 16})


def test_embedded_default_pretrains_nothing(tmp_path):
    from sara.config import load_params
    from sara.stages import corpus, pretrain_vae, pretrain_vfm

    p = load_params(ROOT / "params.yaml")
    assert p.project.scale == "embedded"
    assert corpus.build_output(p, tmp_path / "c")["used"] is False
    assert pretrain_vae.build_output(p, tmp_path / "v")["kind"] == "random-init"
    assert pretrain_vfm.build_output(p, tmp_path / "f")["kind"] == "tiny"


def test_vae_crop_params_must_fit_the_vae():
    """Crops must be 4n+1 frames and a multiple of 8 pixels, or the causal VAE's chunks and grid do not line up."""
    from sara.config import VAEPretrainParams

    with pytest.raises(ValueError, match="4k\\+1"):
        VAEPretrainParams(crop_frames=4)
    with pytest.raises(ValueError, match="multiple of 8"):
        VAEPretrainParams(crop_size=12)


def test_vae_trains_on_crops_then_whole_clips():
    """The crop phase trains on (crop_frames, crop_size^2) windows, the last full_fraction on whole clips."""
    import numpy as np
    import torch

    from sara.config import VAEPretrainParams
    from sara.train.pretrain_vae import crop_batch, train_vae

    rng = np.random.default_rng(0)
    clips = rng.integers(0, 255, (4, 9, 32, 32, 3), dtype=np.uint8)
    gen = torch.Generator().manual_seed(0)
    assert tuple(crop_batch(torch.from_numpy(clips), torch.tensor([0, 2]), 5, 16, gen).shape) == (2, 5, 16, 16, 3)
    p = VAEPretrainParams(base_dim=8, steps=4, batch_size=2, eval_clips=2, crop_frames=1, crop_size=16,
                          crop_batch_size=3, full_fraction=0.5)
    seen = []
    result = train_vae(p, clips, clips[:2], torch.device("cpu"), log=seen.append)
    assert "crops (1, 16, 16)" in seen[0] and "whole clips (9, 32, 32)" in seen[-1]
    assert [h["phase"] for h in result.history] == ["crop", "whole"]


@pytest.mark.slow  # trains the lab VAE, encoder and DiT
def test_lab_trainers_stop_on_steps_never_on_the_clock(micro_lab, tmp_path, monkeypatch):
    """Budgets are steps: with configs/lab.yaml's budgets, the VAE and encoder stages whose clock runs an hour per
    reading (a slow or busy GPU) still run every step and save the same weights as on a real clock (the old stages
    stopped on `max_minutes`, so the model depended on the machine). The real clock's weights are micro_lab's, built
    with the same params (2 steps: a stage that looked at the clock after its first step would stop after 1)."""
    import itertools
    import time

    from sara.stages import pretrain_vae, pretrain_vfm

    tmp, params = micro_lab
    real_clock = {f"{d}/{f.name}": f.read_bytes() for d in ("vae", "vfm") for f in (tmp / d).glob("*.safetensors")}
    hours = itertools.count(0.0, 3600.0)
    monkeypatch.setattr(time, "time", lambda: next(hours))
    slow_clock = {}
    for stage, folder in ((pretrain_vae, "vae"), (pretrain_vfm, "vfm")):
        out = tmp_path / folder
        out.mkdir()
        assert stage.build_output(params, out, log=lambda s: None)["steps_done"] == params.pretrain.vae.steps == 2
        slow_clock.update({f"{folder}/{f.name}": f.read_bytes() for f in out.glob("*.safetensors")})
    assert len(real_clock) == 2 and real_clock == slow_clock


def test_lab_lr_schedule_is_a_function_of_the_step_alone():
    from sara.train.schedules import budget_lr

    assert budget_lr(0, 3000, 1e-3, warmup=100) == 1e-5
    assert budget_lr(99, 3000, 1e-3, warmup=100) == 1e-3
    assert abs(budget_lr(3000, 3000, 1e-3, warmup=100) - 1e-4) < 1e-12  # decayed to its 10% floor at the last step
    assert budget_lr(1500, 3000, 1e-3, warmup=100) < budget_lr(1000, 3000, 1e-3, warmup=100)


def test_lab_encoder_gates_are_the_issue_margins():
    """Shape >= random + 0.20, motion >= random + 0.10, same-entity pair AUROC >= 0.95 (absolute)."""
    from sara.train.pretrain_vfm import gate_checks

    def res(shape, motion, auroc):
        return {"shape": {"accuracy": shape}, "motion": {"accuracy": motion}, "pair_auroc": auroc}

    rand = res(0.25, 0.60, 0.85)
    assert gate_checks(res(0.45, 0.70, 0.95), rand) == {"shape": True, "motion": True, "pair_auroc": True}
    assert gate_checks(res(0.44, 0.69, 0.949), rand) == {"shape": False, "motion": False, "pair_auroc": False}
    assert not any(gate_checks(res(float("nan"), float("nan"), float("nan")), rand).values())


def test_lab_vae_compression_follows_dim_mult():
    """Three levels: 4x spatial and 4x temporal, and the config tells Wan's pipeline so (it assumes 8x otherwise)."""
    from sara.config import VAEPretrainParams
    from sara.train.pretrain_vae import build_vae, vae_config

    three = vae_config(VAEPretrainParams(base_dim=4, dim_mult=[1, 1, 1]))
    assert three["temperal_downsample"] == [True, True]
    assert (three["scale_factor_spatial"], three["scale_factor_temporal"]) == (4, 4)
    four = vae_config(VAEPretrainParams(base_dim=4, dim_mult=[1, 1, 1, 1]))
    assert four["temperal_downsample"] == [False, True, True] and four["scale_factor_spatial"] == 8
    vae = build_vae(VAEPretrainParams(base_dim=4, dim_mult=[1, 1, 1]), 0)
    z = vae.encode(torch.zeros(1, 3, 5, 32, 32)).latent_dist.mode()
    assert tuple(z.shape) == (1, 16, 2, 8, 8)


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_shape_probe_reads_the_clip_mean_and_motion_the_time_series(micro_lab, monkeypatch):
    """Shape is constant over a clip: its probe gets the D-dim mean of the entity's tokens, not the T_s*D series
    (which gave the probe T_s times the parameters for the same few hundred entities and let it overfit)."""
    import sara.train.pretrain_vfm as m
    from sara.data.corpus import load_corpus
    from sara.models.encoders import build_vfm

    tmp, params = micro_lab
    widths = {}
    monkeypatch.setattr(m, "linear_probe", lambda x, y: widths.setdefault(len(widths), x.shape[1]) and {})
    view = build_vfm(params.vfm, "cpu")
    m.encoder_probes(view, load_corpus(tmp / "corpus", "heldout"), 4)
    assert widths == {0: view.dim, 1: view.grid[0] * view.dim}


def test_embedded_base_records_the_text_encoder_copy_it_was_given(tmp_path):
    """A GPU machine without the packaged MiniLM points dit.text_encoder_path at a copy; the embedded (tiny) base
    must record that copy, or every stage that loads the base looks for the package again."""
    import json as _json

    from sara.config import load_params
    from sara.models.dit import save_base

    raw = load_params(ROOT / "params.yaml").model_dump(mode="python")
    raw["dit"]["text_encoder_path"] = "/some/minilm-copy"
    manifest = save_base(params_from_dict(raw, "embedded"), tmp_path / "base")
    assert manifest["text"]["path"] == "/some/minilm-copy"
    assert _json.loads((tmp_path / "base" / "manifest.json").read_text())["text"]["path"] == "/some/minilm-copy"


@pytest.mark.slow  # the micro lab pretraining (corpus, VAE, encoder, base DiT)
def test_base_learning_curve_samples_the_qualitative_prompts_whatever_the_evaluated_set(micro_lab, tmp_path, monkeypatch):
    """The lab evaluates 274 prompts (`sample.prompt_set: lab`); the DiT's learning curve must stay on the 18
    qualitative ones (`pretrain.dit.eval_prompt_set`), or every curve point samples 274 videos."""
    import sara.sample
    from sara.stages.pretrain_dit import pretrain_base

    class Stop(Exception):
        pass

    asked = []

    def record(name):
        asked.append(name)
        raise Stop

    corpus_dir, _ = micro_lab
    monkeypatch.setattr(sara.sample, "load_prompts", record)
    with pytest.raises(Stop):
        pretrain_base(micro_lab_params(corpus_dir, sample__prompt_set="lab"), tmp_path / "base")
    assert asked == ["synthetic"]


def test_base_learning_curve_samples_with_its_own_seed_not_the_dags(micro_lab, tmp_path, monkeypatch):
    """The curve's sampling seed is `pretrain.dit.eval_seed`: `sample.seeds` is the DAG's, and a base stage that
    read it would rerun (11 minutes of the lab's GPU) whenever a sampling seed is added (tests/test_pretrain_params.py)."""
    import sara.stages.pretrain_dit as stage

    class Stop(Exception):
        pass

    seeds = []

    def record(*args):
        seeds.append(args[-1])
        raise Stop

    corpus_dir, _ = micro_lab
    monkeypatch.setattr(stage, "sample_videos", record)
    with pytest.raises(Stop):
        stage.pretrain_base(micro_lab_params(corpus_dir, sample__seeds=[5, 6]), tmp_path / "base")
    assert seeds == [0]  # pretrain.dit.eval_seed's default
