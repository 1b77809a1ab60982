"""What a clip teaches Stage 1: its K+2 supervision units (a caption and its target on the encoder grid: each
entity, the combined foreground, the background; the full caption), built from the clip's MTSS caption, its stored
masks and its cached encoder features. Plain data, read by the training loop (sara.train.stage1) and by the
aligner's evaluation (evaluation/aligner.py) alike.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from sara.config import AlignerParams, Params
from sara.data import mtss
from sara.data.clips import load_clip
from sara.losses.aligner import masks_to_grid
from sara.masks.store import load_masks
from sara.models.encoders import cached_features


@dataclass
class Unit:
    """One supervision forward: a caption and its target on the encoder grid (the paper's K + 2 forwards per video)."""

    kind: str  # entity | combined | background | full
    caption: str
    target: torch.Tensor  # M_y (T_s, N_s) in [0, 1]
    ref_id: str | None = None


@dataclass
class ClipExample:
    """A clip's cached V-JEPA features and its supervision units."""

    clip_id: str
    features: torch.Tensor  # V_y (T_s, N_s, D_v)
    units: list[Unit]
    full_caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def supervision_units(
    entity_texts: Sequence[tuple[str, str]],
    foreground_text: str,
    background_text: str,
    full_text: str,
    ref_ids: Sequence[str],
    entity_masks: torch.Tensor,
    frame_idx: torch.Tensor,
    grid: tuple[int, int, int],
    *,
    entity_separated: bool = True,
    threshold: float | None = None,
    seen: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[Unit]:
    """The K+2 forwards of one clip: (c_k, M_k) for k = 1..K, (c_fg, M_fg = union), (c_bg, M_bg = 1 - M_fg).

    `entity_masks` (K, F, H, W) bool is ordered as `ref_ids`; captions are matched to masks by ref_id. With
    `entity_separated=False` (the "w/o entity-separated" ablation) the clip gives one forward: the full caption c
    with the union mask. A clip with K = 0 gives only the background forward (M_bg = 1 everywhere).
    `seen` (the encoder's `masks_seen`) maps a clip mask (F, H, W) to what the encoder saw of it, its frames
    through its resize and crop (`vfm.resize`); None = the sampled frames `frame_idx` of the full frame.
    """
    masks = torch.as_tensor(entity_masks).bool()  # (K, F, H, W)
    if masks.ndim != 4 or masks.shape[0] != len(ref_ids):
        raise ValueError(f"entity masks must be (K, F, H, W) with K = len(ref_ids) = {len(ref_ids)}, "
                         f"got {tuple(masks.shape)}")
    union = masks.any(0)  # (F, H, W)
    background = ~union

    def to_grid(m: torch.Tensor) -> torch.Tensor:  # (F, H, W) -> (T_s, N_s)
        if seen is None:
            return masks_to_grid(m, frame_idx, grid, threshold)
        view = seen(m)  # (T, S, S): the encoder's frames, resized and cropped as its pixels were
        return masks_to_grid(view, torch.arange(view.shape[-3]), grid, threshold)

    if not entity_separated:
        return [Unit("full", full_text, to_grid(union))]
    index = {r: i for i, r in enumerate(ref_ids)}
    units = []
    for ref_id, text in entity_texts:
        if ref_id not in index:
            raise ValueError(f"entity {ref_id} has a caption but no mask (mask ref_ids: {list(ref_ids)})")
        units.append(Unit("entity", text, to_grid(masks[index[ref_id]]), ref_id))
    if units:
        units.append(Unit("combined", foreground_text, to_grid(union)))
    units.append(Unit("background", background_text, to_grid(background)))
    return units


def clip_units(caption: Any, masks: Any, frame_idx: torch.Tensor, grid: tuple[int, int, int],
               p: AlignerParams, seen: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[Unit]:
    """`supervision_units` from an MTSS caption (`sara.data.mtss`) and stored masks (`sara.masks.store`)."""
    return supervision_units(
        mtss.entity_captions(caption), mtss.foreground_caption(caption), mtss.background_caption(caption),
        mtss.full_caption(caption), list(masks.ref_ids), torch.as_tensor(masks.entities), frame_idx, grid,
        entity_separated=p.entity_separated, threshold=p.mask_threshold, seen=seen)


def build_examples(records: Sequence[Any], params: Params, vfm: Any, *, with_clip: bool = False,
                   all_queries: bool = False, progress: bool = True) -> list[ClipExample]:
    """ClipExamples for clip records (`sara.data.clips.list_clips`): cached V-JEPA features (computed once per clip
    and encoder under `vfm.cache_dir`), masks from `masks.out_dir`, and the supervision units (K+2, or the single
    full-caption unit of the "w/o entity-separated" ablation; `all_queries` always gives the K+2 units, which is
    what evaluation scores every variant on). With `with_clip` the loaded frames (sampled, one per tubelet),
    masks and caption are kept in `extra` for figures."""
    from tqdm.auto import tqdm

    out = []
    for rec in tqdm(records, desc="features + targets", disable=not progress, unit="clip"):
        clip = load_clip(rec.folder(params.data.out_dir))
        masks = load_masks(params.masks.out_dir, rec.clip_id, clip.frames.shape)
        feats = cached_features(vfm, clip, params.vfm.cache_dir)  # (T_s, N_s, D_v)
        idx = vfm.frame_indices(clip.frames.shape[0])
        p = params.aligner.model_copy(update={"entity_separated": True}) if all_queries else params.aligner
        units = clip_units(clip.caption, masks, idx, vfm.grid, p, seen=vfm.masks_seen)
        extra: dict[str, Any] = {"num_entities": len(masks.ref_ids)}
        if with_clip:
            first = idx[:: vfm.tubelet_size]  # first sampled frame of each tubelet
            extra |= {"frames": clip.frames[first.numpy()], "masks": masks.entities[:, first.numpy()],
                      "ref_ids": list(masks.ref_ids), "all_frames": clip.frames}
        out.append(ClipExample(rec.clip_id, feats, units, mtss.full_caption(clip.caption), extra))
    return out
