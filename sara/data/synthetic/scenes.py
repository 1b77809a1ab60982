"""Random scenes: distinct colours the background does not hide, starts and paths kept inside the frame."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sara.data.synthetic.spec import (
    COLOURS, DIRECTION_VECTOR, FOLLOW_GAP, LINEAR_TRAVEL, SCENE_TEXT, SIZE_RADIUS, SceneSpec,
)
from sara.data.synthetic.render import _unit_scale



def _feasible_start(
    rng: np.random.Generator, u: np.ndarray, back: float, fwd: float, r: float, height: int, width: int
) -> tuple[float, float] | None:
    """A start (pixels) so that the path from start - u*back to start + u*fwd keeps the centre >= r from the edges."""
    lo = [r + max(0.0, -u[i] * fwd, u[i] * back) for i in range(2)]
    hi = [size - r - max(0.0, u[i] * fwd, -u[i] * back) for i, size in enumerate((width, height))]
    if lo[0] > hi[0] or lo[1] > hi[1]:
        return None
    return float(rng.uniform(lo[0], hi[0])), float(rng.uniform(lo[1], hi[1]))


def _sample_motion(
    rng: np.random.Generator, kind: str, r: float, height: int, width: int, unit: float
) -> tuple[dict[str, Any], tuple[float, float]]:
    """One candidate (motion, start in pixels) of the given kind whose path keeps the centre >= r from the edges."""
    motion: dict[str, Any] = {"kind": kind, "speed": str(rng.choice(["slow", "fast"]))}
    start = None
    if kind == "linear":
        for d in [str(d) for d in rng.permutation(list(DIRECTION_VECTOR))]:
            start = _feasible_start(rng, np.array(DIRECTION_VECTOR[d]), 0.0, LINEAR_TRAVEL[motion["speed"]] * unit,
                                    r, height, width)
            if start is not None:
                motion["direction"] = d
                break
        if start is None:
            motion = {"kind": "static"}
    elif kind == "bounce":
        motion["direction"] = str(rng.choice(list(DIRECTION_VECTOR)))
    elif kind == "rotate":
        motion["clockwise"] = bool(rng.random() < 0.5)
    if motion["kind"] == "static":
        motion.pop("speed", None)
    if start is None:
        start = (float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r)))
    return motion, start


def random_spec(
    rng: np.random.Generator,
    *,
    min_entities: int = 1,
    max_entities: int = 4,
    interaction_prob: float = 0.3,
    person_prob: float = 0.2,
    pan_prob: float = 0.15,
    height: int = 64,
    width: int = 64,
) -> SceneSpec:
    """A random scene: distinct colours that the style does not hide, starts and paths kept inside the frame."""
    if not 1 <= min_entities <= max_entities <= 4:
        raise ValueError(f"need 1 <= min_entities <= max_entities <= 4, got {min_entities}, {max_entities}")
    style = str(rng.choice(list(SCENE_TEXT)))
    k = int(rng.integers(min_entities, max_entities + 1))
    palette = [c for c in COLOURS if c not in SCENE_TEXT[style][2]]
    colours = [str(c) for c in rng.choice(palette, size=k, replace=False)]
    unit = _unit_scale(height, width)
    margin = 0.6  # the centre stays at least 0.6 radius from an edge: entities may be partly cut off, never lost

    entities: list[dict[str, Any]] = []
    placed: list[tuple[tuple[float, float], float]] = []  # (start pixels, radius) of entities so far
    for i in range(k):
        is_person = rng.random() < person_prob
        shape = "figure" if is_person else str(rng.choice(["circle", "square", "triangle", "star", "ring"]))
        size = str(rng.choice(["small", "medium", "large"], p=[0.3, 0.4, 0.3]))
        texture = "solid" if is_person else str(rng.choice(["solid", "striped", "dotted"], p=[0.5, 0.25, 0.25]))
        kinds = ["static", "linear", "bounce"] + ([] if is_person else ["rotate"])
        kind = str(rng.choice(kinds))
        if kind == "rotate" and texture == "solid" and shape in ("circle", "ring"):
            texture = "striped"  # a plain disc turning in place would look static
        r_full = SIZE_RADIUS[size] * unit
        # best of several candidate starts: the one with the most clearance from the entities placed so far
        best: tuple[float, dict[str, Any], tuple[float, float]] | None = None
        for _ in range(12):
            motion, start = _sample_motion(rng, kind, r_full * margin, height, width, unit)
            clearance = min(
                (math.hypot(start[0] - p[0], start[1] - p[1]) - r_full - pr for p, pr in placed), default=0.0
            )
            if best is None or clearance > best[0]:
                best = (clearance, motion, start)
        assert best is not None
        _, motion, start = best
        placed.append((start, r_full))
        prefix = "PERSON" if is_person else "OBJECT"
        n = sum(e["ref_id"].startswith(prefix) for e in entities) + 1
        entities.append({"ref_id": f"{prefix}_{n}", "shape": shape, "colour": colours[i], "size": size,
                         "texture": texture, "start": [start[0] / width, start[1] / height],
                         "angle": float(rng.choice([0.0, 15.0, 30.0])) if shape != "figure" else 0.0,
                         "motion": motion})

    if k >= 2 and rng.random() < interaction_prob:
        a, b = (int(i) for i in rng.choice(k, size=2, replace=False))
        ea, eb = entities[a], entities[b]
        for e in (ea, eb):  # large partners would already touch at their starts: keep the approach visible
            e["size"] = "medium" if e["size"] == "large" else e["size"]
        ra = SIZE_RADIUS[ea["size"]] * unit
        rb = SIZE_RADIUS[eb["size"]] * unit
        if rng.random() < 0.5:  # meet: a on the left, b on the right, at similar heights
            ya = rng.uniform(0.3, 0.7)
            ea["start"] = [float(rng.uniform(0.12, 0.25)), float(ya)]
            eb["start"] = [float(rng.uniform(0.75, 0.88)), float(np.clip(ya + rng.uniform(-0.15, 0.15), 0.2, 0.8))]
            ea["motion"] = {"kind": "meet", "partner": eb["ref_id"]}
            eb["motion"] = {"kind": "meet", "partner": ea["ref_id"]}
        else:  # follow: b trails a, which moves linearly
            gap = FOLLOW_GAP * (ra + rb)
            for d in [str(d) for d in rng.permutation(list(DIRECTION_VECTOR))]:
                speed = str(rng.choice(["slow", "fast"]))
                start = _feasible_start(rng, np.array(DIRECTION_VECTOR[d]), gap, LINEAR_TRAVEL[speed] * unit,
                                        max(ra, rb) * margin, height, width)
                if start is not None:
                    ea["start"] = [start[0] / width, start[1] / height]
                    ea["motion"] = {"kind": "linear", "direction": d, "speed": speed}
                    eb["start"] = None
                    eb["motion"] = {"kind": "follow", "partner": ea["ref_id"]}
                    break
    camera = "static"
    if rng.random() < pan_prob:
        camera = str(rng.choice(["pan_left", "pan_right"]))
    return SceneSpec.model_validate({"style": style, "camera": camera, "seed": int(rng.integers(0, 2**31 - 1)),
                                     "entities": entities})
