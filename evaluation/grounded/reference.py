"""The reference: the ground-truth clip of a prompt's scene spec, measured the same way as the videos it judges,
and the per-frame matching of prompt entities to blobs (`match_entities`)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from evaluation.grounded.segment import MIN_AREA_FRAC, aligned_iou, blobs_in_frame, colour_labels
from sara.data.synthetic.render import background_frames, render
from sara.data.synthetic.spec import SceneSpec
from sara.data.synthetic.truth import Truth
from sara.data.video_io import read_video, write_video

VISIBLE_FRAC = 0.3  # an entity is scored in a frame when at least this fraction of it is visible
COLOUR_PENALTY = 0.1  # matching cost of a wrong colour: below the IoU gap between different shapes (circle vs square ~0.22)


@dataclass
class Tracks:
    """Per entity and frame: the matched blob's mask, centre, area and colour correctness (None = not found)."""

    masks: list[list[np.ndarray | None]]  # [K][F]
    centres: np.ndarray  # (K, F, 2), NaN where not found
    areas: np.ndarray  # (K, F), 0 where not found
    colour_ok: np.ndarray  # (K, F) bool
    iou: np.ndarray  # (K, F) aligned IoU with the reference mask (0 where not found)
    counts: np.ndarray  # (F, G) blobs per distinct colour
    labels: np.ndarray  # (F, H, W)


@dataclass
class Reference:
    """The ground truth measured the same way: entity masks, visibility, background, camera shifts."""

    truth: Truth
    frames: np.ndarray  # (F, H, W, 3)
    background: np.ndarray  # (F, H, W, 3) ground-truth background (entities removed)
    entity_masks: np.ndarray  # (K, F, H, W) bool: reference segmentation of each entity
    visible: np.ndarray  # (K, F) bool
    tracks: Tracks = field(repr=False)
    colours: list[str] = field(default_factory=list)  # distinct entity colours (two entities may share one)
    group: list[int] = field(default_factory=list)  # entity k -> index of its colour in `colours`
    radius: list[float] = field(default_factory=list)  # entity k's radius in pixels
    min_area: int = 4


def render_reference(spec: SceneSpec, frames: int, height: int, width: int, fps: int, encode: bool = True) -> tuple[np.ndarray, np.ndarray, Truth]:
    """Ground-truth clip for a spec, optionally through the same mp4 encode/decode as the videos it is compared to."""
    video, masks, truth = render(spec, frames, height, width, fps)
    if encode:
        video = mp4_roundtrip(video, fps)
    return video, masks, truth


def mp4_roundtrip(video: np.ndarray, fps: int) -> np.ndarray:
    """The video as a player reads it after the same H.264 encode as the sampled videos."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "v.mp4"
        write_video(p, video, fps)
        return read_video(p)[0]


def build_reference(spec: SceneSpec, frames: int, height: int, width: int, fps: int, video: np.ndarray | None = None) -> Reference:
    """Render (or take) the ground-truth clip and measure it; `video` overrides the rendered pixels (tests)."""
    gt_video, masks, truth = render_reference(spec, frames, height, width, fps)
    if video is not None:
        gt_video = video
    bg = background_frames(spec, frames, height, width)
    names = [e.colour for e in truth.entities]
    colours = list(dict.fromkeys(names))
    group = [colours.index(c) for c in names]
    labels = colour_labels(gt_video, bg, colours)
    vis_frac = np.array([e.visible_fraction for e in truth.entities])  # (K, F)
    radius = [e.radius_px for e in truth.entities]
    # the smallest entity's drawn area (a thin stick figure covers far less than its radius suggests)
    smallest = min(max(e.visible_area_px) for e in truth.entities)
    min_area = max(4, int(MIN_AREA_FRAC * smallest))
    kernel = np.ones((5, 5), np.uint8)
    ent = np.zeros(masks.shape, bool)  # (K, F, H, W)
    for k in range(len(names)):
        for f in range(frames):
            near = cv2.dilate(masks[k, f].astype(np.uint8), kernel).astype(bool)
            # its own pixels, plus edge pixels next to it that no entity owns (compression blur), in its colour
            own = masks[k, f] | (near & ~masks[:, f].any(0))
            ent[k, f] = own & (labels[f] == group[k])
    visible = (vis_frac >= VISIBLE_FRAC) & (ent.reshape(len(names), frames, -1).sum(-1) >= min_area)
    ref = Reference(truth, gt_video, bg, ent, visible, tracks=None, colours=colours, group=group, radius=radius, min_area=min_area)  # type: ignore[arg-type]
    ref.tracks = match_entities(gt_video, ref, labels=labels)  # the clip's colours are labelled once
    return ref


def _centre(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def match_entities(video: np.ndarray, ref: Reference, labels: np.ndarray | None = None) -> Tracks:
    """Match each prompt entity to at most one blob per frame by shape (aligned IoU) and colour.

    `labels`: the video's `colour_labels` against `ref.background` and `ref.colours`, when the caller has them."""
    F, H, W = video.shape[:3]
    K, G = len(ref.group), len(ref.colours)
    if labels is None:
        labels = colour_labels(video, ref.background, ref.colours)
    masks: list[list[np.ndarray | None]] = [[None] * F for _ in range(K)]
    centres = np.full((K, F, 2), np.nan)
    areas = np.zeros((K, F))
    colour_ok = np.zeros((K, F), bool)
    ious = np.zeros((K, F))
    counts = np.zeros((F, G), int)
    for f in range(F):
        blobs = blobs_in_frame(labels[f], G, ref.min_area)
        for b in blobs:
            counts[f, b.colour] += 1
        ks = [k for k in range(K) if ref.visible[k, f]]
        if not blobs or not ks:
            continue
        cost = np.full((len(ks), len(blobs)), 1e6)
        iou = np.zeros_like(cost)
        for i, k in enumerate(ks):
            for j, b in enumerate(blobs):
                iou[i, j] = aligned_iou(b.mask, ref.entity_masks[k, f])
                same = b.colour == ref.group[k]
                # right colour: any blob (it may be one fragment of an occluded entity; fragments are joined
                # below); wrong colour: only a clearly same-shaped blob
                if same or iou[i, j] >= 0.6:
                    cost[i, j] = (1.0 - iou[i, j]) + (0.0 if same else COLOUR_PENALTY)
        rows, cols = linear_sum_assignment(cost)
        used = set()
        for i, j in zip(rows, cols):
            if cost[i, j] >= 1e6:
                continue
            k, b = ks[i], blobs[j]
            masks[k][f] = b.mask.copy()
            colour_ok[k, f] = b.colour == ref.group[k]
            used.add(j)
        # fragments of an entity split by an occluder in front of it: join them to the nearest matched entity
        for j, b in enumerate(blobs):
            if j in used:
                continue
            near = [(np.linalg.norm(b.centre - _centre(masks[k][f])), k) for k in ks
                    if masks[k][f] is not None and ref.group[k] == b.colour]
            if near:
                d, k = min(near)
                if d <= 1.5 * ref.radius[k]:
                    masks[k][f] |= b.mask
        for k in ks:
            m = masks[k][f]
            if m is not None:
                centres[k, f] = _centre(m)
                areas[k, f] = int(m.sum())
                ious[k, f] = aligned_iou(m, ref.entity_masks[k, f])
    return Tracks(masks, centres, areas, colour_ok, ious, counts, labels)
