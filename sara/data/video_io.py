"""Video files: mp4 read/write through imageio's ffmpeg (libx264, near-lossless quality) and contact sheets (one
PNG per video with its frames tiled in a grid, for a quick look without a player).

Two pixel formats:
- `yuv420p` (default): what every player and browser plays. It stores colour at half resolution, so hard
  colour edges blur (measured on 64x64 synthetic clips: ~26-30 dB PSNR whatever the CRF) and frame sizes must be
  even: odd sizes are refused with a clear error instead of being silently resized (imageio would pad to 16).
- `yuv444p` (High 4:4:4 profile): full-resolution colour, ~39-41 dB on the same clips at about the same file size;
  read by ffmpeg, PyAV, imageio, decord and OpenCV, but not by most browsers. The synthetic clips use it because
  their colours and edges are the supervision (`data.pixel_format`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

CRF = 12  # x264 constant rate factor: 0 is lossless, 18 is "visually lossless"; 12 keeps flat colours crisp


def check_even(height: int, width: int, what: str = "video") -> None:
    if height % 2 or width % 2:
        raise ValueError(f"{what}: H.264 with yuv420p needs even height and width, got {height}x{width}")


PIXEL_FORMATS = ("yuv420p", "yuv444p")


def write_video(path: str | Path, frames: np.ndarray, fps: int, pixel_format: str = "yuv420p") -> None:
    """Write (F, H, W, 3) uint8 RGB frames as H.264 mp4; written to a temp name first, then renamed."""
    import imageio.v2 as imageio

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be (F, H, W, 3) uint8, got {frames.dtype} {frames.shape}")
    if pixel_format not in PIXEL_FORMATS:
        raise ValueError(f"pixel_format must be one of {PIXEL_FORMATS}, got {pixel_format!r}")
    if pixel_format == "yuv420p":
        check_even(frames.shape[1], frames.shape[2], str(path))
    profile = ["-profile:v", "high444"] if pixel_format == "yuv444p" else []
    path = Path(path)
    tmp = path.with_name(f".tmp{os.getpid()}{path.suffix}")  # short: the final name may be 255 bytes long
    writer = imageio.get_writer(
        str(tmp), format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat=pixel_format,
        macro_block_size=2 if pixel_format == "yuv420p" else 1, quality=None, ffmpeg_log_level="error",
        ffmpeg_params=["-crf", str(CRF), "-preset", "medium", "-threads", "1", *profile],  # one thread: byte-stable
    )
    try:
        for frame in frames:
            writer.append_data(frame)
    finally:
        writer.close()
    tmp.replace(path)


def read_video(path: str | Path, clip_id: str | None = None) -> tuple[np.ndarray, float]:
    """Read an mp4 as ((F, H, W, 3) uint8 RGB, fps).

    A missing, truncated, empty or frameless file raises one error naming the clip (when given) and the file,
    without ffmpeg's banner."""
    import imageio.v2 as imageio

    from sara.errors import BadDataError, MissingDataError

    path = Path(path)
    who = f"clip {clip_id!r}: " if clip_id else ""
    if not path.is_file():
        raise MissingDataError(f"{who}video not found: {path}")
    try:
        reader = imageio.get_reader(str(path), format="FFMPEG")
        try:
            fps = float(reader.get_meta_data().get("fps", 0.0))
            frames = [np.asarray(f) for f in reader]
        finally:
            reader.close()
    except (OSError, RuntimeError, ValueError, StopIteration) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise BadDataError(f"{who}{path} cannot be decoded ({path.stat().st_size} bytes; truncated, empty or not "
                           f"an mp4): {reason}") from None
    if not frames:
        raise BadDataError(f"{who}{path} holds no video frames ({path.stat().st_size} bytes)")
    return np.stack(frames)[..., :3].astype(np.uint8), fps


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
    write_video(mp4, frames, fps)
    save_png(png, contact_sheet(frames, label=label))
