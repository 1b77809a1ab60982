"""DeepSpeed: the only module of the project that imports it.

One engine for 2 CPU cores and for a GPU cluster. Process setup follows the launcher that started us:
- `deepspeed --num_gpus N ...` / `torchrun --nproc_per_node N ...` set RANK, LOCAL_RANK, WORLD_SIZE, MASTER_*;
- a plain `python` / `sara train-dit` process gets a single-rank world here (rank 0 of 1) whose rendezvous store
  lives in memory and whose gloo transport binds to loopback, so training on one machine opens no port on the
  network. Multi-node training is what a launcher is for: it sets MASTER_ADDR and binds where it is told.
The backend is nccl on CUDA and gloo on CPU (where DeepSpeed's accelerator is forced to `cpu`). Precision `auto`
is bf16 on CUDA and fp32 on CPU. The ZeRO stage picks `configs/deepspeed/zero{0,1,2,3}.json`; the values that
come from params (micro batch, clipping, precision) are filled in by `deepspeed_config`.

Optimisation (Table 11): torch AdamW (fused on CUDA), linear warmup then constant lr (a LambdaLR handed to
DeepSpeed, so its state is inside every checkpoint), weight decay, gradient clipping by DeepSpeed.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from sara.config import TrainParams
from sara.env import resolve_device

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str  # "nccl" | "gloo"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise torch.distributed through DeepSpeed (once per process) and pick this rank's device.

    `device`: params `project.device` (auto = cuda when available). On CPU, DeepSpeed's shared-memory op is not
    built (`_skip_shared_memory_op`); any op DeepSpeed does build is cached under $TORCH_EXTENSIONS_DIR (defaults
    to ~/.cache/torch_extensions).
    """
    use_cuda = resolve_device(device).type == "cuda"
    if not use_cuda:
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        _skip_shared_memory_op()
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "torch_extensions"))
    backend = "nccl" if use_cuda else "gloo"
    if "RANK" not in os.environ:  # no launcher: a single-rank world
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(_free_port()))
        if not torch.distributed.is_initialized():
            _init_single_rank(backend)
    os.environ.setdefault("LOCAL_RANK", "0")
    import deepspeed

    # a launcher's world (env:// rendezvous at MASTER_ADDR:MASTER_PORT), or adopts the single-rank one above
    deepspeed.init_distributed(dist_backend=backend, verbose=False)
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    local_rank = int(os.environ["LOCAL_RANK"])
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    return DistInfo(rank, world, local_rank, dev, backend)


def _skip_shared_memory_op() -> None:
    """Mark DeepSpeed's CPU shared-memory communication op unavailable, so its comm backend does not compile it.

    The op serves only `inference_all_reduce`, which training never calls; compiling it took ~44 s (~70 CPU s) at
    the first CPU run of every new environment (a fresh clone's `dvc repro`, the suite). DeepSpeed probes its ops
    once into the dict `deepspeed.ops.__compatible_ops__` and reads it before building, and edits to it persist.
    """
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False


def _init_single_rank(backend: str) -> None:
    """A world of one rank without a listening TCP store.

    torch's default env:// rendezvous starts a TCPStore server that listens on every interface (`*:<port>`), even
    with MASTER_ADDR=127.0.0.1; one rank needs no rendezvous, so its store is an in-process HashStore. gloo's own
    transport is pinned to the loopback interface unless the user chose one (GLOO_SOCKET_IFNAME).
    """
    if backend == "gloo":
        os.environ.setdefault("GLOO_SOCKET_IFNAME", _loopback_interface())
    torch.distributed.init_process_group(backend, store=torch.distributed.HashStore(), rank=0, world_size=1)


def _loopback_interface() -> str:
    """Name of the loopback network interface (`lo` on Linux, `lo0` on macOS)."""
    names = [name for _, name in socket.if_nameindex()] if hasattr(socket, "if_nameindex") else []
    return next((n for n in names if n.startswith("lo")), "lo")


def resolve_precision(train: TrainParams, dist: DistInfo) -> str:
    if train.precision != "auto":
        return train.precision
    return "bf16" if dist.device.type == "cuda" else "fp32"


