"""The 13 rubric dimensions from measured statistics of a video against its reference (table in the package
docstring), each mapped to 1-5 by documented cuts."""

from __future__ import annotations

import math

import cv2
import numpy as np

from evaluation.grounded.reference import Reference, Tracks, build_reference, match_entities
from evaluation.grounded.segment import aligned_iou
from evaluation.rubric.aggregate import per_method
from evaluation.rubric.dimensions import ALL_DIMS, count_error_score
from sara.data.synthetic.spec import DIRECTION_VECTOR, SceneSpec

WRONG_COLOUR_FACTOR = 0.3  # binding credit for the right shape in the wrong colour
CUTS: dict[str, tuple[float, float, float, float]] = {  # value >= cut -> 5, 4, 3, 2; else 1
    "default": (0.9, 0.75, 0.5, 0.25),
    "appearance": (0.8, 0.65, 0.45, 0.2),
}
SCENE_ERR_CUTS = (10.0, 20.0, 35.0, 55.0)  # mean abs RGB error <= cut -> 5, 4, 3, 2; else 1


def to_scale(value: float, cuts: tuple[float, float, float, float] = CUTS["default"]) -> int:
    """Map a [0, 1] statistic (higher is better) to 1-5: value >= cuts[0] -> 5, ... , below cuts[3] -> 1."""
    for score, cut in zip((5, 4, 3, 2), cuts):
        if value >= cut - 1e-9:
            return score
    return 1


def _unit(ref: Reference) -> float:
    return float(min(ref.frames.shape[1], ref.frames.shape[2]))


def _path(c: np.ndarray) -> float:
    """Length of a (F, 2) track over consecutive found frames."""
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1)
    return float(np.nansum(steps))


def _moving(ref: Reference, k: int) -> bool:
    return _path(ref.tracks.centres[k]) >= 0.1 * _unit(ref)


def _found(gen: Tracks) -> list[int]:
    return [k for k in range(len(gen.masks)) if any(m is not None for m in gen.masks[k])]


