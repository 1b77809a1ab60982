"""`train.engine: torch` (sara/train/single_engine.py): one process without DeepSpeed, the same numerics.

Why it exists: DeepSpeed's ZeRO-2 optimizer on one rank issues per-parameter copies, overflow checks and norms
every step, and the lab's Stage 2 step is bound by launching such small kernels. These tests hold the single-process
engine to DeepSpeed's trajectory (fp32 and bf16 masters), to exact resume, and count the optimiser step's ops.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from sara.config import TrainParams
from sara.train import checkpoint as ckpt
from sara.train.single_engine import SingleProcessEngine, single_process
from stage2_testlib import launcher_env, sara, sara_here, weights, write_params  # noqa: F401  (fixture)

TRAIN = dict(steps=8, lr=1e-2, warmup_steps=3, weight_decay=0.1, grad_clip=0.05, batch_size=4)


class Toy(nn.Module):
    """Matrices, a norm and biases (decayed and not), and one parameter the loss never reaches."""

    def __init__(self, width: int = 8, depth: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width), nn.GELU())
                                      for _ in range(depth)])
        self.unused = nn.Parameter(torch.ones(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.to(self.layers[0][0].weight.dtype)).float().pow(2).mean()


def batches(n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(4, 8, generator=g) for _ in range(n)]


def train(engine, data: list[torch.Tensor]) -> list[tuple[float, float | None]]:
    trace = []
    for x in data:
        engine.backward(engine(x))
        engine.step()
        trace.append((engine.lr(), engine.grad_norm()))
    return trace


def deepspeed_engine(model: nn.Module, tp: TrainParams):
    from sara.train.engine import TrainEngine, init_distributed

    return TrainEngine(model, tp, init_distributed("cpu"))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_single_process_engine_follows_deepspeeds_trajectory(launcher_env, precision: str):
    tp = TrainParams(**TRAIN, precision=precision)
    data = batches(8)
    ds = deepspeed_engine(Toy(), tp)
    ours = SingleProcessEngine(Toy(), tp, single_process("cpu"))
    ds_trace, our_trace = train(ds, data), train(ours, data)
    for (lr_a, norm_a), (lr_b, norm_b) in zip(ds_trace, our_trace):
        assert lr_a == pytest.approx(lr_b)
        assert norm_a == pytest.approx(norm_b, rel=1e-2 if precision == "bf16" else 1e-5)
    assert max(n for _, n in our_trace) > tp.grad_clip  # clipping was exercised
    a, b = ds.module.state_dict(), ours.module.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype == (torch.bfloat16 if precision == "bf16" else torch.float32), k
        tol = dict(rtol=1e-2, atol=1e-2) if precision == "bf16" else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b[k].float(), a[k].float(), **tol, msg=k)
    assert torch.equal(b["unused"], torch.ones(3, dtype=b["unused"].dtype))  # no gradient: not decayed, not moved


def test_bf16_weights_are_the_rounded_fp32_masters():
    tp = TrainParams(**TRAIN, precision="bf16")
    engine = SingleProcessEngine(Toy(), tp, single_process("cpu"))
    train(engine, batches(3))
    params = [p for p in engine.module.parameters() if p.requires_grad]
    for p, m in zip(params, engine._masters):
        assert p.dtype == torch.bfloat16 and m.dtype == torch.float32
        assert torch.equal(p, m.to(torch.bfloat16))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_save_load_resumes_bitwise(tmp_path: Path, precision: str):
    tp = TrainParams(**TRAIN, precision=precision)
    data = batches(6)
    straight = SingleProcessEngine(Toy(), tp, single_process("cpu"))
    train(straight, data)
    first = SingleProcessEngine(Toy(), tp, single_process("cpu"))
    train(first, data[:3])
    first.save(tmp_path, ckpt.tag_for(3), {"step": 3, "history": [[1, {"loss": 0.5}]]})
    assert ckpt.latest_tag(tmp_path) == "step_0000003"
    second = SingleProcessEngine(Toy(), tp, single_process("cpu"))  # a new process: fresh model and optimizer
    client = second.load(tmp_path)
    assert client == {"step": 3, "history": [[1, {"loss": 0.5}]]}
    train(second, data[3:])
    a, b = straight.module.state_dict(), second.module.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert second.lr() == straight.lr()


def test_a_damaged_checkpoint_is_one_line_naming_the_file(tmp_path: Path):
    from sara.errors import BadFileError

    tp = TrainParams(**TRAIN)
    engine = SingleProcessEngine(Toy(), tp, single_process("cpu"))
    train(engine, batches(1))
    engine.save(tmp_path, "step_0000001", {"step": 1})
    damaged = tmp_path / "step_0000001" / "optimizer.pt"
    damaged.write_bytes(damaged.read_bytes()[:200])  # truncated
    with pytest.raises(BadFileError, match="optimizer.pt"):
        SingleProcessEngine(Toy(), tp, single_process("cpu")).load(tmp_path)


class CountOps(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


def step_ops(engine, x: torch.Tensor) -> int:
    """Aten ops of one optimiser step after the first (which creates the optimizer's state)."""
    train(engine, [x])
    engine.backward(engine(x))
    with CountOps() as count:
        engine.step()
    # reads of a CPU scalar (foreach AdamW's step count on the CPU) launch nothing; fused CUDA AdamW issues none
    return sum(n for op, n in count.ops.items() if op != "aten._local_scalar_dense")


def test_the_optimiser_step_costs_a_few_ops_whatever_the_number_of_parameters(launcher_env):
    """The finding: DeepSpeed's bf16 ZeRO-2 step issues ops per parameter (copies, overflow checks, norms), so a
    20 M-parameter DiT's step is thousands of small kernels; the single-process step is a few multi-tensor ops."""
    tp = TrainParams(**TRAIN, precision="bf16")
    x = batches(1)[0]
    small, large = Toy(depth=2), Toy(depth=12)
    n_small, n_large = (sum(1 for _ in m.parameters()) for m in (small, large))
    ours_small = step_ops(SingleProcessEngine(small, tp, single_process("cpu")), x)
    ours_large = step_ops(SingleProcessEngine(large, tp, single_process("cpu")), x)
    theirs_large = step_ops(deepspeed_engine(Toy(depth=12), tp), x)
    assert theirs_large > 4 * n_large  # DeepSpeed: several ops per parameter
    assert ours_large < n_large  # ours: fewer ops than parameters
    assert ours_large - ours_small < n_large - n_small  # and does not grow with the model
    assert theirs_large > 3 * ours_large


def test_a_launchers_world_is_refused_with_the_param_to_change(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="train.engine 'deepspeed'"):
        single_process("cpu")


def test_offload_needs_deepspeed():
    with pytest.raises(ValueError, match="offload 'optimizer' needs engine 'deepspeed'"):
        TrainParams(engine="torch", offload="optimizer", zero_stage=2)


@pytest.mark.slow(wall_s=43)  # two `sara train-dit` processes (one killed), two runs in this process
def test_stage2_under_the_single_engine_matches_deepspeed_and_resumes_after_kill(workspace: Path):
    a, b, c = workspace / "ds", workspace / "single", workspace / "single_killed"
    for d in (a, b, c):
        d.mkdir()
    r = sara_here(a, "train-dit", "--params", str(write_params(a, "p")), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    r = sara(b, "train-dit", "--params", str(write_params(b, "p", engine="torch")), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "deepspeed" not in r.stderr.lower()  # the engine was left out, not only its optimizer (a process of its own:
    # DeepSpeed's logger writes to the stderr it found at import, which an in-process run does not capture)
    pc = write_params(c, "p", engine="torch")
    killed = sara(c, "train-dit", "--params", str(pc), "--run", "sft", fault="kill@3")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert ckpt.latest_tag(c / "state" / "sft") == "step_0000002"
    resumed = sara_here(c, "train-dit", "--params", str(pc), "--run", "sft")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from 2" in resumed.stdout
    wa, wb, wc = (weights(d / "dit" / "sft") for d in (a, b, c))
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)
        assert torch.equal(wb[k], wc[k]), k
    assert json.loads((b / "dit" / "sft" / "metrics.json").read_text())["steps"] == 6
    assert not (b / "state" / "sft").exists()  # exported: the state is discarded as under DeepSpeed
