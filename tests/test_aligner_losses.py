"""Stage 1 supervision and losses: BCE targets on the encoder grid, the K+2 units, batching that keeps a clip's
forwards together, BCE and InfoNCE against hand-computed values, and the lr schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from sara.losses.aligner import info_nce, masks_to_grid, same_caption_matrix, saliency_bce
from sara.train.schedules import lr_at, warmup_cosine
from sara.data.supervision import ClipExample, Unit, supervision_units
from sara.train.stage1 import batch_order, make_batch


def test_masks_to_grid_is_the_covered_fraction_of_each_tubelet_patch_volume():
    masks = torch.zeros(6, 4, 4, dtype=torch.bool)  # (F, H, W)
    masks[1, 0, 0] = True  # frame 1: one pixel of the top-left 2x2 patch
    masks[3, :2, :2] = True  # frame 3: the whole top-left patch
    masks[5, 2:, 2:] = True  # frame 5 is never sampled
    frame_idx = torch.tensor([0, 1, 2, 3])  # tubelet 0 = frames 0, 1; tubelet 1 = frames 2, 3
    target = masks_to_grid(masks, frame_idx, (2, 2, 2))
    expected = torch.zeros(2, 4)
    expected[0, 0] = 1 / 8  # 1 of 2 frames x 4 pixels
    expected[1, 0] = 4 / 8
    assert_close(target, expected)
    assert_close(masks_to_grid(masks, frame_idx, (2, 2, 2), threshold=0.5), (expected >= 0.5).float())


def test_masks_to_grid_keeps_leading_dims():
    masks = torch.ones(3, 4, 8, 8, dtype=torch.bool)
    assert masks_to_grid(masks, torch.arange(4), (2, 4, 4)).shape == (3, 2, 16)


def _units(entity_separated=True, ref_order=("OBJECT_1", "OBJECT_2")):
    masks = torch.zeros(2, 4, 4, 4, dtype=torch.bool)  # (K, F, H, W) in ref_order
    masks[0, :, :2, :2] = True
    masks[1, :, 2:, 2:] = True
    if ref_order[0] != "OBJECT_1":
        masks = masks.flip(0)
    return supervision_units(
        [("OBJECT_1", "a red circle"), ("OBJECT_2", "a blue square")], "a red circle a blue square", "a grey room",
        "full caption", list(ref_order), masks, torch.arange(4), (2, 2, 2), entity_separated=entity_separated)


def test_k_plus_2_units_per_clip():
    units = _units()
    assert [u.kind for u in units] == ["entity", "entity", "combined", "background"]
    assert [u.caption for u in units] == ["a red circle", "a blue square", "a red circle a blue square",
                                          "a grey room"]
    e1, e2, fg, bg = (u.target for u in units)
    assert_close(e1, torch.tensor([[1.0, 0, 0, 0]] * 2))
    assert_close(e2, torch.tensor([[0.0, 0, 0, 1]] * 2))
    assert_close(fg, e1 + e2)
    assert_close(bg, 1 - fg)


def test_entity_captions_are_matched_to_masks_by_ref_id():
    a, b = _units(), _units(ref_order=("OBJECT_2", "OBJECT_1"))
    for u, v in zip(a, b):
        assert u.caption == v.caption and u.ref_id == v.ref_id
        assert_close(u.target, v.target)


def test_without_entity_separation_one_full_caption_forward_with_the_union_mask():
    (unit,) = _units(entity_separated=False)
    assert unit.kind == "full" and unit.caption == "full caption"
    assert_close(unit.target, torch.tensor([[1.0, 0, 0, 1]] * 2))


def test_a_clip_without_entities_gives_only_the_background_forward():
    units = supervision_units([], "", "a grey room", "c", [], torch.zeros(0, 4, 4, 4, dtype=torch.bool),
                              torch.arange(4), (2, 2, 2))
    assert [u.kind for u in units] == ["background"]
    assert_close(units[0].target, torch.ones(2, 4))


def test_an_entity_without_a_mask_is_refused():
    with pytest.raises(ValueError, match="OBJECT_9 has a caption but no mask"):
        supervision_units([("OBJECT_9", "x")], "x", "bg", "c", ["OBJECT_1"], torch.zeros(1, 4, 4, 4),
                          torch.arange(4), (2, 2, 2))


def _example(cid: str, k: int) -> ClipExample:
    units = [Unit("entity", f"{cid} e{i}", torch.full((2, 4), float(i)), f"OBJECT_{i}") for i in range(k)]
    units += [Unit("combined", f"{cid} fg", torch.ones(2, 4)), Unit("background", f"{cid} bg", torch.zeros(2, 4))]
    return ClipExample(cid, torch.randn(2, 4, 16), units)


def test_a_batch_keeps_all_forwards_of_each_clip_together():
    a, b = _example("a", 2), _example("b", 3)
    batch = make_batch([a, b])
    assert batch.features.shape == (9, 8, 16) and batch.targets.shape == (9, 8)
    assert batch.clip_index.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert batch.captions[:4] == ["a e0", "a e1", "a fg", "a bg"]
    assert_close(batch.features[4], b.features.flatten(0, 1))
    assert_close(batch.features[0], batch.features[3])


def test_entity_subsampling_keeps_the_combined_and_background_forwards():
    batch = make_batch([_example("a", 4)], max_entities=2, generator=torch.Generator().manual_seed(0))
    assert batch.kinds == ["entity", "entity", "combined", "background"]


def test_batch_order_is_a_seeded_permutation_per_epoch():
    steps = [batch_order(5, 2, s, seed=3) for s in range(5)]  # 10 draws = two epochs of 5 clips
    flat = [i for s in steps for i in s]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:]) == list(range(5))
    assert steps == [batch_order(5, 2, s, seed=3) for s in range(5)]


def test_bce_matches_the_formula():
    logits = torch.tensor([[0.0, 2.0], [-1.0, 0.5]])
    target = torch.tensor([[1.0, 0.25], [0.0, 1.0]])
    p = torch.sigmoid(logits)
    ref = -(target * p.log() + (1 - target) * (1 - p).log()).mean()
    assert_close(saliency_bce(logits, target), ref)


def test_infonce_matches_a_hand_computed_value():
    s = 1 / math.sqrt(2)
    h_p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [s, s]])
    h_y = torch.tensor([[1.0, 0.0], [s, s], [0.0, 1.0]])
    tau = 0.5
    # row i: -log(exp(<p_i, y_i>/tau) / sum_j exp(<p_i, y_j>/tau))
    rows = [
        -(1.0 / tau) + math.log(math.exp(1 / tau) + math.exp(s / tau) + math.exp(0.0)),
        -(s / tau) + math.log(math.exp(0.0) + math.exp(s / tau) + math.exp(1 / tau)),
        -(s / tau) + math.log(math.exp(s / tau) + math.exp(1 / tau) + math.exp(s / tau)),
    ]
    assert_close(info_nce(h_p, h_y, tau), torch.tensor(sum(rows) / 3))


def test_infonce_is_visual_to_text_only():
    g = torch.Generator().manual_seed(0)
    h_p = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=-1)
    h_y = torch.nn.functional.normalize(torch.randn(4, 3, generator=g), dim=-1)
    ref = torch.nn.functional.cross_entropy(h_p @ h_y.t() / 0.07, torch.arange(4))
    assert_close(info_nce(h_p, h_y, 0.07), ref)
    assert not torch.allclose(info_nce(h_p, h_y, 0.07), info_nce(h_y, h_p, 0.07))


def test_identical_captions_are_not_negatives():
    caps = ["a red circle", "a red circle", "a grey room"]
    same = same_caption_matrix(caps)
    assert same.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    h = torch.eye(3)
    h_y = torch.stack([h[0], h[0], h[2]])
    tau = 1.0
    # anchor 0: its duplicate (column 1) is dropped -> denominator exp(1) + exp(0)
    expected0 = -1.0 + math.log(math.exp(1.0) + math.exp(0.0))
    expected1 = -0.0 + math.log(math.exp(0.0) + math.exp(0.0))  # anchor 1: (e1 . e0)=0 positive, column 0 dropped
    expected2 = -1.0 + math.log(math.exp(0.0) + math.exp(0.0) + math.exp(1.0))
    got = info_nce(h, h_y, tau, same)
    assert_close(got, torch.tensor((expected0 + expected1 + expected2) / 3))


def test_lr_schedule_warms_up_linearly_then_decays_to_the_minimum():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = warmup_cosine(opt, warmup_steps=4, total_steps=20, min_lr=1e-5)
    seen = []
    for step in range(21):
        seen.append(opt.param_groups[0]["lr"])
        assert math.isclose(seen[-1], lr_at(step, 1e-3, 4, 20, 1e-5), rel_tol=1e-9, abs_tol=1e-15)
        opt.step()
        sched.step()
    assert seen[0] == 0.0 and math.isclose(seen[2], 0.5e-3) and math.isclose(seen[4], 1e-3)
    assert math.isclose(seen[20], 1e-5) and all(a >= b for a, b in zip(seen[4:], seen[5:]))
