"""Synthetic renderer: determinism, mask consistency, masks/truth/flow aligned with the motion, spec refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from sara.data import mtss
from sara.data import synthetic as S

F, H, W, FPS = 16, 64, 64, 8


def spec(entities: list[dict], **kw) -> S.SceneSpec:
    return S.SceneSpec.model_validate({"entities": entities, **kw})


def ent(ref: str, shape: str = "circle", colour: str = "red", start=(0.3, 0.5), motion=None, **kw) -> dict:
    return {"ref_id": ref, "shape": shape, "colour": colour, "start": start, "motion": motion or {"kind": "static"},
            **kw}


def test_same_seed_same_clip_and_different_seed_different_clip() -> None:
    a = S.random_spec(np.random.default_rng([3, 0, 5]))
    b = S.random_spec(np.random.default_rng([3, 0, 5]))
    c = S.random_spec(np.random.default_rng([3, 0, 6]))
    assert a == b and a != c
    fa, ma, ta = S.render(a, F, H, W, FPS)
    fb, mb, tb = S.render(b, F, H, W, FPS)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(ma, mb)
    assert ta == tb
    assert fa.dtype == np.uint8 and fa.shape == (F, H, W, 3)
    assert ma.dtype == bool and ma.shape == (len(a.entities), F, H, W)


@pytest.mark.parametrize("seed", range(12))
def test_visible_masks_are_disjoint_and_carry_the_entity_colour(seed: int) -> None:
    sp = S.random_spec(np.random.default_rng([seed]), min_entities=3, max_entities=4)
    frames, masks, truth = S.render(sp, F, H, W, FPS)
    assert masks.sum(0).max() <= 1  # an occluded part belongs only to the entity on top
    for k, e in enumerate(sp.entities):
        rgb = np.array(S.COLOURS[e.colour], float)
        allowed = {tuple(rgb.astype(int)), tuple(np.rint(rgb * 0.5).astype(int))}  # base colour or texture shade
        seen = {tuple(px) for px in frames[masks[k]].astype(int)}
        assert seen <= allowed, (e.ref_id, seen - allowed)
        np.testing.assert_array_equal(masks[k].reshape(F, -1).sum(1), truth.entities[k].visible_area_px)
    assert truth.left_to_right_at_start == [
        d.ref_id for d in sorted(truth.entities, key=lambda d: d.centre_px[0][0])
    ]


def test_linear_motion_moves_the_mask_centroid_by_the_stated_travel() -> None:
    sp = spec([ent("OBJECT_1", start=(0.25, 0.5), motion={"kind": "linear", "direction": "right", "speed": "slow"})])
    _, masks, truth = S.render(sp, F, H, W, FPS)
    centres = np.array(truth.entities[0].centre_px)  # (F, 2)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    for f in range(F):
        m = masks[0, f]
        np.testing.assert_allclose([xs[m].mean(), ys[m].mean()], centres[f], atol=0.3)  # symmetric disc
    travel = S.LINEAR_TRAVEL["slow"] * min(H, W)
    np.testing.assert_allclose(truth.entities[0].displacement_px, [travel, 0.0], atol=1e-3)
    assert truth.entities[0].start_region == "left" and truth.entities[0].end_region == "centre"


def test_rotation_is_clockwise_on_screen_for_a_positive_angle() -> None:
    sp = spec([ent("OBJECT_1", "square", texture="striped", start=(0.5, 0.5),
                   motion={"kind": "rotate", "speed": "slow", "clockwise": True})])
    _, _, truth = S.render(sp, F, H, W, FPS)
    angles = truth.entities[0].angle_deg
    assert angles[-1] - angles[0] == pytest.approx(90.0)
    # flow just right of the centre points down (y grows downward): clockwise as seen on screen
    flow = S.ground_truth_flow(truth, H, W)
    assert flow[0, 32, 40, 1] > 0 and abs(flow[0, 32, 40, 0]) < abs(flow[0, 32, 40, 1])


def _local(x, y, centre, angle_deg, radius):
    th = math.radians(angle_deg)
    dx, dy = x - centre[0], y - centre[1]
    return (math.cos(th) * dx + math.sin(th) * dy) / radius, (-math.sin(th) * dx + math.cos(th) * dy) / radius


@pytest.mark.parametrize("seed", range(6))
def test_flow_carries_each_entity_pixel_to_the_same_material_point(seed: int) -> None:
    """Naive per-pixel reference: p at frame f and p + flow at f+1 must have the same local entity coordinates."""
    sp = S.random_spec(np.random.default_rng([100, seed]), min_entities=2, pan_prob=0.5)
    _, masks, truth = S.render(sp, F, H, W, FPS)
    flow = S.ground_truth_flow(truth, H, W)
    assert flow.shape == (F - 1, H, W, 2) and flow.dtype == np.float32
    rng = np.random.default_rng(seed)
    for k, e in enumerate(truth.entities):
        c, a, r = e.centre_px, e.angle_deg, e.radius_px
        fs, ys, xs = np.nonzero(masks[k, :-1])
        for i in rng.choice(len(fs), size=min(40, len(fs)), replace=False):
            f, y, x = fs[i], ys[i] + 0.5, xs[i] + 0.5
            u0 = _local(x, y, c[f], a[f], r)
            dx, dy = flow[f, ys[i], xs[i]]
            u1 = _local(x + dx, y + dy, c[f + 1], a[f + 1], r)
            np.testing.assert_allclose(u1, u0, atol=1e-4)  # truth stores centres to 1e-4 px
    background = ~masks.any(0)[:-1]  # (F-1, H, W)
    cam = np.array(truth.camera.offset_px)
    expected = -(cam[1:] - cam[:-1])  # (F-1, 2)
    for f in range(F - 1):
        np.testing.assert_allclose(flow[f][background[f]], np.broadcast_to(expected[f], flow[f][background[f]].shape),
                                   atol=1e-3)


def test_flow_at_double_resolution_is_twice_the_displacement() -> None:
    sp = spec([ent("OBJECT_1", "square", start=(0.3, 0.3),
                   motion={"kind": "linear", "direction": "down-right", "speed": "fast"})])
    _, _, truth = S.render(sp, F, H, W, FPS)
    step = np.diff(np.array(truth.entities[0].centre_px), axis=0)  # (F-1, 2) clip pixels
    flow2 = S.ground_truth_flow(truth, 2 * H, 2 * W)
    c0 = np.array(truth.entities[0].centre_px[0]) * 2
    np.testing.assert_allclose(flow2[0, int(c0[1]), int(c0[0])], 2 * step[0], atol=1e-3)


def test_camera_pan_moves_static_entities_and_background_together() -> None:
    sp = spec([ent("OBJECT_1", start=(0.6, 0.5))], camera="pan_right", style="grid_floor")
    frames, masks, truth = S.render(sp, F, H, W, FPS)
    centres = np.array(truth.entities[0].centre_px)
    pan = S.PAN_TRAVEL * min(H, W)
    np.testing.assert_allclose(centres[-1] - centres[0], [-pan, 0.0], atol=1e-6)  # content drifts left
    assert truth.camera.movement == "pan_right"
    flow = S.ground_truth_flow(truth, H, W)
    np.testing.assert_allclose(flow[..., 0], -pan / (F - 1), atol=1e-5)  # everything shifts together
    # the static floor grid really moves: the first and last frames differ outside the entity
    assert (frames[0][~masks[0, 0] & ~masks[0, -1]] != frames[-1][~masks[0, 0] & ~masks[0, -1]]).any()


def test_meeting_entities_touch_and_followers_keep_their_gap() -> None:
    sp = spec([
        ent("OBJECT_1", start=(0.15, 0.3), motion={"kind": "meet", "partner": "OBJECT_2"}, size="small"),
        ent("OBJECT_2", "square", "blue", start=(0.85, 0.3), motion={"kind": "meet", "partner": "OBJECT_1"},
            size="small"),
        ent("OBJECT_3", "star", "yellow", start=(0.3, 0.75),
            motion={"kind": "linear", "direction": "right", "speed": "slow"}),
        ent("PERSON_1", "figure", "green", start=None, motion={"kind": "follow", "partner": "OBJECT_3"}),
    ])
    _, _, truth = S.render(sp, F, H, W, FPS)
    meet, follow = truth.interactions
    assert (meet.kind, meet.a, meet.b) == ("meet", "OBJECT_1", "OBJECT_2")
    r = S.SIZE_RADIUS["small"] * 64
    assert meet.centre_distance_px[-1] == pytest.approx(2 * r, abs=1e-3)
    assert meet.centre_distance_px[0] > 2 * r + 10
    assert meet.contact_frame == math.ceil(S.MEET_CONTACT_AT * (F - 1))
    assert (follow.kind, follow.a, follow.b) == ("follow", "PERSON_1", "OBJECT_3")
    gap = S.FOLLOW_GAP * (S.SIZE_RADIUS["medium"] * 64 + S.SIZE_RADIUS["medium"] * 64)
    np.testing.assert_allclose(follow.centre_distance_px, gap, atol=1e-3)
    person = truth.entities[3]
    assert person.type == "person" and person.centre_px[0][0] < truth.entities[2].centre_px[0][0]


@pytest.mark.parametrize(
    ("entities", "message"),
    [
        ([ent("OBJECT_1", colour="teal")], "unknown colour 'teal'"),
        ([ent("OBJECT_1", "figure")], "a figure entity needs a ref_id like PERSON_1"),
        ([ent("PERSON_1", "figure", motion={"kind": "rotate"})], "stick figures do not rotate"),
        ([ent("OBJECT_1", motion={"kind": "linear"})], "direction: required for motion kind 'linear'"),
        ([ent("OBJECT_1", start=None)], "start: required for every motion except follow"),
        ([ent("OBJECT_1", start=(1.2, 0.5))], "must be (x, y) fractions in [0, 1]"),
        ([ent("OBJECT_1"), ent("OBJECT_2", start=None, motion={"kind": "follow", "partner": "OBJECT_1"})],
         "the leader OBJECT_1 must move linearly"),
        ([ent("OBJECT_1", motion={"kind": "meet", "partner": "OBJECT_2"}), ent("OBJECT_2")],
         "meet needs OBJECT_2 to meet OBJECT_1 back"),
        ([ent("OBJECT_1", motion={"kind": "meet", "partner": "OBJECT_5"})], "unknown entity 'OBJECT_5'"),
        ([ent("OBJECT_1"), ent("OBJECT_1")], "ref_ids must be unique"),
        ([ent(f"OBJECT_{i}") for i in range(1, 6)], "at most 4 items"),
    ],
)
def test_invalid_spec_is_refused(entities: list[dict], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                       .replace("]", r"\]")):
        spec(entities)


def test_render_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError, match="frames >= 2"):
        S.render(spec([ent("OBJECT_1")]), 1, H, W, FPS)


@pytest.mark.parametrize("seed", range(8))
def test_spec_to_mtss_names_every_entity_with_its_binding(seed: int) -> None:
    sp = S.random_spec(np.random.default_rng([7, seed]), person_prob=0.4, interaction_prob=0.7)
    c = S.spec_to_mtss(sp, frames=F, height=H, width=W, fps=FPS)
    fg = mtss.foreground_references(c)
    assert [r.ref_id for r in fg] == [e.ref_id for e in sp.entities]
    assert mtss.count_persons(c) == sum(e.shape == "figure" for e in sp.entities)
    assert mtss.count_objects(c) == sum(e.shape != "figure" for e in sp.entities)
    assert c.shots[0].time_range == (0.0, F / FPS)
    for e, r in zip(sp.entities, fg):
        assert mtss.noun_phrase(r).startswith(e.colour + " ")
        assert mtss.noun_phrase(r).endswith(S.SHAPE_NOUN[e.shape])
        assert e.ref_id in c.shots[0].visual_description
    assert mtss.background_caption(c) == S.SCENE_TEXT[sp.style][0]


def test_random_specs_respect_ranges_and_style_palettes() -> None:
    for i in range(60):
        sp = S.random_spec(np.random.default_rng([11, i]), min_entities=2, max_entities=3)
        assert 2 <= len(sp.entities) <= 3
        colours = [e.colour for e in sp.entities]
        assert len(set(colours)) == len(colours)
        assert not set(colours) & set(S.SCENE_TEXT[sp.style][2])
        for e in sp.entities:
            if e.start is not None:
                assert 0.0 <= e.start[0] <= 1.0 and 0.0 <= e.start[1] <= 1.0
    with pytest.raises(ValueError, match="min_entities <= max_entities"):
        S.random_spec(np.random.default_rng(0), min_entities=3, max_entities=2)
