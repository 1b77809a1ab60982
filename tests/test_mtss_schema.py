"""MTSS captions: strict schema refusals name the field, round trips, caption variants, counts, noun phrases."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from sara.data import mtss
from sara.data.mtss import MTSSError, parse_caption

EXAMPLE = {
    "structured_caption": {"english": {
        "scene_description": "On a windy beach at dusk, an old man and a girl toss a red frisbee.",
        "global_style": "Photoreal 4K; warm low sun; gentle, playful pace.",
        "references": [
            {"ref_id": "PERSON_1", "type": "person", "semantic_description": "An elderly man throwing a frisbee.",
             "appearance_anchor": {
                 "id_features": {"detail_description": "White man, about 70, short white beard."},
                 "attributes": {"clothing": "Navy windbreaker.", "hairstyle": "Thin white hair.",
                                "accessories": "Round glasses."}}},
            {"ref_id": "PERSON_2", "type": "person", "semantic_description": "A young girl running to catch it",
             "appearance_anchor": {"id_features": {"detail_description": "Girl of about 8 with two braids"}},
             "noun_phrase": "girl in yellow raincoat"},
            {"ref_id": "OBJECT_1", "type": "object", "semantic_description": "The frisbee being thrown.",
             "appearance_anchor": {"id_features": {"detail_description": "Glossy bright-red plastic disc."}}},
            {"ref_id": "SCENE_1", "type": "scene", "semantic_description": "A wide sandy beach at dusk.",
             "appearance_anchor": {"id_features": {"detail_description": "Wet sand and breaking surf."}}},
        ]}},
    "shots": [
        {"shot_id": "shot_1", "time_range": [0.0, 2.5], "references_in_shot": ["PERSON_1", "OBJECT_1", "SCENE_1"],
         "camera": {"movement": "slow pan right", "angle": "eye-level", "shot_type": "medium"},
         "visual_description": "In SCENE_1, PERSON_1 flicks OBJECT_1 to the right."},
        {"shot_id": "shot_2", "time_range": [2.5, 5.0], "references_in_shot": ["PERSON_2", "OBJECT_1"],
         "camera": {"movement": "tracking", "angle": "low", "shot_type": "full"},
         "visual_description": "PERSON_2 catches OBJECT_1."},
    ],
}


def _refused(data: dict, match: str) -> str:
    with pytest.raises(MTSSError) as err:
        parse_caption(data)
    assert match in str(err.value), str(err.value)
    return str(err.value)


def test_round_trip_through_dict_json_and_file(tmp_path: Path) -> None:
    c = parse_caption(EXAMPLE)
    assert mtss.caption_to_dict(c) == EXAMPLE
    assert parse_caption(json.dumps(EXAMPLE)) == c
    mtss.save_caption(c, tmp_path / "caption.json")
    assert mtss.load_caption(tmp_path / "caption.json") == c


def test_missing_nested_field_is_refused_with_its_path() -> None:
    bad = copy.deepcopy(EXAMPLE)
    del bad["structured_caption"]["english"]["references"][2]["appearance_anchor"]["id_features"]["detail_description"]
    _refused(bad, "structured_caption.english.references.2.appearance_anchor.id_features.detail_description: "
                  "field required")


def test_unknown_field_is_refused_not_dropped() -> None:
    bad = copy.deepcopy(EXAMPLE)
    bad["shots"][0]["camera"]["zoom"] = "2x"
    _refused(bad, "shots.0.camera.zoom: unknown field")


def test_shots_nested_inside_structured_caption_is_refused() -> None:
    bad = copy.deepcopy(EXAMPLE)
    bad["structured_caption"]["shots"] = bad.pop("shots")
    msg = _refused(bad, "structured_caption.shots: unknown field")
    assert "shots: field required" in msg


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["structured_caption"]["english"]["references"][0].update(ref_id="OBJECT_9"),
         "ref_id 'OBJECT_9' does not match type 'person'"),
        (lambda d: d["structured_caption"]["english"]["references"][0].update(ref_id="PERSON_01"),
         "structured_caption.english.references.0.ref_id: must look like PERSON_k"),
        (lambda d: d["structured_caption"]["english"]["references"][1].update(ref_id="PERSON_1"),
         "duplicate ref_id 'PERSON_1'"),
        (lambda d: d["structured_caption"]["english"]["references"].pop(3),
         "needs at least one SCENE_k item"),
        (lambda d: d["shots"][1]["references_in_shot"].append("OBJECT_4"),
         "shots.1.references_in_shot.2: unknown ref_id 'OBJECT_4'"),
        (lambda d: d["shots"][1].update(visual_description="PERSON_3 waves."),
         "shots.1.visual_description: names unknown ref_id 'PERSON_3'"),
        (lambda d: d["shots"][0].update(time_range=[2.0, 1.0]),
         "shots.0.time_range: must be [start_s, end_s] with 0 <= start_s < end_s"),
        (lambda d: d["shots"][1].update(time_range=[1.0, 3.0]),
         "shots.1.time_range: overlaps the previous shot"),
        (lambda d: d["structured_caption"]["english"]["references"][1].update(noun_phrase="girl"),
         "structured_caption.english.references.1.noun_phrase: must be 2-5 words"),
        (lambda d: d["structured_caption"]["english"].update(scene_description=""),
         "structured_caption.english.scene_description"),
        (lambda d: d["structured_caption"]["english"]["references"][2].update(type="animal"),
         "structured_caption.english.references.2.type"),
    ],
)
def test_malformed_caption_is_refused_naming_the_field(edit, message: str) -> None:
    bad = copy.deepcopy(EXAMPLE)
    edit(bad)
    _refused(bad, message)


def test_not_json_is_refused() -> None:
    with pytest.raises(MTSSError, match="not JSON"):
        parse_caption("{oops", "clip_7/caption.json")


def test_caption_variants_follow_the_paper() -> None:
    c = parse_caption(EXAMPLE)
    assert mtss.entity_captions(c) == [
        ("PERSON_1", "An elderly man throwing a frisbee. White man, about 70, short white beard."),
        ("PERSON_2", "A young girl running to catch it. Girl of about 8 with two braids."),  # periods added
        ("OBJECT_1", "The frisbee being thrown. Glossy bright-red plastic disc."),
    ]
    assert mtss.foreground_caption(c) == " ".join(text for _, text in mtss.entity_captions(c))
    assert mtss.background_caption(c) == "A wide sandy beach at dusk."
    assert (mtss.count_persons(c), mtss.count_objects(c), mtss.entity_count(c)) == (2, 1, 3)


def test_full_caption_template() -> None:
    text = mtss.full_caption(parse_caption(EXAMPLE))
    lines = text.splitlines()
    headers = [ln for ln in lines if ln.startswith("[")]
    assert headers == ["[Global Setup]", "[Cast & Setting Introduction]", "[Person]", "[Object]",
                       "[SCENE/BACKGROUND]", "[Shot]"]
    assert lines[1] == "On a windy beach at dusk, an old man and a girl toss a red frisbee."
    assert lines[2] == "Style: Photoreal 4K; warm low sun; gentle, playful pace."
    assert ("PERSON_1: An elderly man throwing a frisbee. White man, about 70, short white beard. "
            "Clothing: Navy windbreaker. Hairstyle: Thin white hair. Accessories: Round glasses.") in lines
    assert lines[-1] == ("shot_2 (2.5-5.0 s; camera: tracking, low, full; in shot: PERSON_2, OBJECT_1): "
                         "PERSON_2 catches OBJECT_1.")


def test_full_caption_leaves_out_empty_person_block() -> None:
    d = copy.deepcopy(EXAMPLE)
    refs = d["structured_caption"]["english"]["references"]
    d["structured_caption"]["english"]["references"] = refs[2:]
    for s in d["shots"]:
        s["references_in_shot"] = ["OBJECT_1"]
        s["visual_description"] = "OBJECT_1 spins."
    text = mtss.full_caption(parse_caption(d))
    assert "[Person]" not in text and "[Object]" in text


def test_judge_sections() -> None:
    c = parse_caption(EXAMPLE)
    assert mtss.characters_and_objects(c).splitlines()[0] == "Expected counts: 2 person(s), 1 object(s)."
    assert "Setting: SCENE_1: A wide sandy beach at dusk. Wet sand and breaking surf." in mtss.scene_and_style(c)
    assert mtss.shot_narrative(c).count("\n") == 1 and "PERSON_2 catches OBJECT_1." in mtss.shot_narrative(c)


def test_noun_phrases_are_short_and_prefer_the_explicit_one() -> None:
    c = parse_caption(EXAMPLE)
    phrases = {r.ref_id: mtss.noun_phrase(r) for r in c.references}
    assert phrases == {"PERSON_1": "elderly man", "PERSON_2": "girl in yellow raincoat",
                       "OBJECT_1": "the frisbee", "SCENE_1": "wide sandy beach"}
    for p in phrases.values():
        assert 2 <= len(p.split()) <= 5
