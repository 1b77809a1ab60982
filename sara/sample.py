"""Wan2.2 two-expert sampling (or one expert: Wan2.1-T2V-1.3B, Wan2.2-TI2V-5B) on a prompt set (and the VBench
prompt suites), one run at a time.

A run is `base` (the untrained starting point: the "Pretrained" row) or a Stage 2 run (`sft`, `videorepa`,
`moalign`, `sara-and`, `sara-or`, `sara-xor`): its trained high-noise expert replaces the base one; the frozen
low-noise expert, the VAE and the text conditioner always come from `models/base`.

Sampler: diffusers `WanPipeline(transformer=high, transformer_2=low, boundary_ratio)` with precomputed
`prompt_embeds` / `negative_prompt_embeds` from the project's TextConditioner (no tokenizer or text encoder in
the pipeline), the flow-matching UniPC solver with Wan's timestep shift (Wan2.2's own sampler; `euler` is the
alternative). Timesteps >= boundary_ratio * 1000 run the high-noise expert with `guidance`, the rest the
low-noise expert with `guidance_2`; with `boundary_ratio` null the run's transformer takes every step. The prompt given to the DiT is the full MTSS caption (as in Stage 2);
VBench prompts are flat text and are used as they are (their MTSS rewrite is open; docs/evaluation.md).

Outputs in `<sample.out_dir>/<run>/`: `<prompt_id>_s<seed>.mp4` + `.png` contact sheet, `index.json`; with VBench
suites, `vbench/<prompt>-<i>.mp4` (VBench's required naming) and `vbench2/<prompt>-<i>.mp4`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from sara.config import Params
from sara.data.prompts import PromptItem, PromptSetError, load_prompt_set
from sara.data.video_io import save_video_and_sheet, write_video
from sara.env import resolve_device
from sara.errors import MissingDataError

from sara.data.mtss import full_caption
from sara.runs import BASE as BASE_RUN  # the untrained base model


def load_prompts(name: str) -> list[PromptItem]:
    """The 18-prompt set `name` ('synthetic' | 'realworld') that sampling and its evaluation share (typed items:
    MTSS caption, and the `SceneSpec` of synthetic prompts)."""
    return load_prompt_set(name)


def load_vbench_prompts(path: str) -> list[str]:
    """VBench prompts from its full-info JSON (`[{"prompt_en": ...}]`) or a text file with one prompt per line."""
    p = Path(path)
    if not p.is_file():
        raise MissingDataError(f"VBench prompt file {path!r} not found (sample.vbench_prompts / sample.vbench2_prompts)")
    try:
        if p.suffix == ".json":
            data = json.loads(p.read_text())
            return list(dict.fromkeys(d["prompt_en"] for d in data))  # unique, in suite order
        return [line.strip() for line in p.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as err:
        what = "every entry needs a 'prompt_en' string" if isinstance(err, (KeyError, TypeError)) else err
        raise PromptSetError(f"{path}: VBench prompt suite cannot be read: {what}") from None


MAX_NAME_BYTES = 255  # longest file name on Linux / macOS file systems (ext4, xfs, btrfs, APFS)


def vbench_filename(prompt: str, index: int) -> str:
    """VBench's required name `{prompt}-{index}.mp4`, refused when no file can have it.

    VBench finds a video by that exact name, so a prompt cannot be rewritten into a valid name: '/' or NUL in it,
    or a name longer than MAX_NAME_BYTES bytes (UTF-8), is an error."""
    name = f"{prompt}-{index}.mp4"
    short = prompt if len(prompt) <= 80 else prompt[:77] + "..."
    if "/" in prompt or "\0" in prompt:
        raise ValueError(f"VBench prompt contains '/' or NUL, which cannot be in a file name: {short!r}")
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        raise ValueError(f"VBench prompt {short!r} ({len(prompt)} characters) gives a {size}-byte file name "
                         f"'<prompt>-{index}.mp4', more than the {MAX_NAME_BYTES} bytes a file name may have")
    return name


def check_vbench_names(prompts: list[str], videos_per_prompt: int, source: str) -> None:
    """Refuse, before any video is sampled, a VBench prompt whose file names cannot exist (one line: the file,
    the prompt's line number, the reason)."""
    for n, prompt in enumerate(prompts, 1):
        try:
            vbench_filename(prompt, videos_per_prompt - 1)  # the longest of the prompt's names
        except ValueError as err:
            raise PromptSetError(f"{source}: prompt {n}: {err}") from None


class Sampler:
    """Two-expert Wan sampler for one run; `generate(prompt, seed)` -> (F, H, W, 3) uint8."""

    def __init__(self, params: Params, run: str, base_dir: str | Path | None = None, runs_dir: str | Path | None = None) -> None:
        import torch
        from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanPipeline

        from sara.models.dit import load_base, load_trained_transformer  # local: torch and diffusers are seconds

        s = params.sample
        self.params = params
        self.device = resolve_device(params.project.device)
        dtype = torch.bfloat16 if self.device.type == "cuda" else None
        # sample.boundary_ratio null: a single-expert model (or an ablation of one), the run's transformer samples
        # every step and no low-noise expert is loaded
        two_experts = s.boundary_ratio is not None
        base = load_base(base_dir or params.dit.base_dir, params.dit.kind, self.device, dtype, with_low_noise=two_experts)
        high = base.transformer
        if run != BASE_RUN:
            high = load_trained_transformer(Path(runs_dir or params.train.out_dir) / run, self.device, dtype)
        elif dtype is not None:
            high = high.to(dtype)
        high.eval().requires_grad_(False)
        if s.scheduler == "unipc":
            sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000, flow_shift=s.shift)
        else:
            sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=s.shift)
        self.pipe = WanPipeline(
            tokenizer=None, text_encoder=None, vae=base.vae, scheduler=sched,
            transformer=high, transformer_2=base.transformer_2, boundary_ratio=s.boundary_ratio,
        )
        self.pipe.set_progress_bar_config(disable=True)
        self.text = base.text
        self._neg = None
        # the low-noise expert's CFG scale (diffusers refuses one without a boundary)
        self.guidance_2 = (s.guidance if s.guidance_2 is None else s.guidance_2) if two_experts else None

    def generate(self, prompt: str, seed: int) -> np.ndarray:
        return self.generate_seeds(prompt, [seed])[0]

    def generate_seeds(self, prompt: str, seeds: list[int]) -> list[np.ndarray]:
        """One prompt at several seeds in one batch -> [(F, H, W, 3) uint8] in seed order."""
        return self.generate_batch([prompt] * len(seeds), seeds)

    def generate_batch(self, prompts: list[str], seeds: list[int]) -> list[np.ndarray]:
        """Video i of prompts[i] at seeds[i], all in one pipeline call -> [(F, H, W, 3) uint8] in that order.

        Each video's initial noise comes from its own seeded generator (diffusers draws per-sample noise from a
        list of generators) and its own prompt embedding, so a video does not depend on what shares its batch
        (up to batched-matmul rounding). Small models are launch-bound: one call for many videos costs about as
        much as one call for one."""
        import torch

        if len(prompts) != len(seeds):
            raise ValueError(f"generate_batch: {len(prompts)} prompts but {len(seeds)} seeds")
        s = self.params.sample
        unique = list(dict.fromkeys(prompts))  # encode each distinct prompt once
        states = self.text(unique)  # (P, L, D)
        emb = states[[unique.index(p) for p in prompts]]  # (n, L, D)
        if self._neg is None:
            self._neg = self.text([s.negative_prompt])
        n = len(seeds)
        gens = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]
        dtype = self.pipe.transformer.dtype
        out = self.pipe(
            prompt_embeds=emb.to(dtype),  # (n, L, D)
            negative_prompt_embeds=self._neg.to(dtype).expand(n, -1, -1),
            num_frames=s.frames, height=s.height, width=s.width, num_inference_steps=s.steps,
            guidance_scale=s.guidance, guidance_scale_2=self.guidance_2,
            generator=gens, output_type="np",
        ).frames  # (n, F, H, W, 3) float in [0, 1]
        return [np.clip(np.rint(v * 255.0), 0, 255).astype(np.uint8) for v in out]


