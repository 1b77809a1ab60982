"""The lab pretraining corpus: random synthetic scenes rendered once, in parallel on every core.

Every base model of the lab scale (VAE, video encoder, base DiT) pretrains on the same `train` clips; the
`heldout` clips carry entity masks and labels for the gates (VAE reconstruction PSNR, encoder probes). Clip i of
a split is seeded by (corpus.seed, split, i), like the data stage, so the corpus is deterministic whatever the
number of render processes, and its seed is separate from `data.seed`: no CT or evaluation clip is in it.

Layout of `pretrain.corpus.out_dir` (numpy arrays, memory-mappable):
  train_frames.npy     (N, F, H, W, 3) uint8
  train_captions.json  full MTSS caption of each clip (the DiT's text condition)
  heldout_frames.npy   (M, F, H, W, 3) uint8
  heldout_masks.npy    (M, 4, F, H, W) bool, visible mask of entity k (all False past the clip's K entities)
  heldout_labels.json  per clip: [{"ref_id", "shape", "colour", "motion"}] in mask order
  manifest.json        sizes, seed and render time
"""

from __future__ import annotations

import json
import math
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from sara.config import CorpusParams

SPLITS = {"train": 0, "heldout": 1}
MAX_ENTITIES = 4
MOTION_CLASSES = ("static", "left", "right", "up", "down")  # net displacement of an entity over the clip
SHAPE_CLASSES = ("circle", "square", "triangle", "star", "ring", "figure")
STATIC_FRACTION = 0.08  # net displacement below this fraction of the frame width counts as static


def motion_label(mask: np.ndarray) -> str:
    """Net displacement class of one entity from its visible mask (F, H, W): static, left, right, up or down."""
    f, h, w = mask.shape
    present = [i for i in range(f) if mask[i].any()]
    if len(present) < 2:
        return "static"
    ys0, xs0 = np.nonzero(mask[present[0]])
    ys1, xs1 = np.nonzero(mask[present[-1]])
    dx, dy = xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean()
    if math.hypot(dx, dy) < STATIC_FRACTION * w:
        return "static"
    if abs(dx) >= abs(dy):
        return "right" if dx > 0 else "left"
    return "down" if dy > 0 else "up"


def render_clip(c: CorpusParams, split: str, index: int) -> dict[str, Any]:
    """One corpus clip: frames (F, H, W, 3) uint8, its full caption, and (held out) masks and entity labels."""
    from sara.data.mtss import full_caption
    from sara.data.synthetic import random_spec, render, spec_to_mtss

    rng = np.random.default_rng([c.seed, SPLITS[split], index])
    spec = random_spec(rng, **c.scene_options)
    frames, masks, _ = render(spec, c.frames, c.height, c.width, c.fps)  # (F, H, W, 3), (K, F, H, W)
    caption = full_caption(spec_to_mtss(spec, frames=c.frames, height=c.height, width=c.width, fps=c.fps))
    out: dict[str, Any] = {"frames": frames, "caption": caption}
    if split == "heldout":
        out["masks"] = masks
        out["labels"] = [{"ref_id": e.ref_id, "shape": e.shape, "colour": e.colour, "motion": motion_label(masks[k])}
                         for k, e in enumerate(spec.entities)]
    return out


def _render_chunk(args: tuple[CorpusParams, str, int, int]) -> list[dict[str, Any]]:
    c, split, start, stop = args
    return [render_clip(c, split, i) for i in range(start, stop)]


def render_split(c: CorpusParams, split: str, n: int, workers: int = 0, log=print) -> list[dict[str, Any]]:
    """Render clips 0..n-1 of `split` on `workers` processes (0 = every core), in index order."""
    workers = workers or os.cpu_count() or 1
    chunk = max(1, min(64, -(-n // (4 * workers))))
    jobs = [(c, split, s, min(n, s + chunk)) for s in range(0, n, chunk)]
    clips: list[dict[str, Any]] = []
    t0, last = time.time(), 0.0
    if workers == 1 or len(jobs) == 1:
        results = map(_render_chunk, jobs)
        for part in results:
            clips.extend(part)
    else:
        # spawn, not fork: the parent may hold CUDA / OpenMP state that a forked child must not inherit
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            for part in pool.map(_render_chunk, jobs):
                clips.extend(part)
                if time.time() - last > 10:
                    last = time.time()
                    log(f"[corpus] {split}: {len(clips)}/{n} clips ({len(clips) / (last - t0):.0f} clips/s)")
    return clips


def write_corpus(c: CorpusParams, out: str | Path, workers: int | None = None, log=print) -> dict[str, Any]:
    """Render both splits into `out` (see the module docstring); returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = c.workers if workers is None else workers
    t0 = time.time()
    train = render_split(c, "train", c.n_train, workers, log)
    np.save(out / "train_frames.npy", np.stack([x["frames"] for x in train]))
    (out / "train_captions.json").write_text(json.dumps([x["caption"] for x in train]))
    del train
    held = render_split(c, "heldout", c.n_heldout, workers, log)
    np.save(out / "heldout_frames.npy", np.stack([x["frames"] for x in held]))
    masks = np.zeros((len(held), MAX_ENTITIES, c.frames, c.height, c.width), bool)
    for i, x in enumerate(held):
        masks[i, : len(x["masks"])] = x["masks"]
    np.save(out / "heldout_masks.npy", masks)
    (out / "heldout_labels.json").write_text(json.dumps([x["labels"] for x in held]))
    (out / "heldout_captions.json").write_text(json.dumps([x["caption"] for x in held]))
    seconds = time.time() - t0
    manifest = {**c.model_dump(mode="json"), "workers": workers or os.cpu_count(), "render_seconds": round(seconds, 2),
                "clips_per_second": round((c.n_train + c.n_heldout) / max(seconds, 1e-9), 1)}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    log(f"[corpus] {c.n_train} train + {c.n_heldout} held-out clips of {c.frames}x{c.height}x{c.width} "
        f"in {seconds:.1f} s -> {out}")
    return manifest


@dataclass
class Corpus:
    """One split of a written corpus; `frames` is memory-mapped."""

    frames: np.ndarray  # (N, F, H, W, 3) uint8
    captions: list[str]
    masks: np.ndarray | None = None  # (N, 4, F, H, W) bool (held out)
    labels: list[list[dict[str, str]]] | None = None  # held out

    def __len__(self) -> int:
        return len(self.frames)


def load_corpus(root: str | Path, split: str) -> Corpus:
    """Read one split written by `write_corpus`; a missing corpus names the stage that writes it."""
    root = Path(root)
    if not (root / "manifest.json").is_file():
        raise FileNotFoundError(f"{root}/manifest.json not found: run `sara corpus` (DVC stage corpus) first")
    if split not in SPLITS:
        raise ValueError(f"unknown corpus split {split!r}: expected one of {sorted(SPLITS)}")
    frames = np.load(root / f"{split}_frames.npy", mmap_mode="r")
    captions = json.loads((root / f"{split}_captions.json").read_text())
    if split == "train":
        return Corpus(frames, captions)
    masks = np.load(root / "heldout_masks.npy", mmap_mode="r")
    labels = json.loads((root / "heldout_labels.json").read_text())
    return Corpus(frames, captions, masks, labels)
