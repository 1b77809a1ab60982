"""Mean / vote aggregation over judges, TA and MQ averages, n_valid."""

from __future__ import annotations

import itertools
import random

import pytest

from evaluation.rubric.aggregate import per_method, per_video, vote
from evaluation.rubric.dimensions import ALL_DIMS, MQ_DIMS, TA_DIMS


def naive_vote(scores):
    best = None
    for s in sorted(set(scores)):  # ascending, so on equal counts the later (higher) score wins
        if best is None or scores.count(s) >= scores.count(best):
            best = s
    return best


def test_vote_majority_and_ties_to_the_higher_score():
    assert vote([3, 3, 5]) == 3
    assert vote([2, 4, 5]) == 5  # all three disagree: the max
    assert vote([1, 4]) == 4
    assert vote([2]) == 2
    for combo in itertools.product(range(1, 6), repeat=3):
        assert vote(combo) == naive_vote(list(combo))
    with pytest.raises(ValueError):
        vote([])


def test_per_video_skips_invalid_judges():
    v = per_video({"j1": {"entity_count": 4, "scene_style": None}, "j2": {"entity_count": 2}, "j3": {"entity_count": 2, "scene_style": 5}})
    assert v["entity_count"] == {"mean": pytest.approx(8 / 3), "vote": 2.0, "n_valid": 3}
    assert v["scene_style"] == {"mean": 5.0, "vote": 5.0, "n_valid": 1}
    assert "camera_motion" not in v


def test_per_method_against_a_naive_reference():
    rng = random.Random(0)
    judges = ["a", "b", "c"]
    videos = []
    for _ in range(5):
        videos.append({j: {d: (rng.randint(1, 5) if rng.random() > 0.1 else None) for d in ALL_DIMS} for j in judges})
    out = per_method(videos)
    for d in ALL_DIMS:
        means, votes, n = [], [], 0
        for v in videos:
            vals = [v[j][d] for j in judges if v[j][d] is not None]
            if vals:
                means.append(sum(vals) / len(vals))
                votes.append(naive_vote(vals))
                n += len(vals)
        assert out["dims"][d]["mean"] == pytest.approx(sum(means) / len(means))
        assert out["dims"][d]["vote"] == pytest.approx(sum(votes) / len(votes))
        assert out["dims"][d]["n_valid"] == n
    assert out["TA"]["mean"] == pytest.approx(sum(out["dims"][d]["mean"] for d in TA_DIMS) / 6)
    assert out["MQ"]["vote"] == pytest.approx(sum(out["dims"][d]["vote"] for d in MQ_DIMS) / 7)
    assert out["n_videos"] == 5


def test_group_average_is_none_when_a_dimension_never_got_a_valid_score():
    out = per_method([{"j": {d: 4 for d in ALL_DIMS if d != "camera_motion"}}])
    assert out["MQ"]["mean"] is None and out["TA"]["mean"] == 4.0 and out["MQ"]["n_dims"] == 6
    relaxed = per_method([{"j": {**{d: 4 for d in ALL_DIMS}, "camera_motion": None, "entity_count": 1}}], skip_inapplicable=True)
    assert relaxed["MQ"]["mean"] == 4.0 and relaxed["MQ"]["n_dims"] == 6 and relaxed["TA"]["mean"] == 3.5
    assert out["dims"]["camera_motion"] == {"mean": None, "vote": None, "n_valid": 0, "n_videos": 0}
