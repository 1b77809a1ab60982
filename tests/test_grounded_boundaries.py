"""The grounded judge's cuts, one at a time: tracks placed exactly at, and either side of, each threshold.

tests/test_grounded_judge.py shows which way a corruption moves each score on rendered videos; a cut moved by a
small amount (`<` for `<=`, the wrong frame, a dropped term) changes no score there. Here the generated tracks (and,
where a rule reads pixels, tiny videos) are written by hand, so each test pins one rule of a dimension's score
(evaluation/grounded/scores.py) on the value it gives, and fails when the rule changes (the mutation run's
survivors, docs/testing.md).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest

from evaluation.grounded import build_reference
from evaluation.grounded.scores import score_interaction, score_spatial
from sara.data import synthetic as S
from grounded_testlib import FOLLOW, FPS, H, MEET, SPEC, W, F

ONE = S.SceneSpec.model_validate({"style": "studio", "camera": "static", "entities": [
    {"ref_id": "OBJECT_1", "shape": "circle", "colour": "red", "start": [0.3, 0.4], "motion": {"kind": "static"}},
]})


@pytest.fixture(scope="module")
def meet():
    return build_reference(MEET, F, H, W, FPS)


@pytest.fixture(scope="module")
def spec_ref():
    return build_reference(SPEC, F, H, W, FPS)


@pytest.fixture(scope="module")
def one():
    return build_reference(ONE, F, H, W, FPS)


def meet_value(ref, distances: list[float | None]) -> float:
    """score_interaction's value when the two meeting entities are `distances[f]` pixels apart in frame f (None:
    one of them not found). Entity a sits at the origin, so the distance is exactly the x of entity b."""
    centres = np.full((2, F, 2), np.nan)
    for f, d in enumerate(distances):
        if d is not None:
            centres[0, f] = (0.0, 0.0)
            centres[1, f] = (d, 0.0)
    assert np.array_equal(np.linalg.norm(centres[0] - centres[1], axis=1)[[f for f, d in enumerate(distances) if d is not None]],
                          [d for d in distances if d is not None])  # the distances the judge sees are exact
    return score_interaction(ref, dataclasses.replace(ref.tracks, centres=centres))[1]


def pair(ref) -> float:
    """ra + rb of the meeting pair, in pixels."""
    return sum(e.radius_px for e in ref.truth.entities)


def test_a_meeting_in_contact_at_exactly_the_contact_distance_counts(meet):
    s = pair(meet)
    assert meet_value(meet, [10 * s] * (F - 1) + [1.3 * s]) == 1.0  # contact: d <= 1.3 (ra + rb), the tie included
    assert meet_value(meet, [10 * s] * (F - 1) + [np.nextafter(1.3 * s, np.inf)]) == 0.5  # just past it: no contact


def test_the_last_frame_decides_approach_and_contact(meet):
    s = pair(meet)
    assert meet_value(meet, [10 * s] * (F - 1) + [s]) == 1.0  # far until the last frame, which is in contact
    assert meet_value(meet, [10 * s] * (F - 2) + [s, 10 * s]) == 0.0  # in contact one frame before the end only


def test_approach_is_measured_from_the_first_frame_by_a_tenth_of_the_radii(meet):
    s = pair(meet)
    # exactly a tenth of (ra + rb) closer is not an approach; closer than that is
    assert meet_value(meet, [10 * s] * (F - 1) + [10 * s - 0.1 * s]) == 0.0
    assert meet_value(meet, [10 * s] * (F - 1) + [np.nextafter(10 * s - 0.1 * s, -np.inf)]) == 0.5
    # from the first frame, not the second: far, then close and never in contact -> approached, no contact
    assert meet_value(meet, [10 * s] + [2 * s] * (F - 1)) == 0.5


def test_approach_needs_two_frames_and_contact_one(meet):
    s = pair(meet)
    assert meet_value(meet, [None] * (F - 2) + [10 * s, s]) == 1.0  # two frames found: approached and touching
    assert meet_value(meet, [None] * (F - 1) + [s]) == 0.5  # one frame: touching, no approach can be seen


def test_a_pair_never_found_scores_zero(meet):
    assert meet_value(meet, [None] * F) == 0.0
    centres = np.full((2, F, 2), np.nan)
    assert score_interaction(meet, dataclasses.replace(meet.tracks, centres=centres))[:2] == (1, 0.0)


def test_no_interaction_says_why(one, spec_ref):
    assert score_interaction(one, one.tracks) == (5, 1.0, "no multi-subject interaction")
    assert score_interaction(spec_ref, spec_ref.tracks) == (5, 1.0, "no interaction in the description")


def test_spatial_averages_relations_held_and_centroids_on_the_path(spec_ref):
    """Every entity shifted by the same 0.3 of the frame: every left/right and above/below relation still holds
    (1.0), no centroid is within 0.12 of the frame of its path (0.0), so the value is their mean, 0.5."""
    assert score_spatial(spec_ref, spec_ref.tracks)[1] == 1.0
    unit = float(min(H, W))
    shifted = dataclasses.replace(spec_ref.tracks, centres=spec_ref.tracks.centres + 0.3 * unit)
    score, value, reason = score_spatial(spec_ref, shifted)
    held, n_rel, on_path, n_cent = spatial_counts(reason)
    assert (value, held, on_path, n_cent) == (0.5, n_rel, 0, 3 * F) and n_rel > 0


def spatial_counts(reason: str) -> tuple[int, ...]:
    """score_spatial's reason as (relations held, relations judged, centroids on the path, centroids judged)."""
    return tuple(map(int, re.fullmatch(r"relations held (\d+)/(\d+), on-path (\d+)/(\d+)", reason).groups()))


