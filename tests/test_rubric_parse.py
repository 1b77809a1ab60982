"""Reply repair and strict score validation of the judge replies."""

from __future__ import annotations

import pytest

from evaluation.rubric.dimensions import MQ_DIMS, TA_DIMS, count_error_score, group_of
from evaluation.rubric.parse import ReplyError, extract_json_text, parse_reply


def test_plain_fenced_think_and_trailing_comma_replies_parse_to_the_same_scores():
    obj = '{"entity_count": {"score": 4, "reason": "one missing"}, "scene_style": {"score": 5, "reason": "ok"},}'
    variants = [
        obj,
        "```json\n" + obj + "\n```",
        "<think>maybe {score: 2}</think>" + obj,
        "reasoning without an opening tag... </think>\n```\n" + obj + "```",
        "Sure! Here is the JSON:\n" + obj + "\nHope it helps.",
    ]
    for v in variants:
        r = parse_reply(v, ["entity_count", "scene_style"])
        assert r.scores == {"entity_count": {"score": 4, "reason": "one missing"}, "scene_style": {"score": 5, "reason": "ok"}}, v
        assert r.complete


def test_score_forms_accepted_and_refused():
    reply = (
        '{"a": {"score": "4"}, "b": {"score": 3.0}, "c": 2, "d": {"score": 4.5}, "e": {"score": 0},'
        ' "f": {"score": true}, "g": {"score": "high"}}'
    )
    r = parse_reply(reply, ["a", "b", "c", "d", "e", "f", "g", "h"])
    assert {k: v["score"] for k, v in r.scores.items()} == {"a": 4, "b": 3, "c": 2}
    assert set(r.problems) == {"d", "e", "f", "g", "h"}
    assert r.problems["h"] == "missing" and r.problems["d"] == "score 4.5 is not an integer in 1-5"


@pytest.mark.parametrize("reply, msg", [("no json here", "no JSON object"), ("{'a': 1}", "invalid JSON"), ("[1, 2]", "no JSON object")])
def test_unparseable_replies_raise(reply, msg):
    with pytest.raises(ReplyError, match=msg):
        parse_reply(reply, ["a"])


def test_largest_fence_is_taken():
    text = "```\n{}\n```\nthen\n```json\n{\"a\": {\"score\": 1}}\n```"
    assert extract_json_text(text) == '{"a": {"score": 1}}'


def test_exact_count_scale_and_groups():
    assert [count_error_score(p, 5) for p in (5, 4, 7, 2, 9, 0, 11)] == [5, 4, 3, 2, 2, 1, 1]
    assert len(TA_DIMS) == 6 and len(MQ_DIMS) == 7
    assert group_of("camera_motion") == "MQ"
    with pytest.raises(KeyError, match="unknown rubric dimension 'colour'"):
        group_of("colour")
