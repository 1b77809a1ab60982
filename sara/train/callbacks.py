"""Hooks into the Stage 2 loop: code that watches or perturbs a run without living in the loop.

A `Stage2Callback` sees each step's loss before the optimizer uses it (`on_loss`, which may replace it) and the end
of each step after its checkpoint (`on_step_end`). Tests install a fault injector this way (a NaN loss, SIGTERM or
SIGKILL after step K: tests/faultlib.py), in process through `train_stage2(callbacks=...)` or, for a `sara
train-dit` process they start, through `install` before the CLI runs (tests/fault_cli.py). Production runs install
none.
"""

from __future__ import annotations

from pathlib import Path

import torch


class Stage2Callback:
    """No-op hooks; override the ones needed. `step` is the 1-based number of the step being trained."""

    def on_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        return loss

    def on_step_end(self, step: int, state_dir: Path) -> None:
        pass


INSTALLED: list[Stage2Callback] = []  # process-wide callbacks, added to every train_stage2 call of this process


def install(callback: Stage2Callback) -> None:
    INSTALLED.append(callback)