def deepspeed_config(train: TrainParams, precision: str) -> dict[str, Any]:
    """The DeepSpeed config of `train.zero_stage`, with the params-driven values filled in."""
    path = CONFIG_DIR / f"zero{train.zero_stage}.json"
    if not path.is_file():
        raise FileNotFoundError(f"train.zero_stage = {train.zero_stage}: DeepSpeed config {path} is missing")
    cfg = json.loads(path.read_text())
    cfg["train_micro_batch_size_per_gpu"] = train.batch_size
    cfg["gradient_accumulation_steps"] = 1  # Table 11
    cfg["gradient_clipping"] = train.grad_clip
    cfg["bf16"] = {"enabled": precision == "bf16"}
    cfg["fp16"] = {"enabled": False}
    if int(cfg.get("zero_optimization", {}).get("stage", -1)) != train.zero_stage:
        raise ValueError(f"{path}: zero_optimization.stage does not say {train.zero_stage}")
    if train.offload != "none":  # ZeRO-Offload (docs/stage2.md): the optimizer step runs on the CPU copy
        cfg["zero_optimization"]["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if train.offload == "all":
            cfg["zero_optimization"]["offload_param"] = {"device": "cpu", "pin_memory": True}
        # our torch AdamW (fused, also on CPU) steps the offloaded fp32 states: DeepSpeedCPUAdam would need its C++
        # op compiled on the machine, which an offline GPU image may not be able to do
        cfg["zero_force_ds_cpu_optimizer"] = False
    return cfg


def warmup_constant(warmup_steps: int):
    """lr multiplier: linear warmup over `warmup_steps` optimiser steps, then constant (Table 11)."""

    def factor(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return factor


class TrainEngine:
    """A DeepSpeed engine around one module holding every trainable parameter of a run."""

    def __init__(self, model: nn.Module, train: TrainParams, dist: DistInfo) -> None:
        import deepspeed

        self.dist = dist
        self.precision = resolve_precision(train, dist)
        self.config = deepspeed_config(train, self.precision)
        params = [p for p in model.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]  # no weight decay on norms and biases
        no_decay = [p for p in params if p.ndim < 2]
        optim = torch.optim.AdamW(
            [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=train.lr,
            betas=(0.9, 0.999),  # paper: open; AdamW defaults
            eps=1e-8,
            fused=dist.device.type == "cuda",
        )
        sched = torch.optim.lr_scheduler.LambdaLR(optim, warmup_constant(train.warmup_steps))
        model = model.to(dist.device)
        self.engine, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model, optimizer=optim, lr_scheduler=sched, config=self.config, dist_init_required=False
        )

    @property
    def module(self) -> nn.Module:
        return self.engine.module

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.engine(*args, **kwargs)

    def backward(self, loss: torch.Tensor) -> None:
        self.engine.backward(loss)

    def step(self) -> None:
        """Clip, optimiser step, lr-scheduler step (all by DeepSpeed)."""
        self.engine.step()

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def grad_norm(self) -> float | None:
        """Global gradient norm of the last step, before clipping (None when DeepSpeed did not compute one)."""
        n = self.engine.get_global_grad_norm()
        return float(n) if n is not None else None

    def all_reduce_max(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.dist.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return float(t.item())

    def barrier(self) -> None:
        torch.distributed.barrier()

    # -- checkpoints --------------------------------------------------------------------------------------------

    def save(self, state_dir: str | Path, tag: str, client_state: dict[str, Any]) -> None:
        """Collective: model, optimizer, scheduler and `client_state`; `latest` is written last. A write that fails
        (no space left, read-only) is one WriteFailedError line naming the file, not torch's `unexpected pos`."""
        from sara.io import python_file_saves, writing

        with writing(Path(state_dir) / tag), python_file_saves():
            self.engine.save_checkpoint(str(state_dir), tag=tag, client_state=client_state)

    def load(self, state_dir: str | Path, tag: str | None = None) -> dict[str, Any]:
        """Collective: restore everything `save` wrote; returns its client_state.

        Every file is read with `torch.load(weights_only=True)` (DeepSpeed itself asks for full unpickling, which
        runs any code a crafted checkpoint holds); the few DeepSpeed types its checkpoints contain are allowed."""
        with weights_only_loads():
            path, client_state = self.engine.load_checkpoint(str(state_dir), tag=tag)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint in {state_dir} (tag {tag or 'latest'})")
        return client_state

    @contextmanager
    def full_parameters(self) -> Iterator[nn.Module]:
        """The module with full (un-partitioned) parameters: a no-op below ZeRO-3; collective at ZeRO-3."""
        if self.config["zero_optimization"]["stage"] == 3:
            import deepspeed

            with deepspeed.zero.GatheredParameters(list(self.module.parameters()), modifier_rank=None):
                yield self.module
        else:
            yield self.module


@contextmanager
def weights_only_loads() -> Iterator[None]:
    """Make every torch.load inside the block a weights_only load, whatever its caller asked for. A
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD in the environment (a common workaround for old checkpoints) is unset inside
    the block: with both set, torch refuses every load."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    # plain data classes DeepSpeed pickles into its optimizer states (ZeRO stage, partition addresses, loss scaler)
    allowed = [ZeroStageEnum, fragment_address, LossScaler, DynamicLossScaler]
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    before = {key: os.environ.get(key) for key in keys}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        with torch.serialization.safe_globals(allowed):
            yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def peak_memory_bytes(device: torch.device) -> int:
    """Peak accelerator memory since the last reset (CUDA), else the process's peak resident set size."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
