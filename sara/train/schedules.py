"""Learning-rate schedules: linear warmup, then cosine decay to a minimum lr (Table 10: peak 5e-5, min 1e-6).

Uses transformers' `get_cosine_with_min_lr_schedule_with_warmup`; `lr_at` gives the same curve as a pure function
(for plots and tests).
"""

from __future__ import annotations

import math

import torch


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup from 0 to the optimizer's lr over `warmup_steps`, then a half cosine down to `min_lr` at
    `total_steps`."""
    from transformers.optimization import get_cosine_with_min_lr_schedule_with_warmup

    return get_cosine_with_min_lr_schedule_with_warmup(
        optimizer, num_warmup_steps=warmup_steps, num_training_steps=max(total_steps, warmup_steps + 1),
        min_lr=min_lr)


def lr_at(step: int, peak: float, warmup_steps: int, total_steps: int, min_lr: float) -> float:
    """Closed form of `warmup_cosine` at optimizer step `step` (0-based: the lr used by the step-th update)."""
    if step < warmup_steps:
        return peak * step / max(1, warmup_steps)
    total = max(total_steps, warmup_steps + 1)
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


# ------------------------------------------------------------------ lab pretraining (VAE, video encoder, base DiT)
# Each lab trainer runs exactly `steps` optimiser steps: budgets are steps, never minutes, so the same params give the
# same model on any GPU (up to kernel nondeterminism). Wall time is measured and reported, never a stopping rule.


def budget_lr(step: int, steps: int, lr: float, warmup: int) -> float:
    """Linear warmup over the first `warmup` steps, then cosine decay to 10% of `lr` at step `steps`."""
    if step < warmup:
        return lr * (step + 1) / max(1, warmup)
    progress = min(max(step / max(1, steps), 0.0), 1.0)
    return lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))
