"""Grid alignment, the REPA projector, the MoAlign motion head / losses and the optical-flow sources."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sara.data.flow import flow_source
from sara.losses.moalign import flow_l1_loss, flow_to_grid, moalign_losses, moalign_trd
from sara.losses.trd import masked_trd
from sara.models.grid import align_tokens
from sara.models.motion import MotionSubspaceHead
from sara.models.projector import TRDProjector


# ------------------------------------------------------------------------------------------------ grid


def test_align_tokens_layouts_and_identity() -> None:
    x = torch.randn(2, 3, 4, 5, 6)  # (B, T, H, W, D)
    flat = x.reshape(2, 60, 6)  # (B, T*H*W, D) in (t, h, w) order
    torch.testing.assert_close(align_tokens(x, (3, 4, 5), (3, 4, 5)), x.reshape(2, 3, 20, 6))
    for mode in ("trilinear", "area", "nearest"):
        a = align_tokens(x, (3, 4, 5), (2, 3, 2), mode)
        b = align_tokens(flat, (3, 4, 5), (2, 3, 2), mode)
        assert a.shape == (2, 2, 6, 6)
        torch.testing.assert_close(a, b)


def test_area_mode_is_the_block_mean() -> None:
    x = torch.randn(1, 4, 6, 8, 3)
    out = align_tokens(x, (4, 6, 8), (2, 3, 4), "area")  # (1, 2, 12, 3)
    blocks = x.reshape(1, 2, 2, 3, 2, 4, 2, 3).mean(dim=(2, 4, 6))  # (1, 2, 3, 4, 3)
    torch.testing.assert_close(out, blocks.reshape(1, 2, 12, 3))


def test_trilinear_matches_hand_computed_cell_centre_interpolation() -> None:
    x = torch.tensor([0.0, 1.0]).reshape(1, 2, 1, 1, 1)  # a ramp over two time steps
    out = align_tokens(x, (2, 1, 1), (4, 1, 1), "trilinear")
    # target centres (d + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25 -> clamped linear interpolation
    torch.testing.assert_close(out.flatten(), torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_align_tokens_is_differentiable_and_keeps_bf16() -> None:
    x = torch.randn(1, 21 * 6 * 10, 8, requires_grad=True)
    out = align_tokens(x, (21, 6, 10), (8, 4, 4))
    out.square().sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    assert align_tokens(x.detach().bfloat16(), (21, 6, 10), (8, 4, 4)).dtype == torch.bfloat16


def test_align_tokens_bad_inputs() -> None:
    with pytest.raises(ValueError, match=r"x has 10 tokens but src_grid \(2, 2, 2\) has 8"):
        align_tokens(torch.zeros(1, 10, 3), (2, 2, 2), (1, 1, 1))
    with pytest.raises(ValueError, match="unknown grid mode='bicubic'"):
        align_tokens(torch.zeros(1, 8, 3), (2, 2, 2), (1, 1, 1), "bicubic")
    with pytest.raises(ValueError, match="dst_grid must be three positive sizes"):
        align_tokens(torch.zeros(1, 8, 3), (2, 2, 2), (0, 1, 1))


# ------------------------------------------------------------------------------------------------ projector


def test_projector_is_a_three_layer_silu_mlp() -> None:
    p = TRDProjector(12, 20, hidden=16)
    linears = [m for m in p.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(12, 16), (16, 16), (16, 20)]
    assert sum(isinstance(m, torch.nn.SiLU) for m in p.modules()) == 2
    h = torch.randn(2, 7, 12)
    ref = linears[2](torch.nn.functional.silu(linears[1](torch.nn.functional.silu(linears[0](h)))))
    torch.testing.assert_close(p(h), ref)
    with pytest.raises(ValueError, match="TRDProjector expects last dim 12"):
        p(torch.randn(2, 7, 13))


# ------------------------------------------------------------------------------------------------ MoAlign


def test_flow_to_grid_constant_translation() -> None:
    flow = torch.zeros(8, 32, 32, 2)  # 9 frames, 2 px right and 1 px down per frame
    flow[..., 0], flow[..., 1] = 2.0, 1.0
    g = flow_to_grid(flow, (3, 4, 8))
    # step centres at frames 1, 4, 7: 3 frames apart = 6 px right, 3 px down; tokens are 4 px wide, 8 px tall
    assert g.shape == (1, 2, 4, 8, 2)
    torch.testing.assert_close(g[..., 0], torch.full((1, 2, 4, 8), 6.0 / 4))
    torch.testing.assert_close(g[..., 1], torch.full((1, 2, 4, 8), 3.0 / 8))


def test_motion_head_shapes_and_flow_training() -> None:
    torch.manual_seed(0)
    head = MotionSubspaceHead(vfm_dim=16, d_m=8, hidden=16)
    vy = torch.randn(2, 3, 12, 16)  # (B, T, H*W, D_v) with grid 3x4
    m, pred = head(vy, (3, 4))
    assert m.shape == (2, 3, 12, 8) and pred.shape == (2, 2, 3, 4, 2)
    target = torch.randn(2, 2, 3, 4, 2) * 0.1 + 0.5
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    with torch.no_grad():
        first = float(flow_l1_loss(head(vy, (3, 4))[1], target))
    for _ in range(40):
        opt.zero_grad()
        loss = flow_l1_loss(head(vy, (3, 4))[1], target)
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.5 * first
    with pytest.raises(ValueError, match=r"grid \(3, 5\) has 15 tokens"):
        head.decode_flow(m, (3, 5))


def test_moalign_trd_is_op_none_with_decay_and_detached_target() -> None:
    vp = torch.randn(1, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    my = torch.randn(1, 4, 6, 8, dtype=torch.float64, requires_grad=True)
    out = moalign_trd(vp, my, tau=10.0)
    ref = masked_trd(vp, my.detach(), None, op="none", tau=10.0)
    torch.testing.assert_close(out.total, ref.total)
    out.total.backward()
    assert vp.grad is not None and my.grad is None
    with pytest.raises(ValueError, match="finite temporal decay"):
        moalign_trd(vp, my, tau=math.inf)


def test_moalign_losses_train_the_head_by_flow_only() -> None:
    torch.manual_seed(1)
    head = MotionSubspaceHead(vfm_dim=10, d_m=4, hidden=8)
    vy = torch.randn(1, 3, 6, 10)  # grid 3 x (2x3)
    vp_m = torch.randn(1, 3, 6, 4, requires_grad=True)
    flow = torch.randn(1, 2, 2, 3, 2)
    out = moalign_losses(head, vp_m, vy, flow, (2, 3), flow_weight=0.0)
    assert set(out) == {"aux", "trd", "trd_spatial", "trd_temporal", "flow_l1"}
    out["aux"].backward()
    assert vp_m.grad is not None and float(vp_m.grad.abs().sum()) > 0
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in head.parameters())  # TRD target detached
    out = moalign_losses(head, vp_m, vy, flow, (2, 3), flow_weight=1.0)
    out["aux"].backward()
    assert float(head.proj[1].weight.grad.abs().sum()) > 0


# ------------------------------------------------------------------------------------------------ flow sources


def _textured_translation(F: int = 4, H: int = 48, W: int = 48, dx: int = 2, dy: int = 1) -> np.ndarray:
    rng = np.random.default_rng(0)
    big = rng.random((H + 40, W + 40))
    from scipy.ndimage import gaussian_filter

    big = gaussian_filter(big, 2.0)
    big = (big - big.min()) / (big.max() - big.min()) * 255
    frames = [big[20 - f * dy : 20 - f * dy + H, 20 - f * dx : 20 - f * dx + W] for f in range(F)]
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1).astype(np.uint8)  # content moves +dx, +dy per frame


def test_farneback_recovers_a_translation() -> None:
    frames = _textured_translation()
    flow = flow_source("farneback")(frames)
    assert flow.shape == (3, 48, 48, 2) and flow.dtype == np.float32
    inner = flow[:, 12:-12, 12:-12]
    np.testing.assert_allclose(np.median(inner[..., 0]), 2.0, atol=0.25)
    np.testing.assert_allclose(np.median(inner[..., 1]), 1.0, atol=0.25)


def test_groundtruth_flow_moves_each_entity_as_its_rendered_mask_moves() -> None:
    """The renderer's flow (the `groundtruth` source) checked against the rendered masks: on an entity, the mean
    flow is its mask's centroid displacement to the next frame; off every entity (no camera pan) it is zero."""
    S = pytest.importorskip("sara.data.synthetic")
    specs = (S.random_spec(np.random.default_rng(seed), min_entities=1, max_entities=1, interaction_prob=0.0,
                           pan_prob=0.0) for seed in range(100))
    spec = next(s for s in specs if s.entities[0].motion.kind in ("linear", "bounce"))  # a moving entity
    frames, masks, truth = S.render(spec, 6, 48, 48, 8)
    flow = flow_source("groundtruth")(frames, truth)  # (F-1, H, W, 2) pixels (dx, dy)
    assert flow.shape == (5, 48, 48, 2)
    moved = 0.0
    for f in range(5):
        now, nxt = masks[0, f], masks[0, f + 1]
        ys, xs = np.nonzero(now)
        ys2, xs2 = np.nonzero(nxt)
        shift = np.array([xs2.mean() - xs.mean(), ys2.mean() - ys.mean()])  # centroid displacement (dx, dy)
        np.testing.assert_allclose(flow[f][now].mean(0), shift, atol=0.35)  # within a third of a pixel
        assert not flow[f][~now].any()  # the background stands still
        moved = max(moved, float(np.abs(shift).max()))
    assert moved > 1.0  # the check saw real motion
    with pytest.raises(ValueError, match="needs the clip's renderer truth"):
        flow_source("groundtruth")(frames)