def sampler_settings(params: Params) -> dict[str, Any]:
    """What produced the videos, written into index.json and shown in the report."""
    return params.sample.model_dump(mode="json")


def checked_prompts(params: Params) -> tuple[list[PromptItem], dict[str, list[str]]]:
    """(the prompt set, {suite: VBench prompts}) read and checked: a bad prompt is one PromptSetError line, before
    a stage opens its MLflow run or samples anything."""
    s = params.sample
    prompts = load_prompts(s.prompt_set)
    vbench_suites = {}
    for suite, path in (("vbench", s.vbench_prompts), ("vbench2", s.vbench2_prompts)):
        if path:
            vbench_suites[suite] = load_vbench_prompts(path)
            check_vbench_names(vbench_suites[suite], s.vbench_videos_per_prompt, path)
    return prompts, vbench_suites


def sample_run(params: Params, run: str, out_dir: Path, *, base_dir: str | Path | None = None, runs_dir: str | Path | None = None, log=print) -> dict:
    """Generate every prompt x seed of the prompt set (and the VBench suites when set) for one run into `out_dir`."""
    from tqdm import tqdm

    s = params.sample
    prompts, vbench_suites = checked_prompts(params)  # before any work: a bad prompt must not cost the prompt set
    sampler = Sampler(params, run, base_dir, runs_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    videos = []
    jobs = [(item, seed) for item in prompts for seed in s.seeds]  # prompt-major: the index order
    per_call = s.videos_per_call or len(s.seeds)
    bar = tqdm(total=len(jobs), desc=f"sample {run}", unit="video")
    for start in range(0, len(jobs), per_call):  # `videos_per_call` videos per pipeline call
        chunk = jobs[start : start + per_call]
        clips = sampler.generate_batch([full_caption(item.caption) for item, _ in chunk], [seed for _, seed in chunk])
        for (item, seed), frames in zip(chunk, clips):
            stem = f"{item.id}_s{seed}"
            save_video_and_sheet(frames, s.fps, out_dir / f"{stem}.mp4", out_dir / f"{stem}.png", label=f"{run} | {item.id} | seed {seed}")
            videos.append({"prompt_id": item.id, "title": item.title, "seed": seed, "mp4": f"{stem}.mp4", "sheet": f"{stem}.png"})
            bar.update()
    bar.close()
    suites = {}
    for suite, texts in vbench_suites.items():
        d = out_dir / suite
        d.mkdir(exist_ok=True)
        jobs2 = [(t, i) for t in texts for i in range(s.vbench_videos_per_prompt)]
        for text, i in tqdm(jobs2, desc=f"{suite} {run}", unit="video"):
            frames = sampler.generate(text, s.seeds[0] + i)
            write_video(d / vbench_filename(text, i), frames, s.fps)
        suites[suite] = {"prompts": len(texts), "videos_per_prompt": s.vbench_videos_per_prompt, "dir": suite}
    index = {
        "run": run,
        "prompt_set": s.prompt_set,
        "scale": params.project.scale,
        "device": str(sampler.device),
        "sampler": {"pipeline": f"diffusers.WanPipeline ({'two experts' if s.boundary_ratio is not None else 'one expert'}, "
                               "precomputed prompt embeddings)", **sampler_settings(params)},
        "videos": videos,
        "suites": suites,
    }
    (out_dir / "index.json").write_text(json.dumps(index, indent=2))
    return index
