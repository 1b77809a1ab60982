"""MoAlign losses (the paper's MoAlign baseline): flow supervision of the motion subspace and TRD on that subspace.

- `flow_to_grid`: pixel flow of the clip's frames -> flow between consecutive VFM time steps on the token grid, in
  token units (the decoder's target). Time steps are taken to tile the clip uniformly; the flow from step t to
  t+1 is the sum of the frame-to-frame flows between their centre frames (a first-order composition, exact for
  steady motion), average-pooled over each token's pixels and divided by the token's size in pixels.
- `flow_l1_loss`: mean |predicted - target| flow (the decoder's L1 objective).
- `moalign_trd`: TRD on the motion subspace, vanilla routing (op none) with temporal decay tau = 10 (Eq. 10's
  omega), via `sara.losses.trd.masked_trd`.
- `moalign_losses`: everything for one batch. The head is trained by the flow loss only; its features are a
  detached target for TRD, so the DiT cannot pull the subspace towards itself (MoAlign's setup, open in the paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sara.losses.trd import TRDLoss, masked_trd


def flow_to_grid(flow: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """flow (B, F-1, H_px, W_px, 2) or (F-1, H_px, W_px, 2) pixels -> (B, T-1, H, W, 2) token units, grid (T, H, W)."""
    if flow.dim() == 4:
        flow = flow[None]
    if flow.dim() != 5 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (B, F-1, H, W, 2), got {tuple(flow.shape)}")
    B, Fm1, Hp, Wp, _ = flow.shape
    T, H, W = grid
    if T < 2:
        raise ValueError("flow_to_grid needs a grid with at least 2 time steps")
    nf = Fm1 + 1
    centres = [min(nf - 1, max(0, round((t + 0.5) * nf / T - 0.5))) for t in range(T)]  # centre frame of each step
    cum = F.pad(torch.cumsum(flow.float(), dim=1), (0, 0, 0, 0, 0, 0, 1, 0))  # (B, F, H_px, W_px, 2), cum[f] = sum_{<f}
    idx = torch.tensor(centres, device=flow.device)
    steps = cum[:, idx[1:]] - cum[:, idx[:-1]]  # (B, T-1, H_px, W_px, 2): summed flow from centre t to centre t+1
    pooled = F.adaptive_avg_pool2d(steps.permute(0, 1, 4, 2, 3).reshape(B * (T - 1), 2, Hp, Wp), (H, W))
    pooled = pooled.reshape(B, T - 1, 2, H, W).permute(0, 1, 3, 4, 2)  # (B, T-1, H, W, 2)
    scale = torch.tensor([W / Wp, H / Hp], device=flow.device, dtype=pooled.dtype)  # pixels -> tokens (x, y)
    return pooled * scale


def flow_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between predicted and target flow (same shape, e.g. (B, T-1, H, W, 2))."""
    if pred.shape != target.shape:
        raise ValueError(f"flow prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    return (pred.float() - target.float()).abs().mean()


def moalign_trd(
    vp_m: torch.Tensor,
    m_y: torch.Tensor,
    *,
    tau: float = 10.0,
    lam_tmp: float = 1.0,
    eps: float = 1e-6,
    impl: str = "auto",
) -> TRDLoss:
    """TRD between projected DiT tokens vp_m and motion-subspace targets m_y, both (B, T, N, D_m); op none,
    cross-frame pairs weighted by exp(-|t-u|/tau) (MoAlign's temporal decay, tau = 10). m_y is detached."""
    if not math.isfinite(tau):
        raise ValueError("MoAlign's TRD uses a finite temporal decay tau (paper: 10)")
    return masked_trd(vp_m, m_y.detach(), None, op="none", tau=tau, lam_tmp=lam_tmp, eps=eps, impl=impl)


def moalign_losses(
    head: torch.nn.Module,
    vp_m: torch.Tensor,
    vy: torch.Tensor,
    flow_grid: torch.Tensor,
    grid_hw: tuple[int, int],
    *,
    tau: float = 10.0,
    lam_tmp: float = 1.0,
    flow_weight: float = 1.0,
    eps: float = 1e-6,
) -> dict[str, torch.Tensor]:
    """All MoAlign terms: `head` a MotionSubspaceHead; vp_m (B, T, N, D_m) projected DiT tokens; vy (B, T, N, D_v)
    frozen VFM tokens; flow_grid (B, T-1, H, W, 2) from `flow_to_grid`. `aux` = trd + flow_weight * flow_l1."""
    m_y, pred = head(vy, grid_hw)  # (B, T, N, D_m), (B, T-1, H, W, 2)
    flow = flow_l1_loss(pred, flow_grid)
    trd = moalign_trd(vp_m, m_y.to(vp_m.dtype), tau=tau, lam_tmp=lam_tmp, eps=eps)
    return {
        "aux": trd.total + flow_weight * flow,
        "trd": trd.total,
        "trd_spatial": trd.spatial,
        "trd_temporal": trd.temporal,
        "flow_l1": flow,
    }
