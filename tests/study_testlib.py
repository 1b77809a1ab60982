"""Fake sampled runs for the blind-study tests: each run's videos are the renderer's ground truth of a few synthetic
prompts, degraded by a run-specific amount, laid out as `sara sample --run` lays them out."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import yaml

from sara.data.prompts import load_prompt_set
from sara.data.synthetic import render
from sara.data.video_io import write_video

PROMPTS = ["syn_01", "syn_02", "syn_03"]
SHAPE = (9, 32, 32)  # frames, height, width: small, so the grounded judge is quick
FPS = 8
MAIN, BASELINES = "sara-or", ["base", "sft", "videorepa", "moalign"]
# Words that would tell a rater which method made a video (whole words, any case).
METHOD_WORDS = re.compile(r"\b(sara|sft|videorepa|moalign|base|pretrained|oracle|groundtruth|ground.truth|corrupt\w*|"
                          r"attention|baseline|main.run)\b", re.IGNORECASE)


def degrade(frames: np.ndarray, run: str, rng: np.random.Generator) -> np.ndarray:
    """The main run and moalign: the truth; base: scrambled and noisy; sft: frozen on its first frame; videorepa:
    the truth under mild noise."""
    if run == "base":
        noisy = frames[rng.permutation(len(frames))].astype(float) + rng.normal(0, 50, frames.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8)
    if run == "sft":
        return np.repeat(frames[:1], len(frames), axis=0)
    if run == "videorepa":
        return np.clip(frames.astype(float) + rng.normal(0, 12, frames.shape), 0, 255).astype(np.uint8)
    return frames


def write_samples(samples: Path, runs: list[str] | None = None, prompts: list[str] = PROMPTS) -> None:
    specs = {p.id: p.spec for p in load_prompt_set("synthetic")}
    for run in runs or [MAIN, *BASELINES]:
        rng = np.random.default_rng(len(run))
        folder = samples / run
        folder.mkdir(parents=True)
        videos = []
        for pid in prompts:
            frames, _, _ = render(specs[pid], *SHAPE, FPS)
            write_video(folder / f"{pid}_s0.mp4", degrade(frames, run, rng), FPS)
            videos.append({"prompt_id": pid, "title": pid, "seed": 0, "mp4": f"{pid}_s0.mp4", "sheet": f"{pid}_s0.png"})
        index = {"run": run, "prompt_set": "synthetic", "sampler": {"fps": FPS}, "videos": videos}
        (folder / "index.json").write_text(json.dumps(index))


def study_params(tmp: Path, **study: object) -> Path:
    """params.yaml with the samples, the study and the votes database under `tmp`; returns its path."""
    params = yaml.safe_load(Path("params.yaml").read_text())
    params["sample"]["out_dir"] = str(tmp / "samples")
    params["study"].update({"out_dir": str(tmp / "study"), "db": str(tmp / "votes" / "votes.sqlite"), "raters": 2,
                            "attention_checks": 2, "n_boot": 200, **study})
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path
