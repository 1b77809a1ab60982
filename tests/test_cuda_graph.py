"""sara.train.cuda_graph: a replayed training step trains like the eager one (GPU), and the lr setter (CPU)."""

from __future__ import annotations

import pytest
import torch

from sara.train.cuda_graph import GraphedStep, set_lr

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")


def test_set_lr_updates_float_and_tensor_learning_rates_in_place():
    w = torch.nn.Parameter(torch.zeros(2))
    plain = torch.optim.AdamW([w], lr=1e-3)
    as_tensor = torch.optim.AdamW([w], lr=torch.tensor(1e-3))
    lr_tensor = as_tensor.param_groups[0]["lr"]
    set_lr(plain, 5e-4)
    set_lr(as_tensor, 5e-4)
    assert plain.param_groups[0]["lr"] == 5e-4
    assert as_tensor.param_groups[0]["lr"] is lr_tensor  # the same tensor a captured graph reads
    assert float(lr_tensor) == pytest.approx(5e-4)


def _model_and_step(graphed: bool):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1)).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=torch.tensor(1e-2, device="cuda") if graphed else 1e-2,
                            capturable=graphed, fused=True)

    def step(x):
        opt.zero_grad(set_to_none=True)
        loss = model(x).pow(2).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    return model, opt, step


@cuda
def test_graphed_step_matches_the_eager_steps_and_follows_the_lr_schedule():
    xs = [torch.randn(32, 8, device="cuda", generator=torch.Generator("cuda").manual_seed(i)) for i in range(12)]
    eager_model, eager_opt, eager_step = _model_and_step(graphed=False)
    graph_model, graph_opt, graph_fn = _model_and_step(graphed=True)
    graphed = GraphedStep(graph_fn, warmup=2, log=lambda s: None)
    for i, x in enumerate(xs):
        lr = 1e-2 * (1 - i / len(xs))
        set_lr(eager_opt, lr)
        set_lr(graph_opt, lr)
        eager_loss, graph_loss = eager_step(x), graphed(x)
        torch.testing.assert_close(graph_loss, eager_loss, rtol=1e-4, atol=1e-5)
    assert graphed.graph is not None and not graphed.failed
    for a, b in zip(eager_model.parameters(), graph_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@cuda
def test_train_vae_phases_run_as_graphs():
    import numpy as np

    from sara.config import VAEPretrainParams
    from sara.train.pretrain_vae import train_vae

    clips = np.random.default_rng(0).integers(0, 255, (8, 9, 32, 32, 3), dtype=np.uint8)
    p = VAEPretrainParams(base_dim=8, steps=12, batch_size=2, crop_frames=5, crop_size=16, crop_batch_size=4,
                          full_fraction=0.5, eval_clips=2)  # 6 steps per phase: warm-up, capture, replays
    lines: list[str] = []
    r = train_vae(p, clips, clips, torch.device("cuda"), log=lines.append)
    assert r.metrics["steps_done"] == 12
    assert not any("capture failed" in s for s in lines), lines
