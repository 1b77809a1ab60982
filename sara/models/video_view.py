"""What a frozen video encoder sees of a clip: which frames (`vfm.frame_sampling`) and which pixels (`vfm.resize`).

One home for both, shared by the pixels and the masks, so the BCE targets of Stage 1 cover exactly what the encoder
saw. Encoder-agnostic: an encoder kind supplies only its processor's short-side ratio (V-JEPA 2's video processor
resizes the short side to crop * 256 / 224; VideoMAE's image processor to crop * 1), so another encoder reuses it.

Frame sampling (`sample_frame_indices`):
  * `bin_centres` (default): n frames at the centres of n equal bins, index floor((i + 0.5) * F / n), so the
    frames span the whole clip (what Stage 2's grid alignment assumes, docs/stage2.md);
  * `stride`: n consecutive frames `vfm.frame_stride` apart from frame 0, as V-JEPA 2's examples take clips
    (`arange(0, n * stride, stride)`); a clip too short for the window repeats its last frame, as V-JEPA's video
    loader pads.
Spatial view (`SpatialView`):
  * `square` (default): the whole frame resized (bilinear, antialiased) to S x S, no crop: each patch covers a
    fixed rectangle of the frame and masks map onto the grid exactly (aspect ratio is not kept);
  * `short_side_crop`: the official video-processor behaviour: the short side resized to int(S * ratio) (the long
    side int(short * long / short), aspect kept; bilinear, antialiased, on the uint8 frames), then the centre S x S
    crop. Masks go through the same resize (as soft fractions) and the same crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

FRAME_SAMPLINGS = ("bin_centres", "stride")
RESIZE_MODES = ("square", "short_side_crop")
VJEPA2_SHORT_SIDE_RATIO = 256 / 224  # transformers' VJEPA2VideoProcessor: size = int(crop_size * 256 / 224)


def sample_frame_indices(num_frames: int, n: int, mode: str = "bin_centres", stride: int = 1) -> torch.Tensor:
    """Indices (n,) of the frames an encoder takes from a clip of `num_frames` (see the module docstring)."""
    if num_frames < 1:
        raise ValueError(f"clip has no frames (num_frames={num_frames})")
    if mode == "bin_centres":
        idx = ((torch.arange(n, dtype=torch.float64) + 0.5) * num_frames / n).floor().long()
    elif mode == "stride":
        if stride < 1:
            raise ValueError(f"vfm.frame_stride must be >= 1, got {stride}")
        idx = torch.arange(n, dtype=torch.long) * stride
    else:
        raise ValueError(f"unknown vfm.frame_sampling {mode!r}: expected one of {', '.join(FRAME_SAMPLINGS)}")
    return idx.clamp_(0, num_frames - 1)


def sampling_id(mode: str, stride: int) -> str:
    """Part of the encoder's preprocessing id (feature-cache identity)."""
    return "bin-centre-frames" if mode == "bin_centres" else f"stride-{stride}-frames"


@dataclass(frozen=True)
class SpatialView:
    """The encoder's square S x S input cut from an H x W frame, for pixels and masks alike."""

    mode: str = "square"
    size: int = 64  # S
    short_side_ratio: float = VJEPA2_SHORT_SIDE_RATIO  # short_side_crop only: resized short side = int(S * ratio)

    def __post_init__(self) -> None:
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"unknown vfm.resize {self.mode!r}: expected one of {', '.join(RESIZE_MODES)}")

    @property
    def id(self) -> str:
        """Part of the encoder's preprocessing id (feature-cache identity)."""
        if self.mode == "square":
            return "full-frame-bilinear-resize"
        return f"short-side-{self.short_side_ratio:.6g}-bilinear-resize/centre-crop"

    def resized_size(self, h: int, w: int) -> tuple[int, int]:
        """(h', w') of the frame after the resize step (the processors' rule for a `shortest_edge` size)."""
        if self.mode == "square":
            return self.size, self.size
        short, long = (w, h) if w <= h else (h, w)
        new_short = int(self.size * self.short_side_ratio)
        new_long = int(new_short * long / short)
        return (new_long, new_short) if w <= h else (new_short, new_long)

    def crop_offset(self, h: int, w: int) -> tuple[int, int]:
        """(top, left) of the S x S centre crop in the resized frame ((0, 0) for square)."""
        rh, rw = self.resized_size(h, w)
        if min(rh, rw) < self.size:
            raise ValueError(f"vfm.resize short_side_crop: the resized frame {rh}x{rw} is smaller than the "
                             f"{self.size}x{self.size} crop (short_side_ratio {self.short_side_ratio} < 1)")
        return int((rh - self.size) / 2.0), int((rw - self.size) / 2.0)

    def pixels(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (N, 3, H, W) -> float pixels in [0, 1], (N, 3, S, S)."""
        h, w = frames.shape[-2:]
        if self.mode == "square":
            x = frames.float() / 255.0
            if (h, w) != (self.size, self.size):
                x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True,
                                  align_corners=False)
            return x
        from torchvision.transforms.v2 import functional as tvF

        # resized on uint8, as the processors do (their output is rounded to uint8 before rescaling)
        x = tvF.resize(frames, list(self.resized_size(h, w)), interpolation=tvF.InterpolationMode.BILINEAR,
                       antialias=True)
        top, left = self.crop_offset(h, w)
        return x[..., top: top + self.size, left: left + self.size].float() / 255.0

    def masks(self, masks: torch.Tensor) -> torch.Tensor:
        """Masks (..., F, H, W) -> the fraction of each encoder-input pixel inside them, (..., F, S', S').

        square: returned unchanged (as float): pooling the full frame onto the token grid is already exact.
        short_side_crop: the same bilinear antialiased resize as the pixels (on the fractions), then the same crop.
        """
        x = masks.float()
        if self.mode == "square":
            return x
        h, w = x.shape[-2:]
        lead = x.shape[:-2]
        x = F.interpolate(x.reshape(-1, 1, h, w), size=self.resized_size(h, w), mode="bilinear", antialias=True,
                          align_corners=False)  # (M, 1, h', w')
        top, left = self.crop_offset(h, w)
        x = x[..., top: top + self.size, left: left + self.size]
        return x.reshape(*lead, self.size, self.size).clamp_(0.0, 1.0)


def require_full_clip_view(frame_sampling: str, resize: str, what: str) -> None:
    """Refuse a view that does not cover the whole clip where `what` assumes it does (one line, naming the params)."""
    if frame_sampling != "bin_centres" or resize != "square":
        raise ValueError(
            f"{what} needs the encoder to see the whole clip (vfm.frame_sampling bin_centres, vfm.resize square): "
            f"got vfm.frame_sampling {frame_sampling!r}, vfm.resize {resize!r}; Stage 2's TRD grid alignment maps "
            "DiT tokens of the whole clip onto the V-JEPA grid (docs/stage2.md)"
        )
