"""Per-clip entity masks on disk: one compressed npz per clip (format documented in docs/data.md).

```
<masks_dir>/<clip_id>.npz
  ref_ids     (K,) str          foreground ref_ids (PERSON_k / OBJECT_k) in caption order
  entities    (K, F, H, W) bool M_k, one per entity (an entity the backend could not find is all False)
  union       (F, H, W) bool    M_fg = OR_k M_k
  background  (F, H, W) bool    M_bg = NOT M_fg
  scores      (K,) float32      backend confidence per entity (1.0 for ground truth, 0.0 if not found)
  prompts     (K,) str          the noun phrase each entity was prompted with ("" for ground truth)
  backend     () str            "groundtruth" or "sam3"
```
`union` and `background` are redundant with `entities` on purpose: consumers read exactly what they need, and
`load_masks` checks that they agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sara.errors import BadDataError, MissingDataError


@dataclass
class EntityMasks:
    clip_id: str
    ref_ids: list[str]
    entities: np.ndarray  # (K, F, H, W) bool
    backend: str
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # (K,)
    prompts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entities = np.asarray(self.entities, dtype=bool)
        if self.entities.ndim != 4 or self.entities.shape[0] != len(self.ref_ids):
            raise ValueError(
                f"{self.clip_id}: entities must be (K, F, H, W) with K = len(ref_ids) = {len(self.ref_ids)}, "
                f"got {self.entities.shape}"
            )
        k = len(self.ref_ids)
        if self.scores.shape != (k,):
            self.scores = np.ones(k, np.float32) if self.scores.size == 0 else self.scores
        if not self.prompts:
            self.prompts = [""] * k
        if self.scores.shape != (k,) or len(self.prompts) != k:
            raise ValueError(f"{self.clip_id}: scores and prompts need one entry per ref_id ({k})")

    @property
    def union(self) -> np.ndarray:
        """M_fg (F, H, W): foreground = any entity."""
        return self.entities.any(axis=0)

    @property
    def background(self) -> np.ndarray:
        """M_bg (F, H, W) = 1 - M_fg."""
        return ~self.union

    @property
    def shape(self) -> tuple[int, int, int]:
        """(F, H, W)."""
        return tuple(self.entities.shape[1:])  # type: ignore[return-value]

    def entity(self, ref_id: str) -> np.ndarray:
        if ref_id not in self.ref_ids:
            raise KeyError(f"{self.clip_id}: no mask for {ref_id!r}; have {self.ref_ids}")
        return self.entities[self.ref_ids.index(ref_id)]


def mask_path(masks_dir: str | Path, clip_id: str) -> Path:
    return Path(masks_dir) / f"{clip_id}.npz"


def save_masks(masks_dir: str | Path, m: EntityMasks) -> Path:
    """Write `<masks_dir>/<clip_id>.npz` atomically (temp file, then rename)."""
    masks_dir = Path(masks_dir)
    masks_dir.mkdir(parents=True, exist_ok=True)
    final = mask_path(masks_dir, m.clip_id)
    tmp = masks_dir / f".{m.clip_id}.tmp{os.getpid()}.npz"
    union = m.union
    np.savez_compressed(
        tmp,
        ref_ids=np.array(m.ref_ids, dtype=str).reshape(len(m.ref_ids)),
        entities=m.entities,
        union=union,
        background=~union,
        scores=m.scores.astype(np.float32),
        prompts=np.array(m.prompts, dtype=str).reshape(len(m.prompts)),
        backend=np.array(m.backend),
    )
    tmp.replace(final)
    return final


def check_clip_masks(m: EntityMasks, video_shape: tuple[int, ...], path: str | Path) -> None:
    """Refuse masks whose (F, H, W) is not the clip video's, naming the clip and the file."""
    from sara.data.clips import check_mask_shape

    check_mask_shape(m.entities, len(m.ref_ids), video_shape, m.clip_id, path)


def load_masks(masks_dir: str | Path, clip_id: str, video_shape: tuple[int, ...] | None = None) -> EntityMasks:
    """Read one clip's masks; refuses a file whose union/background disagree with its entity masks, and (with
    `video_shape`, the clip's (F, H, W)) masks of another shape than the clip's video."""
    path = mask_path(masks_dir, clip_id)
    if not path.is_file():
        raise MissingDataError(f"no masks for clip {clip_id!r} at {path}: run `sara masks` first")
    with np.load(path) as z:
        m = EntityMasks(
            clip_id=clip_id,
            ref_ids=[str(x) for x in z["ref_ids"]],
            entities=z["entities"],
            backend=str(z["backend"]),
            scores=z["scores"].astype(np.float32),
            prompts=[str(x) for x in z["prompts"]],
        )
        if not (np.array_equal(z["union"], m.union) and np.array_equal(z["background"], ~m.union)):
            raise BadDataError(f"clip {clip_id!r}: {path}: union/background do not match the entity masks "
                               "(file corrupted?)")
    if video_shape is not None:
        check_clip_masks(m, video_shape, path)
    return m


def resample_to_grid(mask: np.ndarray, grid: tuple[int, int, int]) -> np.ndarray:
    """Area-average a (F, H, W) bool mask onto a (T, h, w) token grid -> float32 (T, h, w) coverage in [0, 1].

    Each token's value is the fraction of its space-time cell that the mask covers (adaptive average pooling,
    so sizes need not divide evenly).
    """
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]  # (1, 1, F, H, W)
    return F.adaptive_avg_pool3d(x, grid)[0, 0].numpy()  # (T, h, w)
