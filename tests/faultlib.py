"""Fault injection for Stage 2 tests: a `Stage2Callback` that poisons a loss or signals the process after step K.

`FaultInjection.parse("kill@3")`: SIGKILL after step 3 (a hard crash, nothing is cleaned up); `term@3`: SIGTERM
(what a cancelled sweep or `sara repro` sends); `nan@4`: step 4's loss becomes NaN. In process:
`train_stage2(..., callbacks=[FaultInjection.parse("nan@4")])`; for a `sara train-dit` process:
`python tests/fault_cli.py <spec> train-dit ...` (tests/test_stage2_engine.py: `sara(..., fault=<spec>)`).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import torch

from sara.train.callbacks import Stage2Callback

KINDS = ("kill", "term", "nan")


class FaultInjection(Stage2Callback):
    def __init__(self, kind: str, step: int, at_step_end: Callable[[Path], None] | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"fault {kind!r}: expected one of {KINDS}")
        self.kind, self.step, self.at_step_end = kind, step, at_step_end

    @classmethod
    def parse(cls, spec: str) -> "FaultInjection":
        kind, _, k = spec.partition("@")
        if not k.isdigit():
            raise ValueError(f"fault {spec!r}: expected kill@<step>, term@<step> or nan@<step>")
        return cls(kind, int(k))

    def on_loss(self, step: int, loss: torch.Tensor) -> torch.Tensor:
        return loss * float("nan") if (self.kind, self.step) == ("nan", step) else loss

    def on_step_end(self, step: int, state_dir: Path) -> None:
        if step != self.step:
            return
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.kind == "term":
            os.kill(os.getpid(), signal.SIGTERM)
