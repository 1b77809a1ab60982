"""One process, no DeepSpeed: the Stage 2 engine of a one-GPU run (`train.engine: torch`).

Why it exists: on one rank ZeRO partitions nothing, yet DeepSpeed's bf16 ZeRO-2 optimizer still copies every
gradient into its buckets, checks every one for overflow and takes a norm per parameter, each step. The lab's Stage 2
step is bound by launching those small kernels (benchmarks/stage2_step.md counts them per phase), so a one-GPU run
gains by leaving the engine out, and loses nothing that matters on one rank.

Same numerics as `sara.train.engine.TrainEngine` (what `tests/test_single_engine.py` holds it to):
- the module is cast to the training precision (bf16 on CUDA, fp32 on CPU) before anything else, as DeepSpeed's
  engine does; in bf16 the fp32 master weights start as copies of those bf16 weights;
- each step: the gradients are copied into the fp32 masters, clipped by their global norm (`train.grad_clip`),
  stepped by torch AdamW (fused on CUDA, foreach elsewhere; no weight decay on norms and biases) under the same warmup schedule, and
  the masters are copied back into the module; the gradients are then dropped.
Checkpoints: `<state_dir>/<tag>/{model.pt, optimizer.pt, client.pt}`, then `<state_dir>/latest` naming the tag,
written last (DeepSpeed's convention, so `sara.train.checkpoint` reads both); every file is a weights-only load.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from sara.config import TrainParams
from sara.env import resolve_device
from sara.io import load_tensors, save_tensors, writing
from sara.train.engine import DistInfo, resolve_precision, warmup_constant


def single_process(device: str = "auto") -> DistInfo:
    """A world of one rank without a process group: `train.engine: torch` refuses a launcher's world."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world != 1:
        raise ValueError(f"train.engine 'torch' trains in one process, but WORLD_SIZE is {world}: "
                         "use train.engine 'deepspeed' for several ranks")
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)
    return DistInfo(0, 1, 0, dev, "nccl" if dev.type == "cuda" else "gloo")


class SingleProcessEngine:
    """The `TrainEngine` interface (call, backward, step, lr, grad_norm, save, load, ...) in plain torch."""

    def __init__(self, model: nn.Module, train: TrainParams, dist: DistInfo) -> None:
        if dist.world_size != 1:
            raise ValueError(f"train.engine 'torch' trains in one process, not {dist.world_size}")
        self.dist = dist
        self.precision = resolve_precision(train, dist)
        self.grad_clip = train.grad_clip
        self.module = model.to(device=dist.device, dtype=self.dtype)
        self._params = [p for p in self.module.parameters() if p.requires_grad]
        self._mixed = self.dtype != torch.float32
        # fp32 master weights the optimizer steps (the parameters themselves in fp32)
        self._masters = [p.detach().float().clone() for p in self._params] if self._mixed else self._params
        decay = [m for m in self._masters if m.ndim >= 2]  # no weight decay on norms and biases
        no_decay = [m for m in self._masters if m.ndim < 2]
        self.optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=train.lr, betas=(0.9, 0.999), eps=1e-8,
            # fused kernels on CUDA; multi-tensor (foreach) ops elsewhere: never a loop of ops per parameter
            **({"fused": True} if dist.device.type == "cuda" else {"foreach": True}),
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, warmup_constant(train.warmup_steps))
        self._norm: torch.Tensor | None = None

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def step(self) -> None:
        """Masters' gradients, clip by global norm, AdamW step, lr-scheduler step, masters back into the module."""
        live = [i for i, p in enumerate(self._params) if p.grad is not None]  # a parameter the loss did not reach
        masters = [self._masters[i] for i in live]
        if self._mixed:
            for i in live:
                if self._masters[i].grad is None:
                    self._masters[i].grad = torch.empty_like(self._masters[i])
            torch._foreach_copy_([m.grad for m in masters], [self._params[i].grad for i in live])
        self._norm = torch.nn.utils.clip_grad_norm_(masters, self.grad_clip, foreach=True)
        self.optimizer.step()
        self.scheduler.step()
        for p in self._params:
            p.grad = None
        if self._mixed:
            with torch.no_grad():
                torch._foreach_copy_([self._params[i] for i in live], masters)

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> float | None:
        """Global gradient norm of the last step, before clipping."""
        return float(self._norm) if self._norm is not None else None

    def all_reduce_max(self, value: float) -> float:
        return value  # one rank

    def barrier(self) -> None:
        pass  # one rank

    # -- checkpoints --------------------------------------------------------------------------------------------

    def save(self, state_dir: str | Path, tag: str, client_state: dict[str, Any]) -> None:
        """Model, masters + optimizer + scheduler, `client_state`; `latest` is written last, so a crash mid-save
        leaves the previous checkpoint the one resumed."""
        folder = Path(state_dir) / tag
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(self.module.state_dict(), folder / "model.pt")
        save_tensors({"masters": [m.detach() for m in self._masters] if self._mixed else [],
                      "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                     folder / "optimizer.pt")
        save_tensors(client_state, folder / "client.pt")
        latest = Path(state_dir) / "latest"
        tmp = latest.with_name(".latest.tmp")
        with writing(latest):
            tmp.write_text(tag)
            os.replace(tmp, latest)

    def load(self, state_dir: str | Path, tag: str | None = None) -> dict[str, Any]:
        """Restore everything `save` wrote (tag None: the one `latest` names); returns its client_state."""
        from sara.train.checkpoint import latest_tag

        tag = tag or latest_tag(state_dir)
        if tag is None:
            raise FileNotFoundError(f"no checkpoint in {state_dir} (tag latest)")
        folder = Path(state_dir) / tag
        fix = f"delete {state_dir} to train the run from step 0"
        self.module.load_state_dict(load_tensors(folder / "model.pt", fix))
        state = load_tensors(folder / "optimizer.pt", fix)
        if self._mixed:
            with torch.no_grad():
                torch._foreach_copy_(self._masters, [m.to(self.dist.device) for m in state["masters"]])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        return load_tensors(folder / "client.pt", fix)

    @contextmanager
    def full_parameters(self) -> Iterator[nn.Module]:
        yield self.module
