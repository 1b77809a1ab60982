"""Health checks of a train state: nothing that diverged is ever written as a checkpoint or resumed.

A non-finite loss is caught before the optimizer step, but a finite loss can still produce a non-finite gradient
or an update that blows the weights up (an lr of 1e30 gives |w| ~ 1e30 after one AdamW step, with every loss
still finite). So before every checkpoint the loop checks the gradient norm of the step and every weight, and a
resumed state is checked the same way before training continues from it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

# No trained weight of these models comes near this; a weight beyond it means the optimiser diverged.
MAX_ABS_WEIGHT = 1e6


class UnhealthyStateError(RuntimeError):
    """The train state diverged (non-finite gradient norm, non-finite or exploded weights): it is not saved."""


def check_grad_norm(grad_norm: float | None, where: str) -> None:
    """Refuse a step whose global gradient norm is not finite (the update it made is not trustworthy).

    None: the optimizer reported no norm for this step; the weight check before the checkpoint still runs."""
    if grad_norm is not None and not math.isfinite(grad_norm):
        raise UnhealthyStateError(f"{where}: gradient norm is {grad_norm}")


def weight_problems(tensors: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
                    limit: float = MAX_ABS_WEIGHT) -> list[str]:
    """One entry per floating-point tensor that holds non-finite values or values beyond `limit`."""
    items = tensors.items() if isinstance(tensors, Mapping) else tensors
    problems = []
    for name, t in items:
        if not torch.is_floating_point(t) or t.numel() == 0:
            continue
        t = t.detach()
        if not bool(torch.isfinite(t).all()):
            problems.append(f"{name} is non-finite")
        elif float(t.abs().max()) > limit:
            problems.append(f"{name} has |w| = {float(t.abs().max()):.3g} > {limit:g}")
    return problems


def check_weights(model: nn.Module | Mapping[str, torch.Tensor], where: str) -> None:
    """Raise UnhealthyStateError naming how many (and which first) weight tensors are non-finite or exploded."""
    tensors = model.state_dict() if isinstance(model, nn.Module) else model
    problems = weight_problems(tensors)
    if problems:
        total = sum(1 for t in tensors.values() if torch.is_floating_point(t))
        raise UnhealthyStateError(f"{where}: {len(problems)}/{total} weight tensors diverged ({problems[0]})")
