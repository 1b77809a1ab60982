"""Segmentation by the known palette: which entity colour each pixel shows, connected blobs, aligned IoU."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from sara.data.synthetic.spec import COLOURS

COLOUR_TOL = 80.0  # RGB distance within which a pixel can belong to an entity colour
MIN_AREA_FRAC = 0.15  # smallest blob kept, as a fraction of the smallest entity's drawn area
MIN_DENSITY = 0.35  # blob pixels / its one-pixel-dilated outline: solid shapes ~0.6-0.8, scattered noise far less


@dataclass
class Blob:
    colour: int  # index into the prompt's distinct entity colours
    mask: np.ndarray  # (H, W) bool
    area: int
    centre: np.ndarray  # (2,) x, y pixel coords


PALETTE_NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[n] for n in PALETTE_NAMES], np.float32)  # (P, 3)


def colour_labels(frames: np.ndarray, bg: np.ndarray, colours: list[str]) -> np.ndarray:
    """(F, H, W) int: index into `colours` (distinct names) of the entity colour each pixel shows, -1 for background.

    `bg` (F, H, W, 3) is the ground-truth background the pixel is compared against.
    """
    names = PALETTE_NAMES
    refs = np.concatenate([PALETTE, PALETTE * 0.5])  # (2P, 3): plain colours and their darker texture shades
    x = frames.astype(np.float32)  # (F, H, W, 3)
    d = np.linalg.norm(x[..., None, :] - refs, axis=-1)  # (F, H, W, 2P)
    nearest = d.argmin(-1) % len(names)  # palette index of the nearest plain or dark shade
    dmin = d.min(-1)
    d_bg = np.linalg.norm(x - bg.astype(np.float32), axis=-1)  # (F, H, W)
    labels = np.full(frames.shape[:3], -1, np.int16)
    ok = (dmin <= COLOUR_TOL) & (dmin < d_bg)
    for i, c in enumerate(colours):
        labels[ok & (nearest == names.index(c))] = i
    return labels


def blobs_in_frame(labels: np.ndarray, n_colours: int, min_area: int) -> list[Blob]:
    """Connected components per colour; fragments within one pixel are joined (thin limbs, stripes)."""
    out: list[Blob] = []
    kernel = np.ones((3, 3), np.uint8)
    for c in range(n_colours):
        mask = (labels == c).astype(np.uint8)
        if mask.sum() < min_area:
            continue
        n, comp = cv2.connectedComponents(cv2.dilate(mask, kernel), connectivity=8)
        for i in range(1, n):
            m = (comp == i) & mask.astype(bool)
            area = int(m.sum())
            # a solid shape fills most of its dilated outline; scattered noise pixels joined by the dilation do not
            if area >= min_area and area >= MIN_DENSITY * int((comp == i).sum()):
                ys, xs = np.nonzero(m)
                out.append(Blob(c, m, area, np.array([xs.mean() + 0.5, ys.mean() + 0.5])))
    return out


def aligned_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two masks after moving their centroids together (best of the 9 one-pixel offsets)."""
    ya, xa = np.nonzero(a)
    yb, xb = np.nonzero(b)
    if len(ya) == 0 or len(yb) == 0:
        return 0.0
    pa = np.stack([ya - int(round(ya.mean())), xa - int(round(xa.mean()))], 1)  # (Na, 2) centred coords
    pb = np.stack([yb - int(round(yb.mean())), xb - int(round(xb.mean()))], 1)
    lo = np.minimum(pa.min(0), pb.min(0)) - 1
    hi = np.maximum(pa.max(0), pb.max(0)) + 2
    size = hi - lo + 1
    ca = np.zeros(size, bool)
    ca[pa[:, 0] - lo[0], pa[:, 1] - lo[1]] = True
    best = 0.0
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            cb = np.zeros(size, bool)
            cb[pb[:, 0] - lo[0] + dy, pb[:, 1] - lo[1] + dx] = True
            inter = np.logical_and(ca, cb).sum()
            best = max(best, inter / (len(pa) + len(pb) - inter))
    return float(best)
