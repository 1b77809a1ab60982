"""Mask backend `groundtruth`: the renderer's exact per-entity masks stored with each synthetic clip."""

from __future__ import annotations

from pathlib import Path

from sara.data.clips import load_mask_array
from sara.data.mtss import foreground_references, load_caption
from sara.masks.store import EntityMasks


def groundtruth_masks(clip_dir: str | Path, clip_id: str) -> EntityMasks:
    """EntityMasks from `<clip_dir>/masks.npz`, rows ordered like the caption's foreground references."""
    clip_dir = Path(clip_dir)
    path = clip_dir / "masks.npz"
    if not path.is_file():
        raise FileNotFoundError(
            f"clip {clip_id!r} has no ground-truth masks ({path}); masks.backend 'groundtruth' needs synthetic clips "
            "(data.source: synthetic) or real clips that ship masks.npz; use masks.backend 'sam3' otherwise"
        )
    ids, entities = load_mask_array(path)
    order = [r.ref_id for r in foreground_references(load_caption(clip_dir / "caption.json"))]
    if sorted(order) != sorted(ids):
        raise ValueError(f"{path}: mask ref_ids {ids} do not match the caption's entities {order}")
    rows = [ids.index(r) for r in order]
    return EntityMasks(clip_id=clip_id, ref_ids=order, entities=entities[rows], backend="groundtruth")
