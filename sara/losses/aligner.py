"""Stage 1 losses (the paper's Table 10): per-patch BCE against masks on the V-JEPA grid, and visual->text InfoNCE.

Terms are returned unreduced across the two losses; the training loop weights them with `aligner.lam_bce` and
`aligner.lam_nce` (Eq. L_stage1 = lam_BCE * L_BCE + lam_InfoNCE * L_InfoNCE) and logs each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masks_to_grid(masks: torch.Tensor, frame_idx: torch.Tensor, grid: tuple[int, int, int],
                  threshold: float | None = None) -> torch.Tensor:
    """BCE target M_y: binary pixel masks (..., F, H, W) -> per-token targets (..., T_s, H_s*W_s) in [0, 1].

    The same frames the encoder sees (`frame_idx`, `vfm.frames` of them) are taken; each token's target is the
    fraction of its tubelet-by-patch pixel volume that is inside the mask (adaptive average pooling over
    (tubelet frames, patch rows, patch columns)). This is the anti-aliased form of the paper's bilinear
    downsampling, per tubelet rather than broadcast from one frame, because our masks are per frame. With
    `threshold` the target is binarised (>= threshold); None keeps soft targets (the default).
    """
    t, h, w = grid
    lead = masks.shape[:-3]
    x = masks[..., frame_idx, :, :].float()  # (..., T, H, W)
    x = x.reshape(-1, 1, *x.shape[-3:])  # (M, 1, T, H, W)
    x = F.adaptive_avg_pool3d(x, (t, h, w))  # (M, 1, T_s, H_s, W_s)
    x = x.reshape(*lead, t, h * w)  # (..., T_s, N_s)
    if threshold is not None:
        x = (x >= threshold).float()
    return x


def saliency_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_BCE = BCE(M_p, M_y) per patch (the paper's Stage 1 BCE term), mean over patches and forwards.

    Takes Phi_sal's logits (M_p = sigmoid(logits)) for numerical stability; logits and target broadcast to the
    same shape, e.g. (U, N_v)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target.float().expand_as(logits), reduction="mean")


def info_nce(h_p: torch.Tensor, h_y: torch.Tensor, tau: float,
             same_caption: torch.Tensor | None = None) -> torch.Tensor:
    """L_InfoNCE (the paper's Stage 1 contrastive term), visual -> text only:

        -(1/B) sum_i log( exp(H_p,i . H_y,i / tau) / sum_j exp(H_p,i . H_y,j / tau) )

    h_p (B, D): pooled, L2-normalised E_lm states of the projected visual sequences; h_y (B, D): the same for the
    captions that conditioned them (positive on the diagonal; every other forward in the batch is a negative,
    including the same clip's other entities and background). `same_caption` (B, B) bool marks off-diagonal pairs
    whose caption text is identical to the anchor's (e.g. c_fg = c_1 when K = 1): they are not negatives and are
    removed from the denominator.
    """
    logits = h_p.float() @ h_y.float().t() / tau  # (B, B)
    if same_caption is not None:
        eye = torch.eye(logits.shape[0], dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same_caption.to(logits.device) & ~eye, float("-inf"))
    target = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, target)


def same_caption_matrix(captions: list[str]) -> torch.Tensor:
    """(B, B) bool: True where two forwards carry the identical caption text."""
    codes = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    ids = torch.tensor([codes[c] for c in captions])
    return ids[:, None] == ids[None, :]