@pytest.fixture(scope="module")
def follow():
    return build_reference(FOLLOW, F, H, W, FPS)


def follow_value(ref, offsets) -> float:
    """score_interaction's value when the leader sits at `offsets(gap_f)` (x, y) from the follower in frame f, where
    gap_f is the pair's ground-truth distance in that frame; the leader moves right, so x > 0 is "behind"."""
    truth = ref.truth
    it = truth.interactions[0]
    a, b = truth.ref_ids.index(it.a), truth.ref_ids.index(it.b)
    gap = np.linalg.norm(ref.tracks.centres[a] - ref.tracks.centres[b], axis=1)  # (F,)
    centres = np.zeros((len(truth.ref_ids), F, 2))
    centres[b] = [offsets(g) for g in gap]
    return score_interaction(ref, dataclasses.replace(ref.tracks, centres=centres))[1]


def test_following_means_behind_the_leader_at_about_the_true_gap(follow):
    assert follow.truth.interactions[0].kind == "follow"
    assert follow_value(follow, lambda g: (g, 0.0)) == 1.0  # straight behind at the true gap
    assert follow_value(follow, lambda g: (0.5, np.sqrt(g * g - 0.25))) == 1.0  # barely behind (half a pixel)
    assert follow_value(follow, lambda g: (0.0, g)) == 0.0  # level with the leader is not behind
    assert follow_value(follow, lambda g: (2 * g, 0.0)) == 0.0  # behind, but twice the gap: 0.4 of it is allowed


