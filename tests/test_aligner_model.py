"""The aligner: shapes, attention maps, padding, gradient flow through the frozen E_lm, save / load round trips,
and the Stage 2 entry point `load_saliency_model`."""

from __future__ import annotations

import math

import pytest
import torch
from aligner_testlib import tiny_aligner_params, tiny_text, tiny_vfm_params
from torch.testing import assert_close

from sara.config import Params, TextParams
from sara.models.aligner import (
    SaliencyAligner,
    load_aligner,
    load_saliency_model,
    pool_visual_tokens,
    save_aligner,
)
from sara.models.encoders import build_vfm


def _aligner(vfm_dim=16, text_dim=32, **kw) -> SaliencyAligner:
    torch.manual_seed(0)
    return SaliencyAligner(vfm_dim, text_dim, tiny_aligner_params(**kw))


def _inputs(b=3, n=8, l=5, vfm_dim=16, text_dim=32):
    g = torch.Generator().manual_seed(1)
    v = torch.randn(b, n, vfm_dim, generator=g)
    t = torch.randn(b, l, text_dim, generator=g)
    m = torch.ones(b, l, dtype=torch.bool)
    m[1, 3:] = False
    return v, t, m


def test_forward_shapes_and_attention_maps():
    al = _aligner()
    v, t, m = _inputs()
    out = al(v, t, m, return_attn=True)
    assert out.features.shape == (3, 8, 16) and out.logits.shape == (3, 8)
    assert ((out.saliency > 0) & (out.saliency < 1)).all()
    assert len(out.cross_attn) == 2 and out.cross_attn[0].shape == (3, 2, 8, 6)  # L + 1 keys (null token)
    assert len(out.self_attn) == 2 and out.self_attn[0].shape == (3, 2, 8, 8)
    assert_close(out.cross_attn[0].sum(-1), torch.ones(3, 2, 8))
    assert (out.cross_attn[0][1, :, :, 4:] == 0).all()  # padded words (positions 3, 4 -> keys 4, 5) get no weight
    assert al.project(out.features).shape == (3, 8, 32)


def test_explicit_attention_path_matches_the_fused_path():
    al = _aligner()
    v, t, m = _inputs()
    a, b = al(v, t, m, return_attn=False), al(v, t, m, return_attn=True)
    assert_close(a.logits, b.logits, atol=1e-5, rtol=1e-5)


def test_padding_the_caption_does_not_change_the_output():
    al = _aligner()
    v, t, m = _inputs()
    t_pad = torch.cat([t, torch.randn(3, 4, 32)], 1)
    m_pad = torch.cat([m, torch.zeros(3, 4, dtype=torch.bool)], 1)
    assert_close(al(v, t, m).logits, al(v, t_pad, m_pad).logits, atol=1e-5, rtol=1e-5)


def test_saliency_depends_on_the_caption():
    al = _aligner()
    v, t, m = _inputs()
    assert not torch.allclose(al(v, t, m).logits, al(v, t.flip(0), m.flip(0)).logits)


def test_no_positional_embedding_the_aligner_is_token_permutation_equivariant():
    al = _aligner()
    v, t, m = _inputs()
    perm = torch.randperm(8, generator=torch.Generator().manual_seed(3))
    assert_close(al(v[:, perm], t, m).logits, al(v, t, m).logits[:, perm], atol=1e-5, rtol=1e-5)


def test_saliency_head_bias_starts_at_the_prior_logit():
    al = _aligner(sal_prior=0.3)
    assert math.isclose(float(al.sal_head[-1].bias.detach()), math.log(0.3 / 0.7), rel_tol=1e-6)


def test_grad_checkpointing_recomputes_every_block_and_gives_the_same_gradients():
    """With the flag each block starts again during backward (its activations were not kept; a pre-hook, because
    the recompute stops once it has what backward needs); the gradients match."""
    v, t, m = _inputs()
    grads, runs = [], []
    for ckpt in (False, True):
        al = _aligner(grad_checkpointing=ckpt).train()
        blocks = [*al.cross_blocks, *al.self_blocks]
        calls = [0] * len(blocks)
        for i, blk in enumerate(blocks):
            blk.register_forward_pre_hook(lambda mod, a, i=i: calls.__setitem__(i, calls[i] + 1))
        al(v, t, m).logits.square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in al.parameters() if p.grad is not None]))
        runs.append(calls)
    assert runs[0] == [1] * len(runs[0]) and runs[1] == [2] * len(runs[1])  # forward, then the recompute
    assert_close(grads[0], grads[1])


