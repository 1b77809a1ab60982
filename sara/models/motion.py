"""MoAlign's flow-supervised motion subspace (the paper's MoAlign baseline; MoAlign, Bhowmik et al. 2025).

`MotionSubspaceHead` maps frozen VFM tokens V_y (B, T, N, D_v) to a D_m = 64 motion subspace with P_zeta
(LayerNorm + Linear) and decodes optical flow on the token grid from each pair of consecutive time steps with a
small conv net. The flow decoder exists only to shape the subspace: it is trained by L1 against optical flow
(`sara.losses.moalign.flow_l1_loss`), and the DiT is then aligned to the subspace with TRD (tau = 10).
Choices where MoAlign/the paper are open: P_zeta is linear (a subspace, as the name says); the decoder sees
[m_t, m_{t+1}] and predicts the flow from step t to t+1 in token units.
"""

from __future__ import annotations

import torch
from torch import nn


class MotionSubspaceHead(nn.Module):
    """P_zeta: VFM dim -> D_m, plus a flow decoder (2*D_m -> hidden -> 2 channels, 3x3 convs over the token grid)."""

    def __init__(self, vfm_dim: int, d_m: int = 64, hidden: int = 128) -> None:
        super().__init__()
        if vfm_dim < 1 or d_m < 1 or hidden < 1:
            raise ValueError(f"MotionSubspaceHead sizes must be >= 1, got vfm_dim={vfm_dim}, d_m={d_m}, hidden={hidden}")
        self.vfm_dim, self.d_m = vfm_dim, d_m
        self.proj = nn.Sequential(nn.LayerNorm(vfm_dim), nn.Linear(vfm_dim, d_m))
        self.decoder = nn.Sequential(
            nn.Conv2d(2 * d_m, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.SiLU(),
            nn.Conv2d(hidden, 2, 3, padding=1),
        )

    def project(self, vy: torch.Tensor) -> torch.Tensor:
        """V_y (B, T, N, D_v) -> motion features (B, T, N, D_m)."""
        if vy.shape[-1] != self.vfm_dim:
            raise ValueError(f"MotionSubspaceHead expects VFM dim {self.vfm_dim}, got {tuple(vy.shape)}")
        return self.proj(vy)

    def decode_flow(self, m: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
        """Motion features (B, T, H*W, D_m) -> flow between consecutive steps (B, T-1, H, W, 2), token units."""
        B, T, N, Dm = m.shape
        H, W = grid_hw
        if H * W != N:
            raise ValueError(f"grid {grid_hw} has {H * W} tokens, motion features have {N}")
        if T < 2:
            raise ValueError("decode_flow needs at least 2 time steps")
        g = m.reshape(B, T, H, W, Dm).permute(0, 1, 4, 2, 3)  # (B, T, D_m, H, W)
        pairs = torch.cat([g[:, :-1], g[:, 1:]], dim=2)  # (B, T-1, 2*D_m, H, W)
        flow = self.decoder(pairs.reshape(B * (T - 1), 2 * Dm, H, W))  # (B*(T-1), 2, H, W)
        return flow.reshape(B, T - 1, 2, H, W).permute(0, 1, 3, 4, 2)  # (B, T-1, H, W, 2)

    def forward(self, vy: torch.Tensor, grid_hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(motion features (B, T, N, D_m), predicted flow (B, T-1, H, W, 2))."""
        m = self.project(vy)
        return m, self.decode_flow(m, grid_hw)
