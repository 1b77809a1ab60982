"""Validation videos during Stage 2: every `train.validation.every` steps, a few fixed prompts sampled with the
current weights (docs/stage2.md, "Validation during training").

The prompts are the first `prompts` items of the packaged set `prompt_set`, each at one fixed seed, so every
validation of a run (and of every run) samples the same noise and text: what changes between two validations is
the weights. Sampling is diffusers `WanPipeline` around the transformer being trained (as the engine holds it,
bf16 under DeepSpeed) with precomputed caption states (the run's frozen text conditioner), UniPC at
`steps` / `shift` / `guidance`, at the training clip size (dit.frames/height/width). With `boundary_ratio` set, the
base's frozen low-noise expert takes the timesteps below it (two-expert models; loaded once, next to the
training state); without, the trained transformer takes every step.

Every rank samples the same videos: under ZeRO-3 a forward gathers each block's weights collectively, so all ranks
must run the same forwards; under ZeRO-0..2 the other ranks would only wait. Only rank 0 hands the videos to the
`sink` (the stage logs them to MLflow and scores the ones with ground truth). Nothing here draws from the global
RNG (each video's noise comes from its own seeded generator), so validation leaves exact resume intact.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from sara.config import Params
from sara.data.mtss import full_caption
from sara.data.prompts import load_prompt_set
from sara.data.synthetic.spec import SceneSpec


@dataclass(frozen=True)
class ValidationVideo:
    step: int  # the optimizer step whose weights sampled it
    prompt_id: str
    seed: int
    frames: np.ndarray  # (F, H, W, 3) uint8
    fps: int
    spec: SceneSpec | None  # ground truth of a synthetic prompt (the grounded judge), else None


ValidationSink = Callable[[int, list[ValidationVideo], float], None]  # (step, videos, sampling seconds)


class Validator:
    """Samples the validation prompts with the trained transformer; `validator(step)` at every step of the loop."""

    def __init__(self, params: Params, transformer: torch.nn.Module, vae: torch.nn.Module, text: Callable[[list[str]], torch.Tensor],
                 sink: ValidationSink | None, device: torch.device) -> None:
        from diffusers import UniPCMultistepScheduler, WanPipeline

        from sara.models.dit import load_low_noise

        v = params.train.validation
        self.settings, self.sink, self.fps = v, sink, params.data.fps
        self.size = (params.dit.frames, params.dit.height, params.dit.width)
        self.items = load_prompt_set(v.prompt_set)[: v.prompts]
        self.transformer = transformer
        self.states = text([full_caption(item.caption) for item in self.items])  # (P, L, D), encoded once
        self.negative = text([""])  # (1, L, D): Wan's empty negative prompt
        low = None
        if v.boundary_ratio is not None:  # two experts: the frozen low-noise one, as the sample stage uses it
            low = load_low_noise(params.dit.base_dir, device, next(vae.parameters()).dtype)
        sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
                                        flow_shift=v.shift)
        self.pipe = WanPipeline(tokenizer=None, text_encoder=None, vae=vae, scheduler=sched, transformer=transformer,
                                transformer_2=low, boundary_ratio=v.boundary_ratio)
        self.pipe.set_progress_bar_config(disable=True)

    def __call__(self, step: int) -> list[ValidationVideo] | None:
        """Sample and hand to the sink when `step` is a validation step; returns the videos (None otherwise)."""
        if step % self.settings.every:
            return None
        t0 = time.perf_counter()
        videos = self.sample(step)
        if self.sink is not None:
            self.sink(step, videos, time.perf_counter() - t0)
        return videos

    @torch.no_grad()
    def sample(self, step: int) -> list[ValidationVideo]:
        v, (frames, height, width) = self.settings, self.size
        was_training = self.transformer.training
        self.transformer.eval()  # and no grad: no activation checkpointing, no graph
        dtype = next(self.transformer.parameters()).dtype
        gens = [torch.Generator(device="cpu").manual_seed(v.seed) for _ in self.items]  # the same noise every time
        try:
            out = self.pipe(
                prompt_embeds=self.states.to(dtype), negative_prompt_embeds=self.negative.to(dtype).expand_as(self.states),
                num_frames=frames, height=height, width=width, num_inference_steps=v.steps, guidance_scale=v.guidance,
                guidance_scale_2=v.guidance if v.boundary_ratio is not None else None, generator=gens, output_type="np",
            ).frames  # (P, F, H, W, 3) float in [0, 1]
        finally:
            self.transformer.train(was_training)
        videos = np.clip(np.rint(np.asarray(out) * 255.0), 0, 255).astype(np.uint8)
        return [ValidationVideo(step, item.id, v.seed, video, self.fps, item.spec) for item, video in zip(self.items, videos)]


def build_validator(params: Params, setup: Any, sink: ValidationSink | None) -> Callable[[int], Any]:
    """The run's validator around the transformer `setup` trains (a no-op when `train.validation.every` is 0)."""
    if not params.train.validation.every:
        return lambda step: None
    base = setup.base
    return Validator(params, setup.model.transformer, base.vae, base.text, sink if setup.dist.is_main else None, setup.device)
