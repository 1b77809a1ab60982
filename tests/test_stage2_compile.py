"""`train.compile`: the DiT's forward compiled in place trains what the eager one trains, hook included.

The inductor backend takes minutes to compile on 2 CPU cores, so the test traces with `aot_eager`: the same graph
capture (dynamo) and autograd split (AOTAutograd) that inductor starts from, without generating kernels. What it
guards: the TRD hook's tensor still comes out of the compiled forward with its graph, the gradients match the
eager model's, and the parameter names that checkpoints and the export use are unchanged.
"""

from __future__ import annotations

import copy

import pytest
import torch

from sara.config import params_from_dict


def _loss_and_grads(transformer, hook, zt, ts, text):
    pred = transformer(zt, ts, text, return_dict=False)[0]
    loss = pred.square().mean() + hook.pop().square().mean()  # diffusion-like term + an aux term on the hook
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in transformer.named_parameters()}


@pytest.mark.slow  # dynamo tracing of the DiT: ~30 s on the 2-core machine
def test_compiled_forward_keeps_the_hook_gradients_and_names():
    from diffusers import WanTransformer3DModel

    from sara.models.dit import BlockFeatureHook, tiny_transformer_config
    from sara.train.stage2 import compile_transformer

    cfg = tiny_transformer_config(params_from_dict({}).dit)
    torch.manual_seed(0)
    eager = WanTransformer3DModel(**cfg)
    compiled = copy.deepcopy(eager)
    names = [n for n, _ in eager.named_parameters()]
    zt, ts, text = torch.randn(2, 16, 3, 8, 8), torch.tensor([900.0, 950.0]), torch.randn(2, 8, cfg["text_dim"])

    loss_e, grads_e = _loss_and_grads(eager, BlockFeatureHook(eager, 2), zt, ts, text)
    torch._dynamo.reset()
    compile_transformer(compiled, backend="aot_eager")
    hook = BlockFeatureHook(compiled, 2)
    loss_c, grads_c = _loss_and_grads(compiled, hook, zt, ts, text)

    assert [n for n, _ in compiled.named_parameters()] == names  # no `_orig_mod.` prefix in checkpoints
    torch.testing.assert_close(loss_c, loss_e)
    assert grads_c.keys() == grads_e.keys()
    for n in names:  # every block up to the hook layer gets the aux term's gradient, as in eager
        torch.testing.assert_close(grads_c[n], grads_e[n], rtol=1e-5, atol=1e-7)


def test_compile_is_a_cuda_only_switch(monkeypatch):
    """On CPU `train.compile: true` changes nothing (CI and the embedded DAG never compile)."""
    import sara.train.stage2 as stage2

    calls = []
    monkeypatch.setattr(stage2, "compile_transformer", lambda t, backend="inductor": calls.append(t))
    p = params_from_dict({"train": {"compile": True}, "project": {"device": "cpu"}})
    assert p.train.compile
    transformer = torch.nn.Linear(1, 1)
    stage2.maybe_compile(transformer, p.train, torch.device("cpu"))
    assert calls == []
    stage2.maybe_compile(transformer, p.train, torch.device("cuda"))
    assert calls == [transformer]