def test_raft_loads_only_local_weights(tmp_path) -> None:
    from torchvision.models.optical_flow import raft_small

    with pytest.raises(FileNotFoundError, match="methods.moalign.raft_dir is not set"):
        flow_source("raft", raft_dir=None)
    with pytest.raises(FileNotFoundError, match="holds neither raft_large.pth nor raft_small.pth"):
        flow_source("raft", raft_dir=str(tmp_path))
    torch.manual_seed(0)
    model = raft_small(weights=None).eval()
    torch.save(model.state_dict(), tmp_path / "raft_small.pth")
    src = flow_source("raft", raft_dir=str(tmp_path), num_flow_updates=2)
    frames = _textured_translation(F=3, H=60, W=64)  # padded to 128 x 128 for RAFT and cropped back
    flow = src(frames)
    assert flow.shape == (2, 60, 64, 2) and flow.dtype == np.float32
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    x = torch.nn.functional.pad(x, (0, 64, 0, 68), mode="replicate")
    with torch.no_grad():
        ref = model(x[:-1], x[1:], num_flow_updates=2)[-1][:, :, :60, :64].permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(flow, ref, rtol=1e-4, atol=1e-4)  # the saved weights, not a fresh init


def test_unknown_flow_source_is_named() -> None:
    with pytest.raises(ValueError, match="unknown flow source 'pwc'"):
        flow_source("pwc")
