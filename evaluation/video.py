"""Contact sheets: one PNG per video with its frames tiled in a grid, for a quick look without a player."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def contact_sheet(frames: np.ndarray, cols: int | None = None, scale: int = 2, gap: int = 2, label: str | None = None) -> np.ndarray:
    """(F, H, W, 3) uint8 -> one (rows*(H*scale+gap)+top, cols*(W*scale+gap), 3) uint8 image, frames left to right.

    Each frame is enlarged `scale` times (nearest neighbour, so pixels stay visible) and numbered; `label`
    (e.g. "sara-or | prompt 03 | seed 0") goes in a strip on top.
    """
    from PIL import Image, ImageDraw

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    f, h, w, _ = frames.shape
    cols = cols or (f if f <= 12 else 8)
    rows = -(-f // cols)
    th, tw = h * scale, w * scale
    top = 14 if label else 0
    sheet = Image.new("RGB", (cols * (tw + gap) - gap, top + rows * (th + gap) - gap), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    if label:
        draw.text((2, 1), label, fill=(0, 0, 0))
    for i in range(f):
        r, c = divmod(i, cols)
        x, y = c * (tw + gap), top + r * (th + gap)
        sheet.paste(Image.fromarray(frames[i]).resize((tw, th), Image.NEAREST), (x, y))
        draw.text((x + 2, y + 1), str(i), fill=(255, 255, 255), stroke_width=1, stroke_fill=(0, 0, 0))
    return np.asarray(sheet)


def save_png(path: str | Path, image: np.ndarray) -> None:
    """Write a PNG through a temp name, so a crash never leaves half a file."""
    from PIL import Image

    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}.png")
    Image.fromarray(image).save(tmp)
    tmp.replace(path)


def save_video_and_sheet(frames: np.ndarray, fps: int, mp4: str | Path, png: str | Path, label: str | None = None) -> None:
    """The two files every generated (or oracle) video gets: H.264 mp4 and its contact sheet."""
    from sara.data.video_io import write_video

    write_video(mp4, frames, fps)
    save_png(png, contact_sheet(frames, label=label))
