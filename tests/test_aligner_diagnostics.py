"""Table 4 diagnostics and mask agreement, each against a value computed by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from evaluation.aligner import (
    attention_entropy,
    bernoulli_entropy,
    best_constant_iou,
    ca_focus,
    pca_delta_variance_ratio,
    saliency_auroc,
    saliency_calibration,
    saliency_iou,
    summarise,
    top3_variance_ratio,
)


def H2(q: float) -> float:
    return -(q * math.log(q) + (1 - q) * math.log(1 - q))


def test_bernoulli_entropy():
    assert float(bernoulli_entropy(torch.tensor(0.5))) == pytest.approx(math.log(2))
    assert float(bernoulli_entropy(torch.tensor(0.0))) == 0.0
    assert float(bernoulli_entropy(torch.tensor(0.2))) == pytest.approx(H2(0.2))


def test_saliency_calibration_per_frame_then_mean():
    sal = torch.tensor([[0.2, 0.8, 0.5, 0.1], [0.6, 0.4, 0.9, 0.9]])  # (T_s=2, N_s=4)
    m = saliency_calibration(sal)
    assert m["saliency_mean"] == pytest.approx((0.2 + 0.8 + 0.5 + 0.1 + 0.6 + 0.4 + 0.9 + 0.9) / 8)
    assert m["saliency_max"] == pytest.approx((0.8 + 0.9) / 2)
    assert m["saliency_coverage"] == pytest.approx((1 / 4 + 3 / 4) / 2)  # 0.5 is not > 0.5
    ent = [H2(q) for q in (0.2, 0.8, 0.5, 0.1, 0.6, 0.4, 0.9, 0.9)]
    assert m["saliency_entropy"] == pytest.approx(sum(ent) / 8)


def test_ca_focus_is_one_minus_normalised_entropy_of_the_head_mean():
    # two heads over L + 1 = 3 keys (null + 2 words), two patches
    attn = torch.tensor([
        [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]],
        [[0.0, 1.0, 0.0], [1 / 3, 1 / 3, 1 / 3]],
    ])
    # patch 0: head mean (0.5, 0.5, 0) -> H = log 2; patch 1: uniform -> H = log 3
    expected = ((1 - math.log(2) / math.log(3)) + 0.0) / 2
    assert ca_focus(attn, num_text_tokens=2) == pytest.approx(expected)
    one_hot = torch.zeros(1, 4, 3)
    one_hot[..., 1] = 1
    assert ca_focus(one_hot, 2) == pytest.approx(1.0)


def test_attention_entropy_normalised_by_log_of_the_key_count():
    uniform = torch.full((2, 3, 4), 0.25)
    assert attention_entropy(uniform) == pytest.approx(1.0)
    attn = torch.tensor([[[0.5, 0.5, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]]])
    assert attention_entropy(attn) == pytest.approx((math.log(2) / math.log(4) + 0.0) / 2)


def test_delta_self_attention_entropy_is_post_minus_pre():
    pre = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])  # entropy 0
    post = torch.full((1, 2, 2), 0.5)  # entropy 1
    assert attention_entropy(post) - attention_entropy(pre) == pytest.approx(1.0)


def test_top3_variance_ratio_on_a_hand_built_matrix():
    # centred columns with variances proportional to 4, 3, 2, 1 (orthogonal): r_3 = 9 / 10
    x = torch.zeros(8, 4)
    scales = [2.0, math.sqrt(3), math.sqrt(2), 1.0]
    for j, s in enumerate(scales):
        x[2 * j, j], x[2 * j + 1, j] = s, -s
    assert top3_variance_ratio(x) == pytest.approx(0.9)
    assert top3_variance_ratio(x + 5.0) == pytest.approx(0.9)  # centring
    rank1 = torch.outer(torch.arange(6.0), torch.tensor([1.0, 2.0, 3.0]))
    assert top3_variance_ratio(rank1) == pytest.approx(1.0)


def test_pca_delta_is_post_minus_pre_per_frame():
    x = torch.zeros(8, 4)
    for j, s in enumerate([2.0, math.sqrt(3), math.sqrt(2), 1.0]):
        x[2 * j, j], x[2 * j + 1, j] = s, -s
    iso = torch.zeros(8, 4)
    for j in range(4):
        iso[2 * j, j], iso[2 * j + 1, j] = 1.0, -1.0  # r_3 = 3/4
    assert pca_delta_variance_ratio(torch.stack([x, x]), torch.stack([iso, iso])) == pytest.approx(0.9 - 0.75)


def test_iou_and_auroc_against_hand_values():
    target = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.6, 0.2])  # ground truth >= 0.5: {0, 1, 4}
    sal = torch.tensor([0.9, 0.4, 0.7, 0.1, 0.8, 0.3])  # predicted > 0.5: {0, 2, 4}
    assert saliency_iou(sal, target) == pytest.approx(2 / 4)
    # positives {0.9, 0.4, 0.8} vs negatives {0.7, 0.1, 0.3}: 8 of 9 pairs ordered (only 0.4 < 0.7)
    assert saliency_auroc(sal, target) == pytest.approx(8 / 9)
    assert saliency_auroc(sal, torch.zeros(6)) is None
    assert saliency_iou(sal, torch.zeros(6)) is None
    assert best_constant_iou(target) == pytest.approx(3 / 6)


def test_summary_averages_per_clip_first_and_reports_baselines():
    recs = [
        {"clip_id": "a", "kind": "entity", "iou": 1.0, "auroc": 1.0, "baseline_iou": 0.1},
        {"clip_id": "a", "kind": "entity", "iou": 0.0, "auroc": 0.5, "baseline_iou": 0.3},
        {"clip_id": "b", "kind": "entity", "iou": 0.4, "auroc": 0.8, "baseline_iou": 0.2},
        {"clip_id": "b", "kind": "background", "iou": 0.9, "auroc": None, "baseline_iou": 0.8},
    ]
    m = summarise(recs, [{"l1": 0.2}, {"l1": 0.4}])
    assert m["entity/iou"] == pytest.approx((0.5 + 0.4) / 2)
    assert m["entity/auroc"] == pytest.approx((0.75 + 0.8) / 2)
    assert m["baseline/entity/iou"] == pytest.approx((0.2 + 0.2) / 2)
    assert m["background/iou"] == pytest.approx(0.9) and "background/auroc" not in m
    assert m["all/iou"] == pytest.approx((0.5 + (0.4 + 0.9) / 2) / 2)
    assert m["entity_pairs/l1"] == pytest.approx(0.3) and m["entity_pairs/count"] == 2
