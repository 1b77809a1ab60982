"""Scene specs shared by the grounded judge's tests (tests/test_grounded_judge.py, tests/test_grounded_boundaries.py)."""

from __future__ import annotations

from sara.data import synthetic as S

F, H, W, FPS = 9, 64, 64, 8

SPEC = S.SceneSpec.model_validate({"style": "studio", "camera": "static", "entities": [
    {"ref_id": "OBJECT_1", "shape": "circle", "colour": "red", "start": [0.2, 0.3], "motion": {"kind": "linear", "direction": "right", "speed": "fast"}},
    {"ref_id": "OBJECT_2", "shape": "square", "colour": "blue", "start": [0.78, 0.45], "motion": {"kind": "linear", "direction": "down", "speed": "slow"}},
    {"ref_id": "PERSON_1", "shape": "figure", "colour": "green", "start": [0.25, 0.72], "motion": {"kind": "static"}},
]})
MEET = S.SceneSpec.model_validate({"style": "sky", "camera": "static", "entities": [
    {"ref_id": "OBJECT_1", "shape": "triangle", "colour": "yellow", "size": "small", "start": [0.15, 0.5], "motion": {"kind": "meet", "partner": "OBJECT_2"}},
    {"ref_id": "OBJECT_2", "shape": "star", "colour": "red", "size": "small", "start": [0.85, 0.55], "motion": {"kind": "meet", "partner": "OBJECT_1"}},
]})


FOLLOW = S.SceneSpec.model_validate({"style": "grid_floor", "camera": "static", "entities": [
    {"ref_id": "OBJECT_1", "shape": "square", "colour": "blue", "start": [0.55, 0.5], "motion": {"kind": "linear", "direction": "right", "speed": "slow"}},
    {"ref_id": "PERSON_1", "shape": "figure", "colour": "green", "motion": {"kind": "follow", "partner": "OBJECT_1"}},
]})
