"""Deterministic synthetic multi-entity clips with exact ground truth (masks, motion, flow) and MTSS captions.

A clip is fully described by a typed `SceneSpec` (spec.py: K = 1..4 entities, a background style, a camera).
`render(spec, frames, height, width, fps)` (render.py) draws it with numpy only and returns the frames, the visible
masks and the typed `Truth` record (truth.py); `spec_to_mtss(spec, truth=truth)` (caption.py) writes its caption;
`random_spec(rng, ...)` (scenes.py) draws a random scene; `ground_truth_flow(truth, h, w)` re-rasterises the
entities at any resolution. The vocabulary and conventions are in docs/data.md.
"""

from sara.data.synthetic.caption import spec_to_mtss
from sara.data.synthetic.render import background_frames, ground_truth_flow, render
from sara.data.synthetic.scenes import random_spec
from sara.data.synthetic.spec import (
    BOUNCE_TRAVEL, COLOURS, DIRECTION_PHRASE, DIRECTION_VECTOR, FOLLOW_GAP, LINEAR_TRAVEL, MEET_CONTACT_AT, PAN_TRAVEL,
    ROTATION_DEG, SCENE_TEXT, SHAPE_NOUN, SIZE_RADIUS, EntitySpec, Motion, SceneSpec,
)
from sara.data.synthetic.truth import EntityTruth, InteractionTruth, Truth

__all__ = [
    "BOUNCE_TRAVEL", "COLOURS", "DIRECTION_PHRASE", "DIRECTION_VECTOR", "FOLLOW_GAP", "LINEAR_TRAVEL", "MEET_CONTACT_AT",
    "PAN_TRAVEL", "ROTATION_DEG", "SCENE_TEXT", "SHAPE_NOUN", "SIZE_RADIUS", "EntitySpec", "EntityTruth",
    "InteractionTruth", "Motion", "SceneSpec", "Truth", "background_frames", "ground_truth_flow", "random_spec",
    "render", "spec_to_mtss",
]
