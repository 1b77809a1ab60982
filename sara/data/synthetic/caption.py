"""MTSS captions of synthetic scenes: one Reference per entity plus SCENE_1 and one shot, in the vocabulary of
docs/data.md. Descriptions name no ref_ids (each must stand alone); the shot narrative uses the rendered truth for
positions ("starts at the top left", "ends at the right")."""

from __future__ import annotations

from typing import Any

from sara.data.mtss import MTSSCaption, parse_caption
from sara.data.synthetic.render import render
from sara.data.synthetic.spec import DIRECTION_PHRASE, ROTATION_DEG, SCENE_TEXT, SHAPE_NOUN, SIZE_RADIUS, EntitySpec, SceneSpec
from sara.data.synthetic.truth import Truth, region_name

_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _texture_adj(texture: str) -> str:
    return {"solid": "", "striped": "striped ", "dotted": "dotted "}[texture]


def _name(e: EntitySpec) -> str:
    """Short identifying noun phrase, e.g. 'red striped circle', 'blue stick figure'."""
    return f"{e.colour} {_texture_adj(e.texture)}{SHAPE_NOUN[e.shape]}"


def _motion_clause(spec: SceneSpec, e: EntitySpec) -> str:
    """Present-tense verb phrase for the semantic description (no ref_ids: c_k must stand alone)."""
    m = e.motion
    walker = e.shape == "figure"
    if m.kind == "static":
        return "standing still" if walker else "resting in place"
    if m.kind == "linear":
        verb = ("walking" if m.speed == "slow" else "running") if walker else "moving"
        return f"{verb} {'quickly ' if m.speed == 'fast' and not walker else ''}{DIRECTION_PHRASE[m.direction]}"
    if m.kind == "bounce":
        return f"bouncing {'quickly ' if m.speed == 'fast' else ''}off the edges of the frame"
    if m.kind == "rotate":
        turn = "clockwise" if m.clockwise else "counter-clockwise"
        return f"spinning {'quickly' if m.speed == 'fast' else 'slowly'} {turn} in place"
    other = spec.entity(m.partner)
    if m.kind == "meet":
        return f"{'walking' if walker else 'moving'} toward the {_name(other)} until they touch"
    return f"following the {_name(other)}"


def _detail(e: EntitySpec) -> str:
    pct = round(SIZE_RADIUS[e.size] * 200)
    tex = {"solid": "solid", "striped": "with darker stripes", "dotted": "dotted with darker spots"}[e.texture]
    if e.shape == "figure":
        return (f"A {e.size} {e.colour} stick figure with a round head, straight body, outstretched arms and two "
                f"legs, about {pct}% of the frame height tall.")
    if e.texture == "solid":
        return f"A {e.size} solid {e.colour} {SHAPE_NOUN[e.shape]}, about {pct}% of the frame height across."
    return f"A {e.size} {e.colour} {SHAPE_NOUN[e.shape]} {tex}, about {pct}% of the frame height across."


def _narrative_sentence(spec: SceneSpec, e: EntitySpec, truth: Truth) -> str:
    m, rid, t = e.motion, e.ref_id, truth.entity(e.ref_id)
    start, end = t.start_region, t.end_region
    if m.kind == "static":
        return f"{rid} stays still at the {start}."
    if m.kind == "linear":
        return f"{rid} starts at the {start} and moves {DIRECTION_PHRASE[m.direction]}, ending at the {end}."
    if m.kind == "bounce":
        return f"{rid} starts at the {start} heading {DIRECTION_PHRASE[m.direction]} and bounces off the frame edges."
    if m.kind == "rotate":
        turns = {90.0: "a quarter turn", 270.0: "three quarters of a turn"}[ROTATION_DEG[m.speed]]
        way = "clockwise" if m.clockwise else "counter-clockwise"
        return f"{rid} spins {way} in place at the {start}, {turns} in all."
    other = truth.entity(m.partner)
    if m.kind == "meet":
        if [x.ref_id for x in spec.entities].index(rid) > [x.ref_id for x in spec.entities].index(m.partner):
            return ""  # the pair is narrated once, from its first member
        meet_x = (t.centre_px[-1][0] + other.centre_px[-1][0]) / 2 / truth.width
        meet_y = (t.centre_px[-1][1] + other.centre_px[-1][1]) / 2 / truth.height
        return (f"{rid} (starting at the {start}) and {m.partner} (starting at the {other.start_region}) move "
                f"toward each other and touch at the {region_name(meet_x, meet_y)}, then stay together.")
    leader = spec.entity(m.partner)
    return (f"{rid} follows {m.partner} closely from behind as it moves {DIRECTION_PHRASE[leader.motion.direction]}, "
            f"ending at the {end}.")


