"""Replay one whole training step (forward, backward, optimiser update) as a CUDA graph.

A small model at a fixed batch shape is launch-bound on a GPU: the Wan VAE's causal, chunk-by-chunk forward issues
thousands of small kernels per step, and Python spends longer issuing them than the GPU spends running them. A CUDA
graph records the kernels of one step once and replays them with a single launch (PyTorch docs, "CUDA Graphs",
whole-network capture). Requirements, all met by `sara.train.pretrain_vae`: fixed input shape, no host
synchronisation inside the step, autocast without its weight cache, and an optimiser built with `capturable=True`
and a tensor learning rate (so the schedule can change it between replays, `set_lr`).

Inputs are copied into one static buffer before each replay; the step's returned tensor (losses) is the graph's
static output, overwritten by every replay.
"""

from __future__ import annotations

from typing import Callable

import torch


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's lr, in place when it is a tensor (a captured graph reads that tensor on each replay)."""
    for group in optimizer.param_groups:
        if torch.is_tensor(group["lr"]):
            group["lr"].fill_(lr)
        else:
            group["lr"] = lr


class GraphedStep:
    """`step(x) -> stats` (zero_grad, forward, backward, clip, optimiser step; returns a tensor) run as a CUDA graph.

    The first `warmup` calls run eagerly on a side stream (real training steps: they also let cuDNN pick its
    algorithms and the optimiser create its state); the next call captures the step and every call from then on
    replays it. `failed` is set, and the step runs eagerly from then on, if the capture raises.
    """

    def __init__(self, step: Callable[[torch.Tensor], torch.Tensor], warmup: int = 3,
                 log: Callable[[str], None] = print) -> None:
        self.step, self.warmup, self.log = step, warmup, log
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static_x: torch.Tensor | None = None
        self.static_out: torch.Tensor | None = None
        self.failed = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.failed:
            return self.step(x)
        if self.graph is not None:
            self.static_x.copy_(x)
            self.graph.replay()
            return self.static_out
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step(x)
            torch.cuda.current_stream().wait_stream(side)
            return out
        return self._capture(x)

    def _capture(self, x: torch.Tensor) -> torch.Tensor:
        self.static_x = x.clone()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self.static_out = self.step(self.static_x)
        except Exception as err:  # an op that cannot be captured: keep training, eagerly
            torch.cuda.synchronize()
            self.failed = True
            self.log(f"CUDA graph capture failed ({type(err).__name__}: {str(err).splitlines()[0]}); "
                     "continuing without a graph")
            return self.step(x)
        self.graph = graph
        self.graph.replay()  # capture only records: this replay is the step itself
        return self.static_out
