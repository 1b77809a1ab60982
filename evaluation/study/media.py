"""Videos a rater may see: bytes that carry the picture and nothing else.

A sampled mp4 carries text beside the picture: the muxer's and encoder's names and versions (`Lavf...`,
`Lavc... libx264`), x264's settings in an SEI message of the bitstream, creation times. None of it names a run
today, but a rater's browser can read all of it, so the study never serves a sampled file as it is:
`strip_metadata` re-muxes the H.264 stream without re-encoding (the frames stay bit-identical) and drops every
container tag, the chapters, the SEI units (NAL type 6) and the encoder strings (`-fflags/-flags +bitexact`, which
also zero the creation times). tests/test_study.py checks that the result holds no printable tag and decodes
to the same frames.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np

from sara.errors import BadDataError

CORRUPT_NOISE = 60.0  # sd of the pixel noise of an attention check's corrupted copy (0-255 scale)


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()  # the ffmpeg that wrote the sampled videos (imageio's)


def strip_metadata(src: Path, dst: Path) -> None:
    """Copy the video stream of `src` to `dst` with no tag, chapter, SEI message or encoder string."""
    tmp = dst.with_name(f".tmp{os.getpid()}{dst.suffix}")
    cmd = [_ffmpeg(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(src),
           "-map", "0:v:0", "-c", "copy", "-map_metadata", "-1", "-map_chapters", "-1",
           "-bsf:v", "filter_units=remove_types=6",  # SEI: x264 writes its version and settings there
           "-metadata:s:v:0", "handler_name=", "-metadata:s:v:0", "encoder=",
           "-fflags", "+bitexact", "-flags:v", "+bitexact", "-movflags", "+faststart", str(tmp)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tmp.unlink(missing_ok=True)
        reason = (out.stderr.strip().splitlines() or ["ffmpeg failed"])[-1]
        raise BadDataError(f"{src}: cannot be re-muxed for the study: {reason}")
    tmp.replace(dst)


def write_clean(frames: np.ndarray, fps: int, dst: Path) -> None:
    """Encode frames as the sampled videos are encoded (sara.data.video_io), then strip the metadata."""
    from sara.data.video_io import write_video

    raw = dst.with_name(f".raw{os.getpid()}{dst.suffix}")
    write_video(raw, frames, fps)
    try:
        strip_metadata(raw, dst)
    finally:
        raw.unlink(missing_ok=True)


def corrupt(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(F, H, W, 3) uint8 -> the same frames in a scrambled order under heavy pixel noise: worse on every count a
    rater (or the grounded judge) can see, so choosing it, or a tie, fails the attention check."""
    order = rng.permutation(len(frames))  # motion broken
    noisy = frames[order].astype(np.float64) + rng.normal(0.0, CORRUPT_NOISE, frames.shape)  # picture broken
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