def test_pool_visual_tokens_averages_each_frame_by_the_factor():
    z = torch.arange(2 * 16, dtype=torch.float32).reshape(1, 2 * 16, 1).expand(1, 32, 3)  # grid (2, 4, 4)
    pooled = pool_visual_tokens(z, (2, 4, 4), 2)
    assert pooled.shape == (1, 8, 3)
    frame0 = torch.arange(16.0).reshape(4, 4)
    assert float(pooled[0, 0, 0]) == float(frame0[:2, :2].mean())
    assert float(pooled[0, 5, 0]) == float((frame0 + 16)[:2, 2:].mean())
    assert pool_visual_tokens(z, (2, 4, 4), 1) is z


def test_infonce_gradients_reach_phi_proj_and_phi_ca_through_the_frozen_text_model(tmp_path):
    text = tiny_text(tmp_path)
    al = _aligner(text_dim=text.dim)
    frozen = {k: v.clone() for k, v in text.model.state_dict().items()}
    v, _, _ = _inputs()
    tokens, mask = text.embed(["a red circle", "a blue square", "a dark sky"])
    out = al(v, tokens, mask)
    h_p = text.encode_embeds(al.project(out.features))
    loss = -(h_p * text.encode_texts(["a red circle", "a blue square", "a dark sky"])).sum()
    loss.backward()
    assert al.proj[1].weight.grad is not None and al.proj[1].weight.grad.abs().sum() > 0
    assert al.cross_blocks[0].attn.q.weight.grad.abs().sum() > 0
    assert al.self_blocks[-1].attn.kv.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in text.model.parameters())
    torch.optim.AdamW(al.parameters(), lr=1e-2).step()
    for k, v in text.model.state_dict().items():
        assert torch.equal(v, frozen[k]), f"frozen weight {k} changed"


def test_save_load_round_trip(tmp_path):
    al = _aligner()
    params = Params(aligner=tiny_aligner_params())
    save_aligner(tmp_path / "aligner.pt", al, params, {"vfm_tag": "x"})
    loaded, payload = load_aligner(tmp_path)
    assert payload["vfm_tag"] == "x" and not loaded.training
    v, t, m = _inputs()
    assert_close(loaded(v, t, m).logits, al.eval()(v, t, m).logits)


def test_loading_a_missing_aligner_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no trained aligner at .*aligner\.pt: run `sara train-aligner`"):
        load_aligner(tmp_path)


def _saved_saliency_model(tmp_path):
    from aligner_testlib import save_tiny_bert

    bert = save_tiny_bert(tmp_path / "bert")
    params = Params(vfm=tiny_vfm_params(), text=TextParams(kind="minilm", path=str(bert)),
                    aligner=tiny_aligner_params())
    vfm = build_vfm(params.vfm)
    torch.manual_seed(0)
    al = SaliencyAligner(vfm.dim, 32, params.aligner)
    save_aligner(tmp_path / "aligner" / "aligner.pt", al, params,
                 {"vfm_tag": vfm.tag, "vfm_state": vfm.model.state_dict()})
    return params, vfm


def test_load_saliency_model_gives_w_from_frames_or_cached_features(tmp_path):
    params, vfm = _saved_saliency_model(tmp_path)
    model = load_saliency_model(tmp_path / "aligner", params, "cpu")
    video = torch.randint(0, 256, (2, 6, 40, 40, 3), dtype=torch.uint8)
    captions = ["a red circle and a blue square", "a green star"]
    w = model.saliency(video, captions)
    assert w.shape == (2, 2, 4) and ((w >= 0) & (w <= 1)).all()
    assert_close(model.saliency(vfm.features(video), captions), w)
    assert model.vfm.tag == vfm.tag and model.grid == (2, 2, 2)
    assert not torch.is_grad_enabled() or not w.requires_grad


def test_load_saliency_model_refuses_other_encoder_params(tmp_path):
    params, _ = _saved_saliency_model(tmp_path)
    other = params.model_copy(update={"vfm": tiny_vfm_params(frames=6)})
    with pytest.raises(ValueError, match=r"params\.vfm builds encoder vjepa2-\w+, but the aligner in .* was trained on"):
        load_saliency_model(tmp_path / "aligner", other, "cpu")


def test_saliency_refuses_features_of_the_wrong_grid(tmp_path):
    params, _ = _saved_saliency_model(tmp_path)
    model = load_saliency_model(tmp_path / "aligner", params, "cpu")
    with pytest.raises(ValueError, match=r"features must be \(B, 2, 4, 16\)"):
        model.saliency(torch.zeros(1, 2, 9, 16), ["x"])
    with pytest.raises(ValueError, match="got 2 captions for a batch of 1"):
        model.saliency(torch.zeros(1, 2, 4, 16), ["x", "y"])