def spec_to_mtss(
    spec: SceneSpec, *, frames: int = 16, height: int = 64, width: int = 64, fps: int = 8, truth: Truth | None = None
) -> MTSSCaption:
    """The MTSS caption of a spec: one Reference per entity plus SCENE_1, and one shot covering the clip.

    Positions in the narrative ("top left", "ends at the right") come from the rendered truth: pass the `truth`
    that `render` returned for this spec (the data stage does, so each clip is drawn once); without it the spec is
    rendered at `frames` x `height` x `width` @ `fps` for its truth alone.
    """
    if truth is None:
        truth = render(spec, frames, height, width, fps)[2]
    elif truth.spec != spec:
        raise ValueError("spec_to_mtss: `truth` was rendered from another spec")
    frames, fps = truth.frames, truth.fps
    scene_sem, scene_detail, _ = SCENE_TEXT[spec.style]
    refs: list[dict[str, Any]] = []
    for e in spec.entities:
        anchor: dict[str, Any] = {"id_features": {"detail_description": _detail(e)}}
        if e.shape == "figure":
            anchor["attributes"] = {"clothing": f"None; the whole figure is {e.colour}.", "hairstyle": "None.",
                                    "accessories": "None."}
        refs.append({
            "ref_id": e.ref_id, "type": e.entity_type,
            "semantic_description": f"{_article(e.colour).capitalize()} {_name(e)} {_motion_clause(spec, e)}.",
            "appearance_anchor": anchor,
            "noun_phrase": _name(e),
        })
    refs.append({"ref_id": "SCENE_1", "type": "scene", "semantic_description": scene_sem,
                 "appearance_anchor": {"id_features": {"detail_description": scene_detail}}})

    setting = scene_sem[0].lower() + scene_sem[1:].rstrip(".")
    clauses = [f"{_article(e.colour)} {_name(e)} {_motion_clause(spec, e)}" for e in spec.entities]
    listing = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    n_persons = sum(e.shape == "figure" for e in spec.entities)
    n_objects = len(spec.entities) - n_persons
    counts = " and ".join(
        f"{_COUNT_WORDS[n]} {noun}{'s' if n > 1 else ''}"
        for n, noun in ((n_persons, "stick figure"), (n_objects, "shape")) if n
    )
    scene_description = f"On {setting}, {counts}: {listing}."
    moving = [e for e in spec.entities if e.motion.kind != "static"]
    pace = "lively" if any(e.motion.speed == "fast" for e in moving) else ("calm" if moving else "still")
    camera_move = {"static": "static", "pan_left": "slow pan left", "pan_right": "slow pan right"}[spec.camera]
    global_style = (f"Flat synthetic 2D render with hard-edged shapes; even lighting; {pace} pace; "
                    f"{'locked-off camera' if spec.camera == 'static' else 'the camera pans slowly'}.")

    order = ", ".join(truth.left_to_right_at_start)
    sentences = [f"In SCENE_1, from left to right at the start: {order}."]
    sentences += [s for e in spec.entities if (s := _narrative_sentence(spec, e, truth))]
    if spec.camera != "static":
        way = "right" if spec.camera == "pan_right" else "left"
        drift = "left" if way == "right" else "right"
        sentences.append(f"The camera pans slowly to the {way}, so the background drifts {drift}.")
    caption = {
        "structured_caption": {"english": {
            "scene_description": scene_description, "global_style": global_style, "references": refs}},
        "shots": [{
            "shot_id": "shot_1", "time_range": [0.0, round(frames / fps, 3)],
            "references_in_shot": [r["ref_id"] for r in refs],
            "camera": {"movement": camera_move, "angle": "front-on", "shot_type": "wide"},
            "visual_description": " ".join(sentences),
        }],
    }
    return parse_caption(caption, "spec_to_mtss")


# ---------------------------------------------------------------------------------------- random scenes