def test_physical_flags_an_acceleration_the_truth_does_not_have(spec_ref):
    """One centroid moved 4 px off its track in one frame: the second differences around it are about 4, 8 and 4 px,
    and only the 8 exceeds the truth's largest acceleration plus 0.08 of the frame (5.1 px): 1 of 21 flagged."""
    from evaluation.grounded.scores import score_physical

    assert score_physical(spec_ref, spec_ref.tracks)[1] == 1.0
    centres = spec_ref.tracks.centres.copy()
    centres[0, F // 2, 1] += 4.0
    _, value, reason = score_physical(spec_ref, dataclasses.replace(spec_ref.tracks, centres=centres))
    assert reason == f"rigid 1.00, no unexplained acceleration {20 / 21:.2f}"
    assert value == pytest.approx((1.0 + 20 / 21) / 2)


def test_physical_judges_with_what_it_has(spec_ref):
    from evaluation.grounded.scores import score_physical

    t = spec_ref.tracks
    no_centres = dataclasses.replace(t, centres=np.full_like(t.centres, np.nan))  # masks only: rigidity alone
    assert score_physical(spec_ref, no_centres) == (5, 1.0, "rigid 1.00, no unexplained acceleration 1.00")
    every_other = [[m if f % 2 == 0 else None for f, m in enumerate(masks)] for masks in t.masks]
    no_pairs = dataclasses.replace(t, masks=every_other)  # no two consecutive masks: smoothness alone
    assert score_physical(spec_ref, no_pairs) == (5, 1.0, "rigid 1.00, no unexplained acceleration 1.00")
    one_frame = dataclasses.replace(t, masks=[[m if f == 0 else None for f, m in enumerate(masks)] for masks in t.masks],
                                    centres=np.where(np.arange(F)[None, :, None] == 0, t.centres, np.nan))
    assert score_physical(spec_ref, one_frame) == (5, 1.0, "too few frames to judge")


def parts_of(reason: str) -> dict[str, float]:
    """score_temporal_consistency's reason as {part: value}."""
    return {k.strip(): float(v) for k, v in (p.rsplit(" ", 1) for p in reason.split(", "))}


def test_temporal_consistency_flags_a_teleport_against_the_truths_own_step(spec_ref):
    """Entity 0 (moving right about 5 px a frame) put 0.3 of the frame off its track in frame 1: the steps into and
    out of frame 1 exceed its true step plus 0.15 of the frame, 2 of the 24 steps of the three entities."""
    from evaluation.grounded.scores import score_temporal_consistency

    t = spec_ref.tracks
    assert score_temporal_consistency(spec_ref, spec_ref.frames, t)[1] == 1.0
    centres = t.centres.copy()
    centres[0, 1, 1] += 0.3 * min(H, W)
    _, _, reason = score_temporal_consistency(spec_ref, spec_ref.frames, dataclasses.replace(t, centres=centres))
    assert parts_of(reason) == {"presence": 1.0, "area continuity": 1.0, "no teleport": round(22 / 24, 2), "no flicker": 1.0}


def test_temporal_consistency_compares_area_ratios_with_one_added(spec_ref):
    """Blobs of no area in the truth and in the video: (0 + 1) / (0 + 1) on both sides, continuous."""
    from evaluation.grounded.scores import score_temporal_consistency

    t = spec_ref.tracks
    empty = dataclasses.replace(t, areas=np.zeros_like(t.areas))
    ref = dataclasses.replace(spec_ref, tracks=empty)
    _, _, reason = score_temporal_consistency(ref, ref.frames, empty)
    assert parts_of(reason)["area continuity"] == 1.0


def test_temporal_consistency_judges_with_what_it_has(spec_ref):
    from evaluation.grounded.scores import score_temporal_consistency

    t = spec_ref.tracks
    unseen = dataclasses.replace(spec_ref, visible=np.zeros_like(spec_ref.visible))  # never visible: presence 1
    assert parts_of(score_temporal_consistency(unseen, unseen.frames, t)[2])["presence"] == 1.0
    every_other = dataclasses.replace(t, masks=[[m if f % 2 == 0 else None for f, m in enumerate(ms)] for ms in t.masks])
    got = parts_of(score_temporal_consistency(spec_ref, spec_ref.frames, every_other)[2])
    assert (got["area continuity"], got["no teleport"]) == (1.0, 1.0)  # no consecutive pair: nothing to judge


def test_temporal_consistency_flicker_part_stays_in_zero_one(spec_ref):
    from evaluation.grounded.scores import score_temporal_consistency

    noise = np.random.default_rng(0).integers(0, 256, spec_ref.frames.shape, dtype=np.uint8)
    _, value, reason = score_temporal_consistency(spec_ref, noise, spec_ref.tracks)
    assert parts_of(reason)["no flicker"] == 0.0 and value == pytest.approx(0.75)


def test_motion_alignment_of_a_still_prompt_asks_entities_to_stay_put(one):
    from evaluation.grounded.scores import score_motion_alignment

    assert score_motion_alignment(one, one.tracks) == (5, 1.0, "still prompt: entities stay put")
    drift = one.tracks.centres + np.linspace(0, 0.2 * min(H, W), F)[None, :, None]  # 0.2 of the frame in all
    assert score_motion_alignment(one, dataclasses.replace(one.tracks, centres=drift))[:2] == (1, 0.0)


def test_motion_alignment_counts_a_crawl_in_the_right_direction_as_wrong(spec_ref):
    """Steps a fifth of the truth's, in its direction, are under a quarter of it: no agreement."""
    from evaluation.grounded.scores import score_motion_alignment

    t = spec_ref.tracks
    crawl = t.centres[:, :1] + 0.2 * (t.centres - t.centres[:, :1])  # every step a fifth as long, same direction
    assert score_motion_alignment(spec_ref, dataclasses.replace(t, centres=crawl))[1] == 0.0


@pytest.mark.parametrize("offset,score", [(5, 5), (15, 4), (30, 3), (45, 2), (70, 1)])
def test_scene_style_scores_the_background_colour_error_by_its_cuts(spec_ref, offset: int, score: int):
    """Every background pixel off by `offset` in each channel: the error is the offset, scored by SCENE_ERR_CUTS
    (10, 20, 35, 55 -> 5, 4, 3, 2, else 1)."""
    from evaluation.grounded.scores import score_scene_style

    video = spec_ref.frames.astype(np.int32) + offset  # not clipped: the error is exactly the offset's size
    got, err, _ = score_scene_style(spec_ref, video, spec_ref.tracks)
    assert (got, err) == (score, pytest.approx(offset))


def test_scene_style_without_background_says_so(spec_ref):
    from evaluation.grounded.scores import score_scene_style

    everything = dataclasses.replace(spec_ref.tracks, labels=np.zeros_like(spec_ref.tracks.labels))  # all one blob
    assert score_scene_style(spec_ref, spec_ref.frames, everything) == (1, float("inf"), "no background visible")


# --- the camera's shift search (shift_errors, _best_shift) and the background both videos show (_both_background)


def _textured(F_: int, H_: int, W_: int, dy: int, dx: int) -> np.ndarray:
    """(F, H, W, 3) uint8 noise texture whose frame f+1 is frame f moved by (dy, dx): frame f+1 at (y, x) shows
    frame f at (y - dy, x - dx), which is what shift_errors compares at index [f, dy + m, dx + m]."""
    big = np.random.default_rng(0).integers(0, 255, (H_ + 40, W_ + 40)).astype(np.uint8)
    frames = [np.roll(big, (k * dy, k * dx), axis=(0, 1))[20 : 20 + H_, 20 : 20 + W_] for k in range(F_)]
    return np.repeat(np.stack(frames)[..., None], 3, axis=-1)


@pytest.mark.parametrize("dy, dx", [(-3, 2), (2, -4), (-4, -1), (4, 3), (3, 4), (0, 0)])
def test_shift_errors_find_every_shift_in_both_directions(dy: int, dx: int):
    """The search covers -m..m in y and x (default m = 4: a 9 x 9 grid), and a shift's error sits at [dy + m, dx + m]."""
    from evaluation.grounded.scores import shift_errors

    video = _textured(3, 32, 32, dy, dx)
    err = shift_errors(video, np.ones(video.shape[:3], bool))
    assert err.shape == (2, 9, 9)
    for f in range(2):
        assert err[f, dy + 4, dx + 4] == 0.0
        assert np.sort(err[f].ravel())[1] > 10.0  # every other shift of a noise texture is far off


def test_shift_errors_need_twenty_valid_pixels():
    """A shift is judged on at least 20 background pixels both frames show; 19 leave it unjudged (inf)."""
    from evaluation.grounded.scores import shift_errors

    video = _textured(2, 24, 40, 0, 0)
    for n, finite in ((20, True), (19, False)):
        valid = np.zeros(video.shape[:3], bool)
        valid[:, 8, 4 : 4 + n] = True  # one row inside the interior (m = 4 .. H - m)
        assert np.isfinite(shift_errors(video, valid)[0, 4, 4]) == finite, n


def test_best_shift_prefers_the_smallest_shift_on_ties_and_the_true_one_otherwise():
    from evaluation.grounded.scores import _best_shift

    flat = np.ones((9, 9))
    assert _best_shift(flat) == (4, 4)  # a flat background shows no motion
    err = np.ones((9, 9))
    err[6, 4] = 0.0  # (dy, dx) = (2, 0) explains the step exactly
    assert _best_shift(err) == (6, 4)
    err = np.ones((9, 9))
    err[4, 4], err[4, 8] = 0.5, 0.5 - 5e-3  # the far shift (|dx| = 4: penalty 4e-3) is better by more than that
    assert _best_shift(err) == (4, 8)
    err[4, 8] = 0.5 - 3e-3  # ... and by less: the centre wins
    assert _best_shift(err) == (4, 4)


def test_both_background_leaves_out_what_either_video_calls_an_entity():
    """Background both show: not an entity in the truth's own tracks (label >= 0, entity 0 included), not within
    one pixel of a reference entity mask, and not an entity in the generated video's tracks."""
    from types import SimpleNamespace

    from evaluation.grounded.scores import _both_background

    labels = np.full((1, 10, 10), -1)
    labels[0, 1, 1] = 0  # the truth's tracks call this pixel entity 0 (no reference mask there)
    labels[0, 1, 8] = 1
    masks = np.zeros((2, 1, 10, 10), bool)
    masks[1, 0, 7, 7] = True  # a reference mask: it and its 8 neighbours are foreground
    gen = np.full((1, 10, 10), -1)
    gen[0, 5, 2] = 0  # the generated video's tracks call this pixel an entity
    ref = SimpleNamespace(tracks=SimpleNamespace(labels=labels), entity_masks=masks)
    bg = _both_background(ref, SimpleNamespace(labels=gen))
    expected = np.ones((1, 10, 10), bool)
    expected[0, 1, 1] = expected[0, 1, 8] = expected[0, 5, 2] = False
    expected[0, 6:9, 6:9] = False
    np.testing.assert_array_equal(bg, expected)


# --- motion amplitude (path lengths) and the camera rule (scores of one step), on hand-written tracks and videos


def _amplitude(ref, ref_path: float, gen_path: float) -> float:
    """score_motion_amplitude's value for ONE's entity when the truth's track is `ref_path` pixels long and the
    generated one `gen_path` (all of each path in the first step, from the origin, so the lengths are exact)."""
    from evaluation.grounded.scores import score_motion_amplitude

    def track(length: float) -> np.ndarray:
        c = np.zeros((1, F, 2))
        c[0, 1:, 0] += length
        return c

    truth = dataclasses.replace(ref, tracks=dataclasses.replace(ref.tracks, centres=track(ref_path)))
    return score_motion_amplitude(truth, dataclasses.replace(ref.tracks, centres=track(gen_path)))[1]


def test_motion_amplitude_of_a_still_entity_allows_a_small_drift_then_falls_linearly(one):
    """Still in the truth (path < 0.1 of the frame): 0.08 of the frame of extra path is free, then the value falls
    by 1 per 0.3 of the frame, clipped to [0, 1]."""
    unit = float(min(H, W))
    pr = 0.04 * unit
    assert _amplitude(one, pr, pr + 0.08 * unit) == pytest.approx(1.0)
    assert _amplitude(one, pr, pr + 0.23 * unit) == pytest.approx(0.5)
    assert _amplitude(one, pr, pr + 0.68 * unit) == 0.0  # 1 - 2: clipped at 0
    assert _amplitude(one, pr, 0.0) == 1.0  # less path than the truth: clipped at 1


def test_motion_amplitude_of_a_moving_entity_is_the_ratio_of_path_lengths_even_below_a_pixel(one):
    assert _amplitude(one, 10.0, 0.5) == pytest.approx(0.05)  # 0.5 / 10: a crawl below one pixel still counts
    assert _amplitude(one, 10.0, 40.0) == pytest.approx(0.25)
    assert _amplitude(one, 10.0, 0.0) == 0.0


def _columns(pattern: list[int], frames: int, shift: int) -> np.ndarray:
    """(F, 24, 40, 3) grey video of vertical stripes repeating `pattern`, moved `shift` columns right per frame.
    Grey (equal channels) keeps the judge's grey level an exact integer."""
    row = np.array([pattern[x % len(pattern)] for x in range(40)], np.uint8) + 50
    video = np.stack([np.roll(np.tile(row, (24, 1)), k * shift, axis=1) for k in range(frames)])
    return np.repeat(video[..., None], 3, axis=-1)


def _camera(truth: np.ndarray, video: np.ndarray, hidden: tuple[int, ...] = ()) -> tuple[float, str]:
    """score_camera's value and reason with every pixel background, except frames `hidden` (all foreground)."""
    from types import SimpleNamespace

    from evaluation.grounded.scores import score_camera

    labels = np.full(truth.shape[:3], -1)
    labels[list(hidden)] = 0
    ref = SimpleNamespace(frames=truth, tracks=SimpleNamespace(labels=labels),
                          entity_masks=np.zeros((0, *truth.shape[:3]), bool))
    _, value, reason = score_camera(ref, video, SimpleNamespace(labels=np.full(truth.shape[:3], -1)))
    return value, reason


def test_camera_a_step_is_explained_when_the_truth_shift_is_within_its_margin_of_the_best():
    """A still truth, a video panning one column per frame: its own best shift is exact (error 0), and the truth's
    shift (none) leaves the stripes' mean step between neighbouring columns, which must be at most
    max(0.75, 0.1 x best) grey levels. The 32 judged columns are whole periods, so the means are exact."""
    still = _columns([0], 4, 0)
    assert _camera(still, _columns([0, 1, 2, 3, 3, 3, 3, 3], 4, 1))[0] == 1.0  # mean step 6/8 = 0.75: the tie
    assert _camera(still, _columns([0, 1, 2, 3, 4, 4, 4, 4], 4, 1))[0] == 0.0  # mean step 8/8 = 1.0: past it
    assert _camera(still, still)[0] == 1.0


def test_camera_a_step_with_no_background_passes_and_the_others_are_still_judged():
    """Frames 0-1 all foreground: steps 0 and 1 have no background in both and pass; step 2 flickers (every grey
    level + 40: no shift explains it) and fails: 2 of 3."""
    still = _columns([0, 3, 1, 4, 2], 4, 0)
    video = still.copy()
    video[3] = video[3] + 40
    value, reason = _camera(still, video, hidden=(0, 1))
    assert (value, reason) == (pytest.approx(2 / 3), "background shift matches the truth on 2/3 steps")


@pytest.mark.parametrize("offset, coherent", [(12, True), (13, False)])
def test_camera_the_best_shift_may_leave_up_to_12_grey_levels_more_than_the_truth(offset: int, coherent: bool):
    """A still truth and a still video whose every frame is `offset` grey levels brighter than the one before:
    the best shift (none) leaves exactly `offset`; at most 12 above the truth's own best (0) is coherent."""
    still = _columns([0, 3, 1, 4, 2], 4, 0)
    video = still + (np.arange(4) * offset).astype(np.uint8)[:, None, None, None]
    assert _camera(still, video)[0] == (1.0 if coherent else 0.0)


def test_grounded_scores_build_the_reference_themselves_when_none_is_given(spec_ref):
    """Without `ref` the judge renders the truth at the video's own frames, size and fps: the same scores."""
    from evaluation.grounded.scores import grounded_scores

    video = spec_ref.frames
    assert grounded_scores(SPEC, video, FPS) == grounded_scores(SPEC, video, FPS, ref=spec_ref)


# --- the remaining rules, on hand-written tracks: ties of `<=` cuts, the frame's shorter side, entities the truth
# or the video never shows, and the on-path samples between the truth's centroids


def test_to_scale_counts_a_value_within_1e_9_below_a_cut_as_reaching_it():
    from evaluation.grounded.scores import CUTS, to_scale

    for score, cut in zip((5, 4, 3, 2), CUTS["default"]):
        assert to_scale(cut - 1e-9) == score
        assert to_scale(cut - 2e-9) == score - 1


@pytest.fixture(scope="module")
def wide():
    """ONE on a frame twice as wide as tall (32 x 64): the judge's unit of length is the shorter side, 32 px."""
    return build_reference(ONE, F, 32, 64, FPS)


def test_the_unit_of_length_is_the_frames_shorter_side(wide):
    """A still prompt's entity drifting 4.8 px: over 0.1 of the height (3.2 px), so it did not stay put, though
    under 0.1 of the width (6.4 px)."""
    from evaluation.grounded.scores import score_motion_alignment

    drift = wide.tracks.centres.copy()
    drift[0, 1:, 0] += 4.8
    assert score_motion_alignment(wide, dataclasses.replace(wide.tracks, centres=drift))[:2] == (1, 0.0)


def test_a_truth_path_of_exactly_a_tenth_of_the_frame_is_moving(one):
    """Moving: amplitude is the ratio of path lengths (0.5); still, a path 0.1 of the frame longer would be
    nearly free (0.93)."""
    unit = float(min(H, W))
    assert _amplitude(one, 0.1 * unit, 0.2 * unit) == pytest.approx(0.5)


def test_binding_of_entities_the_truth_never_shows_is_zero(spec_ref):
    from evaluation.grounded.scores import _binding

    unseen = dataclasses.replace(spec_ref, visible=np.zeros_like(spec_ref.visible))
    assert _binding(unseen, spec_ref.tracks, "object") == (1, 0.0, "colour/shape binding OBJECT_1=0.00, OBJECT_2=0.00")


def _with_centres(ref, ref_centres: np.ndarray, gen_centres: np.ndarray):
    """(truth, generated tracks) of `ref` with hand-written centres."""
    truth = dataclasses.replace(ref, tracks=dataclasses.replace(ref.tracks, centres=ref_centres))
    return truth, dataclasses.replace(ref.tracks, centres=gen_centres)


def spatial(ref, ref_centres: np.ndarray, gen_centres: np.ndarray) -> tuple[int, ...]:
    """score_spatial's counts (spatial_counts) with hand-written truth and generated centres (K, F, 2)."""
    return spatial_counts(score_spatial(*_with_centres(ref, ref_centres, gen_centres))[2])


def test_spatial_a_relation_must_clear_the_margin_in_every_frame(spec_ref):
    """Entity 0 never measured in the truth (no relation, no path; listed first, so the others are still judged),
    entity 1 at the origin, entity 2 at x: more than 0.05 of the frame to either side of entity 1 is a relation,
    exactly that margin is not."""
    m = 0.05 * min(H, W)
    for x, relations in ((m, 0), (-m, 0), (np.nextafter(m, np.inf), F), (np.nextafter(-m, -np.inf), F)):
        c = np.zeros((3, F, 2))
        c[2, :, 0] = x
        ref_c = c.copy()
        ref_c[0] = np.nan
        c[0] = 30.0  # found in the video, somewhere: still not judged without a truth path
        assert spatial(spec_ref, ref_c, c) == (relations, relations, 2 * F, 2 * F), x


def test_spatial_one_common_frame_decides_a_relation_and_one_point_is_a_path(spec_ref):
    """Entity 1 measured in the truth in frame 0 only, left of entity 2 (entity 0 never measured): the relation
    holds in every frame of the video. Its path is that one point: a centroid exactly 0.12 of the frame from it is
    on the path, one just further is not."""
    r = 0.12 * min(H, W)
    for x, on in ((r, F), (np.nextafter(r, np.inf), 0)):
        ref_c = np.full((3, F, 2), np.nan)
        ref_c[1, 0] = (0.0, 0.0)
        ref_c[2] = (20.0, 0.0)
        gen = np.zeros((3, F, 2))
        gen[1] = (x, 0.0)
        gen[2] = (20.0, 0.0)
        assert spatial(spec_ref, ref_c, gen) == (F, F, on + F, 2 * F), x


def test_spatial_centroids_between_the_truths_points_are_on_its_path(wide):
    """The truth's path through (10, 10), (50, 10), (50, 26) (frames 0-2) is sampled 8 times per segment: the
    video's centroids at the points and half-way along each segment are all on it; so is the midpoint of a
    two-point path, 15 px from both points (the on-path radius is 0.12 x 32 = 3.84 px)."""
    p0, p1, p2 = (10.0, 10.0), (50.0, 10.0), (50.0, 26.0)
    ref_c = np.full((1, F, 2), np.nan)
    ref_c[0, :3] = p0, p1, p2
    gen = np.full((1, F, 2), np.nan)
    gen[0, :5] = p0, (30.0, 10.0), p1, (50.0, 18.0), p2
    assert spatial(wide, ref_c, gen) == (0, 0, 5, 5)
    ref_c[0, 1], ref_c[0, 2] = (40.0, 10.0), np.nan
    gen[0, 0], gen[0, 1:5] = (25.0, 10.0), np.nan
    assert spatial(wide, ref_c, gen) == (0, 0, 1, 1)


def test_action_completion_skips_an_entity_without_an_end_and_judges_the_rest(spec_ref):
    """Entity 0 found (its masks) but never given a centroid, in the video or in the truth: the other two reach
    their end states."""
    from evaluation.grounded.scores import score_action_completion

    t = spec_ref.tracks
    no_centre = t.centres.copy()
    no_centre[0] = np.nan
    assert score_action_completion(spec_ref, dataclasses.replace(t, centres=no_centre)) == (5, 1.0, "end state reached 1.00")
    truth = dataclasses.replace(spec_ref, tracks=dataclasses.replace(t, centres=no_centre))
    assert score_action_completion(truth, t) == (5, 1.0, "end state reached 1.00")


def _scene_style(background: np.ndarray, offset: np.ndarray | int) -> tuple[int, float, str]:
    """score_scene_style on one 16 x 16 grey frame (level 100) and a video `offset` brighter, with only the pixels
    `background` (16, 16) bool background in both. The grid's cells are 4 x 4 pixels; uniform levels keep the
    errors exact."""
    from types import SimpleNamespace

    from evaluation.grounded.scores import score_scene_style

    truth = np.full((1, 16, 16, 3), 100, np.int32)
    labels = np.where(background, -1, 0)[None]
    ref = SimpleNamespace(frames=truth, tracks=SimpleNamespace(labels=labels), entity_masks=np.zeros((0, 1, 16, 16), bool))
    video = truth + np.asarray(offset, np.int32)[None, ..., None]
    return score_scene_style(ref, video, SimpleNamespace(labels=np.full((1, 16, 16), -1)))


def test_scene_style_judges_a_cell_with_five_background_pixels_and_skips_one_with_four():
    five = np.zeros((16, 16), bool)
    five[0, :4] = five[1, 0] = True  # 5 pixels, all in cell (0, 0)
    assert _scene_style(five, 40)[:2] == (2, 40.0)
    four_then_cell = np.zeros((16, 16), bool)
    four_then_cell[0, :4] = True  # cell (0, 0): 4 pixels, 40 levels off, skipped
    four_then_cell[:4, 4:8] = True  # cell (0, 1): all background, 15 levels off, judged
    offset = np.full((16, 16), 15)
    offset[:4, :4] = 40
    assert _scene_style(four_then_cell, offset)[:2] == (4, 15.0)


@pytest.mark.parametrize("offset,score", [(10, 5), (20, 4), (35, 3), (55, 2), (56, 1)])
def test_scene_style_an_error_equal_to_a_cut_scores_that_cut(offset: int, score: int):
    assert _scene_style(np.ones((16, 16), bool), offset)[:2] == (score, float(offset))


def _along_x(*xs: float) -> np.ndarray:
    """(1, F, 2) track of one entity at x = `xs[f]` (NaN after the last given frame), y = 0."""
    c = np.full((1, F, 2), np.nan)
    c[0, : len(xs), 0], c[0, : len(xs), 1] = xs, 0.0
    return c


def test_motion_alignment_judges_a_truth_step_of_half_a_pixel_and_a_video_step_of_a_quarter_of_it(one):
    """Truth steps 10 px then 0.5 px right: the video stepping 0.5 px back on the second is judged (half a pixel is
    enough) and wrong: 0.5. A video step of exactly a quarter of the truth's (2.5 of 10) is judged by direction."""
    from evaluation.grounded.scores import score_motion_alignment

    truth, back = _along_x(0, 10, *[10.5] * (F - 2)), _along_x(0, 10, *[9.5] * (F - 2))
    assert score_motion_alignment(*_with_centres(one, truth, back))[1] == 0.5
    truth, quarter = _along_x(0, *[10] * (F - 1)), _along_x(0, *[2.5] * (F - 1))
    assert score_motion_alignment(*_with_centres(one, truth, quarter))[1] == 1.0


def test_motion_alignment_of_a_still_prompt_allows_exactly_a_tenth_of_the_frame(one):
    from evaluation.grounded.scores import score_motion_alignment

    still = _along_x(*[0.0] * F)
    for drift, value in ((0.1 * min(H, W), 1.0), (np.nextafter(0.1 * min(H, W), np.inf), 0.0)):
        assert score_motion_alignment(*_with_centres(one, still, _along_x(0.0, *[drift] * (F - 1))))[1] == value


def test_motion_alignment_of_a_truth_moving_only_in_steps_under_half_a_pixel_is_zero():
    """16 steps of 0.45 px: 7.2 px in all, over 0.1 of the frame, so the entity moves, but no step is judged."""
    from evaluation.grounded.scores import score_motion_alignment

    slow = build_reference(ONE, 17, H, W, FPS)
    c = np.zeros((1, 17, 2))
    c[0, :, 0] = 0.45 * np.arange(17)
    truth = dataclasses.replace(slow, tracks=dataclasses.replace(slow.tracks, centres=c))
    assert score_motion_alignment(truth, slow.tracks) == (1, 0.0, "direction agreement 0.00 over 0 steps")


@pytest.mark.parametrize("ref_step, gen_step, value", [
    (10.0, 3.0, 1.0),  # moving: at least 0.3 of the truth's step, the tie included
    (10.0, 1.0, 0.0),
    (0.5, 1.0, 1.0),  # a truth step of exactly half a pixel is a moving one
    (0.0, 0.5, 1.0),  # still: under 0.75 px
    (0.0, 0.75, 0.0),
    (0.0, 1.0, 0.0),
])
def test_motion_completeness_moving_and_still_steps(one, ref_step: float, gen_step: float, value: float):
    from evaluation.grounded.scores import score_motion_completeness

    steps = np.arange(F, dtype=float)
    truth, gen = _with_centres(one, _along_x(*ref_step * steps), _along_x(*gen_step * steps))
    assert score_motion_completeness(truth, gen)[1] == value


def _temporal_parts(ref, ref_centres, gen_centres, gen_areas=None, video=None) -> dict[str, float]:
    """score_temporal_consistency's parts with hand-written centres (and the video's blob areas)."""
    from evaluation.grounded.scores import score_temporal_consistency

    truth, gen = _with_centres(ref, ref_centres, gen_centres)
    if gen_areas is not None:
        truth = dataclasses.replace(truth, tracks=dataclasses.replace(truth.tracks, areas=np.zeros_like(gen_areas)))
        gen = dataclasses.replace(gen, areas=gen_areas)
    return parts_of(score_temporal_consistency(truth, ref.frames if video is None else video, gen)[2])


def test_temporal_consistency_area_changes_of_exactly_a_quarter_are_continuous(one):
    """The truth's blob keeps its area (ratio 1); the video's grows by (a + 1) x 1.25 per frame: the tie passes."""
    c = one.tracks.centres
    grow = (4.0 * 1.25 ** np.arange(F) - 1)[None]  # (1, F): (a[f + 1] + 1) / (a[f] + 1) is exactly 1.25
    assert _temporal_parts(one, c, c, grow)["area continuity"] == 1.0
    assert _temporal_parts(one, c, c, grow * 1.01)["area continuity"] == 0.0


def test_temporal_consistency_a_step_is_a_teleport_past_the_truths_step_plus_0_15_of_the_frame(one):
    jump = 0.15 * min(H, W)
    zigzag = [0.0, jump] * F
    assert _temporal_parts(one, _along_x(*[0.0] * F), _along_x(*zigzag[:F]))["no teleport"] == 1.0  # the tie
    fast = 12.0 * np.arange(F)  # the truth's own 12 px steps are more than 0.15 of the frame (9.6 px)
    assert _temporal_parts(one, _along_x(*fast), _along_x(*fast))["no teleport"] == 1.0
    # a truth never measured steps 0: a 0.15 of the frame + 0.5 px step is a teleport
    unmeasured = np.full((1, F, 2), np.nan)
    assert _temporal_parts(one, unmeasured, _along_x(*(jump + 0.5) * np.arange(F)))["no teleport"] == 0.0


def test_temporal_consistency_flicker_of_a_single_background_pixel_counts(one):
    """Everything is an entity in the video's tracks but pixel (0, 0) in frames 0 and 1, background in the truth:
    one pixel of one step, 100 grey levels brighter in frame 1. The flicker part is 0."""
    assert (one.tracks.labels[:, 0, 0] < 0).all() and not one.entity_masks[:, :, :2, :2].any()
    labels = np.zeros_like(one.tracks.labels)
    labels[:2, 0, 0] = -1
    video = one.frames.astype(np.int32)
    video[1, 0, 0] += 100
    from evaluation.grounded.scores import score_temporal_consistency

    reason = score_temporal_consistency(one, video, dataclasses.replace(one.tracks, labels=labels))[2]
    assert parts_of(reason)["no flicker"] == 0.0


def _smooth(ref, ref_centres, gen_centres) -> float:
    """score_physical's "no unexplained acceleration" part (2 decimals) with hand-written centres; the masks are
    the truth's, so the rigid part is 1."""
    from evaluation.grounded.scores import score_physical

    rigid, smooth = re.fullmatch(r"rigid (\S+), no unexplained acceleration (\S+)",
                                 score_physical(*_with_centres(ref, ref_centres, gen_centres))[2]).groups()
    assert rigid == "1.00"
    return float(smooth)


def test_physical_acceleration_limit_is_the_truths_largest_plus_0_08_of_the_frame(one):
    a = 0.08 * min(H, W)
    still = _along_x(*[0.0] * F)
    # a still truth: two accelerations of exactly 0.08 of the frame (into and out of one step) are allowed
    assert _smooth(one, still, _along_x(0, 0, a, *[a] * (F - 3))) == 1.0
    # the truth accelerates by 8 px twice: its largest (8), not the norm of all of them (11.3), is the allowance
    two = _along_x(0, 0, 8, 16, *[16] * (F - 4))
    assert _smooth(one, two, _along_x(0, 0, 14, *[14] * (F - 3))) == round(5 / 7, 2)
    # second differences of the truth (6 px per frame squared), not third ones (0)
    parabola = _along_x(0, 3, 12, 27)
    assert _smooth(one, parabola, parabola) == 1.0


def test_physical_a_truth_never_measured_allows_0_08_of_the_frame(one):
    a = 0.08 * min(H, W)
    unmeasured = np.full((1, F, 2), np.nan)
    assert _smooth(one, unmeasured, _along_x(0, 0, 1, *[1] * (F - 3))) == 1.0
    assert _smooth(one, unmeasured, _along_x(0, 0, a + 0.5, *[a + 0.5] * (F - 3))) == round(5 / 7, 2)


def test_physical_a_blob_losing_exactly_0_15_of_its_aligned_iou_is_rigid(one):
    """The truth's blob is the same 20-pixel block every frame (IoU 1); the video's loses 3 corners once:
    IoU 17 / 20 = 0.85, exactly 0.15 less, which is still rigid."""
    from evaluation.grounded.scores import score_physical
    from evaluation.grounded.segment import aligned_iou

    block = np.zeros((12, 12), bool)
    block[3:8, 3:7] = True
    cut = block.copy()
    cut[3, 3] = cut[3, 6] = cut[7, 3] = False
    assert aligned_iou(block, cut) == 1.0 - 0.15
    truth = dataclasses.replace(one, tracks=dataclasses.replace(one.tracks, masks=[[block] * F]))
    gen = dataclasses.replace(one.tracks, masks=[[block] + [cut] * (F - 1)])
    assert score_physical(truth, gen)[2].startswith("rigid 1.00,")


def test_camera_the_margin_is_a_tenth_of_the_best_error_not_more():
    """A still truth; the video pans one column per frame and brightens by 2 levels: its best shift leaves 2, the
    truth's (none) leaves 3 (stripes 0, 4, 8 x 6: |2 - step| averages 3). 1 more than the best is over
    max(0.75, 0.1 x 2): no step is explained."""
    pattern = [0, 4, 8, 8, 8, 8, 8, 8]
    video = _columns(pattern, 4, 1) + (2 * np.arange(4)).astype(np.uint8)[:, None, None, None]
    assert _camera(_columns(pattern, 4, 0), video)[0] == 0.0


def test_interaction_a_pair_never_found_does_not_stop_the_next_one(spec_ref):
    """Two meetings: OBJECT_1 with OBJECT_2 (never found in the video: 0) and OBJECT_1 with PERSON_1 (far, then
    in contact in the last frame: 1). The value is their mean."""
    from sara.data.synthetic.truth import InteractionTruth

    meets = [InteractionTruth(kind="meet", a="OBJECT_1", b=b, centre_distance_px=[], contact_frame=None)
             for b in ("OBJECT_2", "PERSON_1")]
    ref = dataclasses.replace(spec_ref, truth=spec_ref.truth.model_copy(update={"interactions": meets}))
    s = ref.truth.entities[0].radius_px + ref.truth.entities[2].radius_px
    centres = np.zeros((3, F, 2))
    centres[1] = np.nan
    centres[2, :, 0] = [10 * s] * (F - 1) + [s]
    assert score_interaction(ref, dataclasses.replace(ref.tracks, centres=centres))[1] == 0.5


def test_following_at_exactly_0_4_of_the_true_gap_off_counts(follow):
    """The truth's leader 10 px ahead in every frame; the video's 14 or 6 px ahead: 4 px off the gap, exactly 0.4
    of it, is still following; 15 px is not."""
    it = follow.truth.interactions[0]
    a, b = follow.truth.ref_ids.index(it.a), follow.truth.ref_ids.index(it.b)
    truth_c = np.zeros((2, F, 2))
    truth_c[b, :, 0] = 10.0
    truth = dataclasses.replace(follow, tracks=dataclasses.replace(follow.tracks, centres=truth_c))
    for ahead, value in ((14.0, 1.0), (6.0, 1.0), (15.0, 0.0)):
        c = np.zeros((2, F, 2))
        c[b, :, 0] = ahead
        assert score_interaction(truth, dataclasses.replace(follow.tracks, centres=c))[1] == value, ahead


def test_grounded_scores_round_values_to_four_decimals(spec_ref):
    """The truth's video with noise of +-3 levels: the background colour error has more decimals than the four kept."""
    from evaluation.grounded.reference import match_entities
    from evaluation.grounded.scores import grounded_scores, score_scene_style

    noise = np.random.default_rng(0).integers(-3, 4, spec_ref.frames.shape)
    video = np.clip(spec_ref.frames.astype(int) + noise, 0, 255).astype(np.uint8)
    raw = score_scene_style(spec_ref, video, match_entities(video, spec_ref))[1]
    assert grounded_scores(SPEC, video, FPS, ref=spec_ref)["scene_style"]["value"] == round(raw, 4) != round(raw, 5)
