"""Stage 2's training data: the clips with their captions and FG masks, decoded once, and the frozen inputs.

`ClipSet` reads the clip folders (`data.out_dir`) and keeps decoded clips in memory when the set fits
(`preload`); `FrozenInputs` holds every clip's VAE latent and caption state, encoded once per run
(`train.cache_frozen_inputs`); `step_loader` hands the Stage 2 loop each step's samples, read ahead by DataLoader
workers when the clips are not all in memory. Which clips a step takes is the training loop's business
(sara.train.stage2: a pure function of the seed, the step and the rank); here they are only read.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from sara.data.clips import list_clips, load_clip
from sara.data.mtss import full_caption
from sara.data.synthetic.truth import Truth
from sara.masks.store import load_masks


@dataclass
class Sample:
    clip_id: str
    frames: np.ndarray  # (F, H, W, 3) uint8, the whole clip
    caption: str  # the full MTSS caption c (what both the DiT and the aligner see)
    fg: np.ndarray | None = None  # (F, H, W) bool union of entity masks, for the pair-budget log
    truth: Truth | None = None  # renderer ground truth (synthetic clips; MoAlign's ground-truth flow)
    masks: np.ndarray | None = None  # (K, F, H, W) bool ground-truth entity masks, kept for the oracle target only


class ClipSet:
    """Training clips from the clip folders (`data.out_dir`), with ground-truth / SAM FG masks when present.

    Decoded clips are kept in memory when the set is small (the embedded default), else read per step.
    `entity_masks` keeps each clip's ground-truth entity masks too (the oracle TRD target reads them).
    """

    def __init__(self, clips_root: str | Path, masks_dir: str | Path | None = None, split: str = "train", cache_mb: int = 1024,
                 entity_masks: bool = False) -> None:
        self.root = Path(clips_root)
        self.records = list_clips(self.root, split)
        if not self.records:
            raise ValueError(f"no {split} clips in {self.root}/index.json")
        self.masks_dir = Path(masks_dir) if masks_dir else None
        self.cache_mb = cache_mb
        self.entity_masks = entity_masks
        self._cache: dict[int, Sample] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.records)

    def _fg(self, clip: Any) -> np.ndarray | None:
        if self.masks_dir is not None and (self.masks_dir / f"{clip.clip_id}.npz").is_file():
            m = load_masks(self.masks_dir, clip.clip_id, clip.frames.shape)
            return np.asarray(m.union, dtype=bool)
        if clip.masks is not None and len(clip.masks):
            return np.asarray(clip.masks, dtype=bool).any(0)  # (F, H, W)
        return None

    def _load(self, i: int) -> Sample:
        clip = load_clip(self.records[i].folder(self.root))
        masks = clip.masks if self.entity_masks else None
        return Sample(clip.clip_id, clip.frames, full_caption(clip.caption), self._fg(clip), clip.truth, masks)

    @staticmethod
    def _nbytes(s: Sample) -> int:
        return sum(x.nbytes for x in (s.frames, s.fg, s.masks) if x is not None)

    def _keep(self, i: int, s: Sample) -> bool:
        """Cache `s` if it fits in `cache_mb`; False when it does not."""
        size = self._nbytes(s)
        if self._cached_bytes + size > self.cache_mb * 2**20:
            return False
        self._cache[i] = s
        self._cached_bytes += size
        return True

    def __getitem__(self, i: int) -> Sample:
        if i in self._cache:
            return self._cache[i]
        s = self._load(i)
        self._keep(i, s)
        return s

    def in_memory(self) -> bool:
        """Every clip is decoded and cached: reading one is a dict lookup."""
        return len(self._cache) == len(self)

    def preload(self, workers: int = 8) -> int:
        """Decode every clip into the cache up front, `workers` at a time, when the whole set fits in `cache_mb`
        (judged from the first clip); returns how many clips are cached. Threads suffice: the decode runs in an
        ffmpeg subprocess and numpy, outside the GIL. Without it a step waits on one decode per uncached sample."""
        todo = [i for i in range(len(self)) if i not in self._cache]
        if not todo:
            return len(self._cache)
        first = self._load(todo[0])
        if self._cached_bytes + self._nbytes(first) * len(todo) > self.cache_mb * 2**20:
            return len(self._cache)
        self._keep(todo[0], first)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, s in zip(todo[1:], pool.map(self._load, todo[1:])):
                self._keep(i, s)
        return len(self._cache)


class FrozenInputs:
    """Every training clip's VAE latent z_0 and caption state, encoded once per run (`train.cache_frozen_inputs`).

    Both never change during a run (the posterior mean of the frozen VAE, the frozen text encoder), yet a step
    re-encoded its whole batch: 44% and 23% of an embedded step (benchmarks/stage2_step.md). Clips are encoded in
    index order in fixed chunks, so a resumed run reads the same values; a cached value equals the per-step one up
    to batch-composition rounding. Memory: one latent and one (L, D) caption state per clip, on the device.
    """

    def __init__(self, clips: Any, encode: Callable[[torch.Tensor], torch.Tensor],
                 text: Callable[[list[str]], torch.Tensor], chunk: int = 16) -> None:
        n = len(clips)
        with torch.no_grad():
            self.latents = torch.cat([  # (N, C, F', H', W')
                encode(torch.from_numpy(np.stack([clips[i].frames for i in range(a, min(a + chunk, n))])))
                for a in range(0, n, chunk)])
            self.states = torch.cat([  # (N, L, D)
                text([clips[i].caption for i in range(a, min(a + chunk, n))]) for a in range(0, n, chunk)])
            self.empty = text([""])[0]  # (L, D): the dropped caption (CFG)

    def batch(self, idx: list[int], drop: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_0 (B, C, F', H', W'), caption states (B, L, D)) of clips `idx`, the empty caption where `drop`."""
        states = [self.empty if d else self.states[i] for i, d in zip(idx, drop)]
        return self.latents[idx], torch.stack(states)


class _StepSamples(Dataset):
    """Item k: (clip indices, samples) of step `start + k` of one rank: a DataLoader item is one whole step."""

    def __init__(self, clips: Any, indices: Callable[[int], list[int]], start: int, stop: int) -> None:
        self.clips, self.indices, self.start, self.stop = clips, indices, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, k: int) -> tuple[list[int], list[Sample]]:
        idx = self.indices(self.start + k)
        return idx, [self.clips[i] for i in idx]


def _as_is(item: Any) -> Any:
    return item


def step_loader(clips: Any, indices: Callable[[int], list[int]], start: int, stop: int,
                workers: int | None = None) -> DataLoader:
    """(clip indices, samples) of every step in [start, stop), in step order; `indices(step)` names the clips.

    With every clip in memory (`ClipSet.in_memory`, the small sets that `preload` decodes up front) a step reads
    them in the loop, a lookup each. Otherwise `workers` processes (default: up to 4) decode the clips of the next
    two steps while the current one trains, instead of the step waiting on one decode per sample. The samples are
    the same either way: which clips a step takes depends only on `indices`."""
    if workers is None:
        in_memory = clips.in_memory() if hasattr(clips, "in_memory") else True
        workers = 0 if in_memory else min(4, os.cpu_count() or 1)
    return DataLoader(_StepSamples(clips, indices, start, stop), batch_size=None, shuffle=False,
                      num_workers=workers, prefetch_factor=2 if workers else None, collate_fn=_as_is,
                      generator=torch.Generator())  # its own generator: the loader never draws from the global RNG
