"""Optical-flow sources for MoAlign's flow supervision (the paper's MoAlign baseline; docs/stage2.md).

`flow_source(name, **kw)` returns a callable `(frames, truth=None) -> flow`: frames (F, H, W, 3) uint8 RGB,
flow (F-1, H, W, 2) float32 in pixels, flow[f] = where the content at frame f moves by frame f+1 (x, y).
  farneback    OpenCV's dense Farneback flow on grey frames: no weights, CPU.
  groundtruth  the synthetic renderer's exact motion, `sara.data.synthetic.ground_truth_flow(truth, H, W)`;
               needs the clip's `Truth`.
  raft         torchvision's RAFT (large or small) loaded only from a local state-dict file in `raft_dir`
               (param `methods.moalign.raft_dir`): `raft_large.pth` or `raft_small.pth`. Nothing is downloaded.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from sara.data.synthetic.render import ground_truth_flow
from sara.data.synthetic.truth import Truth

FLOW_SOURCES = ("farneback", "groundtruth", "raft")
RAFT_FILES = {"large": "raft_large.pth", "small": "raft_small.pth"}
RAFT_MIN_SIDE = 128

FlowFn = Callable[..., np.ndarray]


def _check_frames(frames: np.ndarray) -> np.ndarray:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (F, H, W, 3), got {frames.dtype} {frames.shape}")
    if frames.shape[0] < 2:
        raise ValueError(f"flow needs at least 2 frames, got {frames.shape[0]}")
    return frames


def farneback_flow(
    frames: np.ndarray,
    pyr_scale: float = 0.5,
    levels: int = 3,
    winsize: int = 15,
    iterations: int = 3,
    poly_n: int = 5,
    poly_sigma: float = 1.2,
) -> np.ndarray:
    """Dense Farneback flow between consecutive frames: (F-1, H, W, 2) float32 pixels."""
    import cv2

    _check_frames(frames)
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    out = [
        cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, 0)
        for a, b in zip(grey[:-1], grey[1:])
    ]
    return np.stack(out).astype(np.float32)  # (F-1, H, W, 2)


def _groundtruth(frames: np.ndarray, truth: Truth | None = None) -> np.ndarray:
    _check_frames(frames)
    if truth is None:
        raise ValueError("flow source 'groundtruth' needs the clip's renderer truth (synthetic clips only)")
    flow = np.asarray(ground_truth_flow(truth, frames.shape[1], frames.shape[2]), dtype=np.float32)
    if flow.shape != (frames.shape[0] - 1, frames.shape[1], frames.shape[2], 2):
        raise ValueError(f"ground-truth flow has shape {flow.shape}, expected {(frames.shape[0] - 1, *frames.shape[1:3], 2)}")
    return flow


class RaftFlow:
    """torchvision RAFT from a local state dict; frames are padded (multiple of 8, >= 128) and the flow cropped back."""

    def __init__(self, raft_dir: str | None, variant: str | None = None, device: str = "cpu", num_flow_updates: int = 12,
                 batch: int = 8) -> None:
        import torch
        from torchvision.models.optical_flow import raft_large, raft_small

        from sara.weights import require_dir

        what = "torchvision RAFT weights as a state dict named raft_large.pth or raft_small.pth"
        root = require_dir("methods.moalign.raft_dir", raft_dir, what)
        if variant is None:
            variant = next((v for v, f in RAFT_FILES.items() if (root / f).is_file()), None)
            if variant is None:
                raise FileNotFoundError(
                    f"methods.moalign.raft_dir = {str(raft_dir)!r} holds neither raft_large.pth nor raft_small.pth: "
                    f"it must contain {what}"
                )
        if variant not in RAFT_FILES:
            raise ValueError(f"unknown RAFT variant={variant!r}: expected large or small")
        path = root / RAFT_FILES[variant]
        if not path.is_file():
            raise FileNotFoundError(f"methods.moalign.raft_dir: {path} is missing: it must contain {what}")
        model = (raft_large if variant == "large" else raft_small)(weights=None, progress=False)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model = model.eval().to(device)
        self.device, self.num_flow_updates, self.batch = device, num_flow_updates, batch

    def __call__(self, frames: np.ndarray, truth: Truth | None = None) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        _check_frames(frames)
        Fn, H, W, _ = frames.shape
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (F, 3, H, W) in [-1, 1]
        # RAFT needs sides divisible by 8 and at least 128 (its correlation pyramid): replicate-pad, crop back
        ph, pw = max(RAFT_MIN_SIDE, H + (-H) % 8) - H, max(RAFT_MIN_SIDE, W + (-W) % 8) - W
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        out = []
        with torch.no_grad():
            for s in range(0, Fn - 1, self.batch):
                a = x[s : min(s + self.batch, Fn - 1)]
                b = x[s + 1 : min(s + self.batch, Fn - 1) + 1]
                flows = self.model(a, b, num_flow_updates=self.num_flow_updates)  # list of (n, 2, H', W')
                out.append(flows[-1][:, :, :H, :W])
        return torch.cat(out).permute(0, 2, 3, 1).float().cpu().numpy()  # (F-1, H, W, 2)


def flow_source(name: str, **kw: Any) -> FlowFn:
    """The flow estimator `name` (farneback | groundtruth | raft) as a callable (frames, truth=None) -> flow.

    kw: farneback takes `farneback_flow`'s parameters; raft takes raft_dir (required), variant, device,
    num_flow_updates, batch; groundtruth takes none.
    """
    if name == "farneback":
        return lambda frames, truth=None: farneback_flow(frames, **kw)
    if name == "groundtruth":
        if kw:
            raise ValueError(f"flow source 'groundtruth' takes no options, got {sorted(kw)}")
        return _groundtruth
    if name == "raft":
        return RaftFlow(**kw)
    raise ValueError(f"unknown flow source {name!r}: expected one of {', '.join(FLOW_SOURCES)} (methods.moalign.flow)")
