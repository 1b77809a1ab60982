"""The REPA projector of TRD (after REPA): DiT hidden width -> VFM width (1664 for V-JEPA 2.1 ViT-G).

The paper calls it the "small TRD projector" / "standard REPA projector" without giving its shape; REPA's is a
3-layer MLP with SiLU (Linear -> SiLU -> Linear -> SiLU -> Linear), applied to every token independently.
"""

from __future__ import annotations

import torch
from torch import nn


class TRDProjector(nn.Module):
    """REPA-style MLP `in_dim -> hidden -> hidden -> out_dim` with SiLU, applied on the last axis of (..., in_dim)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 2048) -> None:
        super().__init__()
        for name, v in (("in_dim", in_dim), ("out_dim", out_dim), ("hidden", hidden)):
            if int(v) < 1:
                raise ValueError(f"TRDProjector {name} must be >= 1, got {v}")
        self.in_dim, self.out_dim, self.hidden = in_dim, out_dim, hidden
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h (..., in_dim) -> (..., out_dim)."""
        if h.shape[-1] != self.in_dim:
            raise ValueError(f"TRDProjector expects last dim {self.in_dim}, got {tuple(h.shape)}")
        return self.net(h)
