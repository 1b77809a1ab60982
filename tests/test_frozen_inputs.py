"""Stage 2 encodes each training clip's VAE latent and caption once per run (`train.cache_frozen_inputs`).

Measured (benchmarks/stage2_step.md): the VAE encode and the caption encode were 44% and 23% of an embedded Stage
2 step, recomputed every step for inputs that never change (posterior mean, frozen text encoder).
"""

from __future__ import annotations

import pytest
import torch

from sara.config import load_params, params_from_dict
from sara.data.clipset import FrozenInputs


class Clip:
    def __init__(self, i: int) -> None:
        self.frames = torch.full((5, 8, 8, 3), i, dtype=torch.uint8).numpy()
        self.caption = f"caption {i}"


def fakes(calls: list):
    def encode(frames: torch.Tensor) -> torch.Tensor:  # (B, F, H, W, 3) uint8 -> (B, 2) "latents"
        calls.append(("encode", len(frames)))
        return frames.float().mean((1, 2, 3, 4))[:, None].repeat(1, 2)

    def text(prompts: list[str]) -> torch.Tensor:  # -> (B, 3, 4) "states"
        calls.append(("text", len(prompts)))
        return torch.stack([torch.full((3, 4), float(len(p))) for p in prompts])

    return encode, text


def test_each_clip_is_encoded_once_in_fixed_chunks_and_looked_up_per_batch():
    calls: list = []
    encode, text = fakes(calls)
    clips = [Clip(i) for i in range(5)]
    cache = FrozenInputs(clips, encode, text, chunk=2)
    assert calls == [("encode", 2), ("encode", 2), ("encode", 1), ("text", 2), ("text", 2), ("text", 1), ("text", 1)]
    z0, states = cache.batch([3, 0, 3], drop=[False, True, False])
    assert z0[:, 0].tolist() == [3.0, 0.0, 3.0]
    assert states[:, 0, 0].tolist() == [len("caption 3"), 0.0, len("caption 3")]  # dropped: the empty caption
    assert len(calls) == 7  # a batch encodes nothing


def test_the_cache_is_off_unless_asked():
    params = load_params("params.yaml")
    assert params.train.cache_frozen_inputs is False
    raw = params.model_dump(mode="json")
    raw["train"]["cache_frozen_inputs"] = True
    assert params_from_dict(raw).train.cache_frozen_inputs is True
    assert load_params("configs/lab.yaml").train.cache_frozen_inputs is True