def score_entity_count(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    off = np.abs(gen.counts - ref.tracks.counts).sum(1)  # (F,) total count error per frame
    med = int(round(float(np.median(off))))
    expected = int(np.median(ref.tracks.counts.sum(1)))
    found = int(round(float(np.median(gen.counts.sum(1)))))
    return count_error_score(expected + med, expected), float(med), f"median count error {med} (found ~{found}, expected {expected})"


def _binding(ref: Reference, gen: Tracks, kind: str) -> tuple[int | None, float, str]:
    ks = [k for k, e in enumerate(ref.truth.entities) if e.type == kind]
    if not ks:
        return None, float("nan"), f"no {kind} in the description"
    vals = []
    for k in ks:
        per = []
        for f in np.nonzero(ref.visible[k])[0]:
            if gen.masks[k][f] is None:
                per.append(0.0)
            else:
                per.append(gen.iou[k, f] * (1.0 if gen.colour_ok[k, f] else WRONG_COLOUR_FACTOR))
        vals.append(float(np.median(per)) if per else 0.0)
    v = float(np.mean(vals))
    names = ", ".join(f"{ref.truth.entities[k].ref_id}={x:.2f}" for k, x in zip(ks, vals))
    return to_scale(v, CUTS["appearance"]), v, f"colour/shape binding {names}"


def score_spatial(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    found = _found(gen)
    rc, gc = ref.tracks.centres, gen.centres
    # (a) relations that hold in every ground-truth frame
    held, total = 0, 0
    margin = 0.05 * unit
    for i in found:
        for j in found:
            if i >= j:
                continue
            for axis in (0, 1):
                d = rc[i, :, axis] - rc[j, :, axis]
                d = d[~np.isnan(d)]
                if len(d) == 0 or not (np.all(d > margin) or np.all(d < -margin)):
                    continue
                sign = np.sign(d[0])
                g = gc[i, :, axis] - gc[j, :, axis]
                g = g[~np.isnan(g)]
                total += len(g)
                held += int(np.sum(np.sign(g) == sign))
    # (b) centroids on the ground-truth path
    on_path, n = 0, 0
    for k in found:
        path = rc[k][~np.isnan(rc[k]).any(1)]
        if len(path) == 0:
            continue
        dense = np.concatenate([np.linspace(path[i], path[i + 1], 8) for i in range(len(path) - 1)]) if len(path) > 1 else path
        for c in gc[k][~np.isnan(gc[k]).any(1)]:
            n += 1
            on_path += int(np.min(np.linalg.norm(dense - c, axis=1)) <= 0.12 * unit)
    parts = [held / total] if total else []
    parts += [on_path / n] if n else []
    if not parts:
        return 1, 0.0, "no entity found"
    v = float(np.mean(parts))
    return to_scale(v), v, f"relations held {held}/{total}, on-path {on_path}/{n}"


def score_action_completion(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    vals = []
    for k in _found(gen):
        g = gen.centres[k]
        r = ref.tracks.centres[k]
        fg = [f for f in range(len(g)) if not np.isnan(g[f]).any()]
        fr = [f for f in range(len(r)) if not np.isnan(r[f]).any()]
        if not fg or not fr:
            continue
        err = np.linalg.norm(g[fg[-1]] - r[fr[-1]]) / unit
        vals.append(float(np.clip((0.3 - err) / (0.3 - 0.06), 0.0, 1.0)))
    if not vals:
        return 1, 0.0, "no entity found"
    v = float(np.mean(vals))
    return to_scale(v), v, f"end state reached {v:.2f}"


def _both_background(ref: Reference, gen: Tracks) -> np.ndarray:
    kernel = np.ones((3, 3), np.uint8)
    gt_fg = ref.tracks.labels >= 0
    gt_fg |= np.stack([cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in ref.entity_masks.any(0)])
    return ~gt_fg & (gen.labels < 0)  # (F, H, W)


def score_scene_style(ref: Reference, video: np.ndarray, gen: Tracks) -> tuple[int, float, str]:
    bgm = _both_background(ref, gen)
    F, H, W = bgm.shape
    errs = []
    for gy in range(4):
        for gx in range(4):
            sl = (slice(None), slice(gy * H // 4, (gy + 1) * H // 4), slice(gx * W // 4, (gx + 1) * W // 4))
            m = bgm[sl]
            if m.sum() < 5:
                continue
            a = video[sl][m].astype(float).mean(0)
            b = ref.frames[sl][m].astype(float).mean(0)
            errs.append(float(np.abs(a - b).mean()))
    if not errs:
        return 1, float("inf"), "no background visible"
    err = float(np.mean(errs))
    score = 1
    for s, cut in zip((5, 4, 3, 2), SCENE_ERR_CUTS):
        if err <= cut:
            score = s
            break
    return score, err, f"background colour error {err:.1f}/255 on a 4x4 grid"


def _steps(c: np.ndarray) -> np.ndarray:
    return np.diff(c, axis=0)  # (F-1, 2), NaN where either end is missing


def score_motion_alignment(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    vals = []
    moving = [k for k in _found(gen) if _moving(ref, k)]
    for k in moving:
        rs, gs = _steps(ref.tracks.centres[k]), _steps(gen.centres[k])
        for r, g in zip(rs, gs):
            nr = np.linalg.norm(r)
            if np.isnan(nr) or nr < 0.5:
                continue
            ng = np.linalg.norm(g)
            if np.isnan(ng) or ng < 0.25 * nr:
                vals.append(0.0)
            else:
                vals.append(max(0.0, float(np.dot(r, g) / (nr * ng))))
    if not moving:  # a still prompt: nothing should travel
        paths = [_path(gen.centres[k]) for k in _found(gen)]
        if not paths:
            return 1, 0.0, "no entity found"
        v = float(np.mean([p <= 0.1 * unit for p in paths]))
        return to_scale(v), v, "still prompt: entities stay put"
    v = float(np.mean(vals)) if vals else 0.0
    return to_scale(v), v, f"direction agreement {v:.2f} over {len(vals)} steps"


def score_motion_completeness(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    agree, n = 0, 0
    ks = [k for k in _found(gen) if _moving(ref, k)] or _found(gen)
    for k in ks:
        for r, g in zip(_steps(ref.tracks.centres[k]), _steps(gen.centres[k])):
            nr, ng = np.linalg.norm(r), np.linalg.norm(g)
            if np.isnan(nr):
                continue
            n += 1
            if np.isnan(ng):
                continue
            agree += int((ng >= 0.3 * nr) if nr >= 0.5 else (ng < 0.75))
    if n == 0:
        return 1, 0.0, "no entity found"
    v = agree / n
    return to_scale(v), v, f"moving/still pattern agrees on {agree}/{n} steps"


def score_motion_amplitude(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    vals = []
    for k in _found(gen):
        pr, pg = _path(ref.tracks.centres[k]), _path(gen.centres[k])
        if _moving(ref, k):
            vals.append(min(pg / pr, pr / pg) if pg > 0 else 0.0)
        else:
            vals.append(float(np.clip(1 - (pg - pr - 0.08 * unit) / (0.3 * unit), 0.0, 1.0)))
    if not vals:
        return 1, 0.0, "no entity found"
    v = float(np.mean(vals))
    return to_scale(v), v, f"path-length agreement {v:.2f}"


def _bg_temporal_diff(video: np.ndarray, m: np.ndarray) -> float:
    both = m[1:] & m[:-1]
    if both.sum() == 0:
        return 0.0
    d = np.abs(video[1:].astype(float) - video[:-1].astype(float)).mean(-1)
    return float(d[both].mean())


def score_temporal_consistency(ref: Reference, video: np.ndarray, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    parts = []
    presence, cont, jumps = [], [], []
    for k in _found(gen):
        vis = np.nonzero(ref.visible[k])[0]
        presence.append(np.mean([gen.masks[k][f] is not None for f in vis]) if len(vis) else 1.0)
        for f in range(len(gen.masks[k]) - 1):
            if gen.masks[k][f] is None or gen.masks[k][f + 1] is None:
                continue
            ra = (ref.tracks.areas[k, f + 1] + 1) / (ref.tracks.areas[k, f] + 1)
            ga = (gen.areas[k, f + 1] + 1) / (gen.areas[k, f] + 1)
            cont.append(abs(math.log(ga / ra)) <= math.log(1.25))
            step_g = np.linalg.norm(gen.centres[k, f + 1] - gen.centres[k, f])
            step_r = np.linalg.norm(ref.tracks.centres[k, f + 1] - ref.tracks.centres[k, f])
            step_r = 0.0 if np.isnan(step_r) else step_r
            jumps.append(step_g <= step_r + 0.15 * unit)
    if not presence:
        return 1, 0.0, "no entity found"
    parts.append(float(np.mean(presence)))
    parts.append(float(np.mean(cont)) if cont else 1.0)
    parts.append(float(np.mean(jumps)) if jumps else 1.0)
    bgm = _both_background(ref, gen)
    excess = _bg_temporal_diff(video, bgm) - _bg_temporal_diff(ref.frames, bgm)
    parts.append(float(np.clip(1 - (excess - 4.0) / 16.0, 0.0, 1.0)))
    v = float(np.mean(parts))
    return to_scale(v), v, "presence {:.2f}, area continuity {:.2f}, no teleport {:.2f}, no flicker {:.2f}".format(*parts)


def score_physical(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    unit = _unit(ref)
    rigid, smooth = [], []
    for k in _found(gen):
        for f in range(len(gen.masks[k]) - 1):
            a, b = gen.masks[k][f], gen.masks[k][f + 1]
            ra, rb = ref.tracks.masks[k][f], ref.tracks.masks[k][f + 1]  # the truth's blobs, measured the same way
            if a is None or b is None or ra is None or rb is None:
                continue
            rigid.append(aligned_iou(a, b) >= aligned_iou(ra, rb) - 0.15)
        acc_r = np.linalg.norm(np.diff(ref.tracks.centres[k], 2, axis=0), axis=1)
        acc_g = np.linalg.norm(np.diff(gen.centres[k], 2, axis=0), axis=1)
        limit = (np.nanmax(acc_r) if np.isfinite(acc_r).any() else 0.0) + 0.08 * unit
        smooth.extend(bool(a <= limit) for a in acc_g if not np.isnan(a))
    if not rigid and not smooth:
        return (1, 0.0, "no entity found") if not _found(gen) else (5, 1.0, "too few frames to judge")
    r = float(np.mean(rigid)) if rigid else 1.0
    s = float(np.mean(smooth)) if smooth else 1.0
    v = (r + s) / 2
    return to_scale(v), v, f"rigid {r:.2f}, no unexplained acceleration {s:.2f}"


def shift_errors(video: np.ndarray, valid: np.ndarray, max_shift: int = 4) -> np.ndarray:
    """(F-1, 2m+1, 2m+1) mean abs grey error of frame f+1 against frame f moved by (dy, dx), over background pixels.

    Entries with too few valid pixels are inf. Index [f, dy + m, dx + m].
    """
    g = video.astype(np.float32).mean(-1)  # (F, H, W)
    F, H, W = g.shape
    m = max_shift
    out = np.full((F - 1, 2 * m + 1, 2 * m + 1), np.inf)
    for f in range(F - 1):
        a = g[f, m : H - m, m : W - m]
        va = valid[f, m : H - m, m : W - m]
        for dy in range(-m, m + 1):
            for dx in range(-m, m + 1):
                b = g[f + 1, m + dy : H - m + dy, m + dx : W - m + dx]
                w = va & valid[f + 1, m + dy : H - m + dy, m + dx : W - m + dx]
                if w.sum() >= 20:
                    out[f, dy + m, dx + m] = float(np.abs(a - b)[w].mean())
    return out


def _best_shift(err: np.ndarray) -> tuple[int, int]:
    """Index of the smallest error, preferring the smaller shift on ties (a flat background shows no motion)."""
    m = err.shape[0] // 2
    dy, dx = np.mgrid[-m : m + 1, -m : m + 1]
    penalised = err + 1e-3 * (np.abs(dy) + np.abs(dx))
    i = np.unravel_index(np.argmin(penalised), err.shape)
    return int(i[0]), int(i[1])


def score_camera(ref: Reference, video: np.ndarray, gen: Tracks) -> tuple[int, float, str]:
    """Per step, the truth's global background shift must explain the video about as well as its own best shift.

    Where the background has no texture every shift explains it equally, so camera motion is unobservable and
    the step passes; a video whose best shift still leaves a large error (flicker, no coherent motion) fails.
    """
    bgm = _both_background(ref, gen)
    eg, er = shift_errors(video, bgm), shift_errors(ref.frames, bgm)
    ok = []
    for f in range(len(eg)):
        if not np.isfinite(eg[f]).any():
            ok.append(True)  # no background visible in both: nothing to judge
            continue
        iy, ix = _best_shift(er[f])
        best = float(np.min(eg[f]))
        coherent = best <= float(np.min(er[f])) + 12.0
        explains = eg[f, iy, ix] - best <= max(0.75, 0.1 * best)
        ok.append(coherent and explains)
    v = float(np.mean(ok))
    return to_scale(v), v, f"background shift matches the truth on {int(np.sum(ok))}/{len(ok)} steps"


def score_interaction(ref: Reference, gen: Tracks) -> tuple[int, float, str]:
    truth = ref.truth
    if not truth.interactions:
        n = len(truth.entities)
        return 5, 1.0, "no multi-subject interaction" if n == 1 else "no interaction in the description"
    ids = truth.ref_ids
    vals = []
    for it in truth.interactions:
        a, b = ids.index(it.a), ids.index(it.b)
        ra, rb = truth.entities[a].radius_px, truth.entities[b].radius_px
        ga, gb = gen.centres[a], gen.centres[b]
        d = np.linalg.norm(ga - gb, axis=1)  # (F,)
        if np.isnan(d).all():
            vals.append(0.0)
            continue
        if it.kind == "meet":
            valid = np.nonzero(~np.isnan(d))[0]
            approach = float(d[valid[-1]] < d[valid[0]] - 0.1 * (ra + rb)) if len(valid) > 1 else 0.0
            contact = float(d[valid[-1]] <= 1.3 * (ra + rb))
            vals.append((approach + contact) / 2)
        else:  # follow: a follows b
            leader = truth.spec.entities[b].motion.direction
            u = np.array(DIRECTION_VECTOR[leader])
            gap_r = np.linalg.norm(ref.tracks.centres[a] - ref.tracks.centres[b], axis=1)
            behind = ((gb - ga) @ u > 0) & (np.abs(d - gap_r) <= 0.4 * gap_r)
            vals.append(float(np.nanmean(np.where(np.isnan(d), np.nan, behind))))
    v = float(np.mean(vals))
    return to_scale(v), v, f"interactions correct {v:.2f}"


def grounded_scores(spec: SceneSpec, video: np.ndarray, fps: int, ref: Reference | None = None) -> dict[str, dict]:
    """Score one video (F, H, W, 3) uint8 of a synthetic prompt: `{dim: {"score", "value", "reason"}}`.

    `score` is an int 1-5, or None for a dimension that does not apply (person_appearance without persons).
    """
    F, H, W = video.shape[:3]
    ref = ref or build_reference(spec, F, H, W, fps)
    gen = match_entities(video, ref)
    results = {
        "entity_count": score_entity_count(ref, gen),
        "person_appearance": _binding(ref, gen, "person"),
        "object_appearance": _binding(ref, gen, "object"),
        "spatial_arrangement": score_spatial(ref, gen),
        "action_completion": score_action_completion(ref, gen),
        "scene_style": score_scene_style(ref, video, gen),
        "motion_prompt_alignment": score_motion_alignment(ref, gen),
        "motion_completeness": score_motion_completeness(ref, gen),
        "motion_amplitude": score_motion_amplitude(ref, gen),
        "temporal_consistency": score_temporal_consistency(ref, video, gen),
        "physical_plausibility": score_physical(ref, gen),
        "camera_motion": score_camera(ref, video, gen),
        "interaction_correctness": score_interaction(ref, gen),
    }
    assert tuple(results) == ALL_DIMS
    return {d: {"score": s, "value": (None if v is None or not math.isfinite(v) else round(float(v), 4)), "reason": r}
            for d, (s, v, r) in results.items()}


def grounded_ta_mq(videos: list[tuple[SceneSpec, np.ndarray]], fps: int) -> dict[str, float | None]:
    """Grounded TA and MQ means over videos (spec, (F, H, W, 3) uint8) of synthetic prompts, as the rubric
    aggregates them (dimensions that do not apply are left out)."""
    scored = [{"grounded": {d: x["score"] for d, x in grounded_scores(spec, video, fps).items()}} for spec, video in videos]
    res = per_method(scored, skip_inapplicable=True)
    return {"TA": res["TA"]["mean"], "MQ": res["MQ"]["mean"]}
