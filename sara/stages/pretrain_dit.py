"""The lab behaviour of `sara init-dit`: pretrain the base Wan DiT here and write `models/base` from it.

Reads the corpus (`pretrain.corpus.out_dir`) and the lab VAE (`pretrain.vae.out_dir`), conditions on MiniLM states
of each clip's full MTSS caption (`dit.text_max_tokens`, 512 at lab scale, so the whole caption fits; MiniLM from
`dit.text_encoder_path` when set, e.g. the fp16 copy made by scripts/minilm_fp16.py), and trains with
sara.train.pretrain_dit. The pretrained transformer becomes both experts (the high-noise copy is what Stage 2
trains, the low-noise copy stays frozen for sampling).

Learning curve: every `pretrain.dit.eval_every` steps the prompts of `pretrain.dit.eval_prompt_set` (one video each,
seed `pretrain.dit.eval_seed`) are sampled at `pretrain.dit.eval_steps` denoising steps and CFG `eval_guidance`; the
videos are kept in `curve/step_<n>.npz` and scored by the grounded judge at the end (`curve.json`: TA / MQ
means against steps). Where the machine cannot score (no mp4 encoder for the judge's reference round trip),
`curve.json` says so and `python scripts/lab_score.py models/base` scores the kept videos later.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from sara.config import Params

CURVE_DIR = "curve"


def sample_videos(transformer: Any, vae: Any, states: Any, negative: Any, params: Params, steps: int, guidance: float,
                  seed: int) -> np.ndarray:
    """Videos (B, F, H, W, 3) uint8 of a batch of prompt states (B, L, D) with one transformer for all timesteps."""
    import torch
    from diffusers import UniPCMultistepScheduler, WanPipeline

    s = params.sample
    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                    flow_shift=s.shift)
    pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=sched, transformer=transformer)
    pipe.set_progress_bar_config(disable=True)
    device = next(transformer.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        out = pipe(prompt_embeds=states.to(transformer.dtype), negative_prompt_embeds=negative.expand_as(states).to(transformer.dtype),
                   num_frames=s.frames, height=s.height, width=s.width, num_inference_steps=steps,
                   guidance_scale=guidance, generator=gen, output_type="np").frames  # (B, F, H, W, 3) in [0, 1]
    return np.clip(np.rint(np.asarray(out) * 255.0), 0, 255).astype(np.uint8)


def _score_file(args: tuple[str, str, int]) -> dict[str, Any]:
    """Grounded TA / MQ means of one curve file (run in a worker process)."""
    from evaluation.grounded import grounded_ta_mq
    from sara.data.prompts import load_prompt_set

    path, prompt_set, fps = args
    items = {p.id: p for p in load_prompt_set(prompt_set)}
    videos = np.load(path)
    return {**grounded_ta_mq([(items[k].spec, videos[k]) for k in videos.files], fps), "videos": len(videos.files)}


def score_curve(base_dir: str | Path, prompt_set: str, fps: int, workers: int | None = None) -> list[dict[str, Any]]:
    """Score every `curve/step_<n>.npz` of a base folder with the grounded judge; rewrites `curve.json`."""
    base = Path(base_dir)
    curve = json.loads((base / "curve.json").read_text())
    files = [str(base / CURVE_DIR / c["videos"]) for c in curve["points"]]
    workers = workers or min(len(files), os.cpu_count() or 1)
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=get_context("spawn")) as pool:
        scores = list(pool.map(_score_file, [(f, prompt_set, fps) for f in files]))
    for c, s in zip(curve["points"], scores):
        c.update(TA=s["TA"], MQ=s["MQ"])
    curve["scored"] = True
    (base / "curve.json").write_text(json.dumps(curve, indent=2))
    return curve["points"]


def pretrain_base(params: Params, out: Path, log=print) -> dict[str, Any]:
    """Pretrain the base DiT and write `out` (transformer, transformer_2, vae, manifest, curve)."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from sara.data.corpus import load_corpus
    from sara.data.mtss import full_caption
    from sara.models.dit import MANIFEST, build_text_conditioner, tiny_transformer_config
    from sara.env import resolve_device
    from sara.integrity import DIGESTS, verify
    from sara.sample import load_prompts
    from sara.train.pretrain_dit import encode_captions, encode_corpus, train_base_dit

    d, p, s = params.dit, params.pretrain.dit, params.sample
    if d.kind != "tiny":
        raise ValueError(f"lab scale: dit.kind must be tiny (a MiniLM-conditioned Wan DiT built here), got {d.kind!r}")
    device = resolve_device(params.project.device)
    corpus = load_corpus(params.pretrain.corpus.out_dir, "train")
    if corpus.frames.shape[1:4] != (d.frames, d.height, d.width):
        raise ValueError(f"dit.frames/height/width = {d.frames}/{d.height}/{d.width} but the corpus clips are "
                         f"{tuple(corpus.frames.shape[1:4])}: set pretrain.corpus to the DiT's clip size")
    vae_dir = Path(params.pretrain.vae.out_dir)
    verify(vae_dir)  # the lab VAE is a sealed stage output: a damaged copy is refused, not trained on
    vae = AutoencoderKLWan.from_pretrained(vae_dir).to(device).eval().requires_grad_(False)
    text_spec = {"kind": "minilm", "path": d.text_encoder_path, "max_tokens": d.text_max_tokens}
    text = build_text_conditioner(text_spec, device, torch.float16 if device.type == "cuda" else None)
    log(f"[init_dit] encoding {len(corpus)} corpus clips and captions")
    latents = encode_corpus(vae, corpus.frames, device)
    states = encode_captions(text, corpus.captions)
    empty = encode_captions(text, [""])
    prompts = load_prompts(p.eval_prompt_set)
    prompt_states = encode_captions(text, [full_caption(it.caption) for it in prompts])
    neg = encode_captions(text, [s.negative_prompt])
    torch.manual_seed(params.dit.init_seed)  # the base model's init seed (train.seed is Stage 2 only)
    transformer = WanTransformer3DModel(**tiny_transformer_config(d))
    (out / CURVE_DIR).mkdir(parents=True, exist_ok=True)

    def on_eval(step: int, model: Any) -> dict[str, Any]:
        videos = sample_videos(model, vae, prompt_states, neg, params, p.eval_steps, p.eval_guidance, p.eval_seed)
        name = f"step_{step:06d}.npz"
        np.savez_compressed(out / CURVE_DIR / name, **{it.id: v for it, v in zip(prompts, videos)})
        return {"videos": name}

    result = train_base_dit(p, transformer, latents, states, empty, device, on_eval=on_eval, log=log)
    result.transformer.save_pretrained(out / "transformer")
    result.transformer.save_pretrained(out / "transformer_2")
    shutil.copytree(vae_dir, out / "vae", ignore=shutil.ignore_patterns("manifest.json", "metrics.json", "*.png",
                                                                       DIGESTS))
    curve = {"prompt_set": p.eval_prompt_set, "seed": p.eval_seed, "eval_steps": p.eval_steps,
             "eval_guidance": p.eval_guidance, "scored": False, "points": result.curve}
    (out / "curve.json").write_text(json.dumps(curve, indent=2))
    try:
        score_curve(out, p.eval_prompt_set, s.fps)
    except Exception as err:  # e.g. no mp4 encoder on a GPU machine: the videos are kept for scripts/lab_score.py
        log(f"[init_dit] curve not scored here ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "score it with `python scripts/lab_score.py <base_dir>`")
    manifest = {
        "kind": "tiny", "pretrained": True, "transformer": "transformer", "transformer_2": "transformer_2", "vae": "vae",
        "text": text_spec, "seed": params.dit.init_seed, "pretrain": result.metrics,
        "frames": d.frames, "height": d.height, "width": d.width,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    (out / "pretrain_metrics.json").write_text(json.dumps({**result.metrics, "history": result.history}, indent=2))
    log(f"[init_dit] pretrained base DiT: {result.metrics['steps_done']} steps in {result.metrics['train_seconds']} s, "
        f"MFU {result.metrics['mfu']} -> {out}")
    return manifest
