"""The two 18-prompt MTSS sets: valid, unique ids, synthetic ones render their own ground truth."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from sara.data import mtss
from sara.data import synthetic as S
from sara.data.prompts import load_prompt_set, prompt_set_raw


@pytest.mark.parametrize("name", ["synthetic", "realworld"])
def test_each_set_has_18_valid_prompts_with_unique_ids(name: str) -> None:
    items = load_prompt_set(name)
    assert len(items) == 18
    assert len({i.id for i in items}) == 18
    for item in items:
        refs = mtss.foreground_references(item.caption)
        assert refs, item.id
        for r in refs:
            assert 2 <= len(mtss.noun_phrase(r).split()) <= 5
        assert item.focus and item.title


def test_synthetic_captions_are_the_renderers_captions_of_their_specs() -> None:
    render = prompt_set_raw("synthetic")["render"]
    for item in load_prompt_set("synthetic"):
        assert item.spec is not None
        assert item.caption == S.spec_to_mtss(item.spec, **render), item.id
        frames, masks, truth = S.render(item.spec, render["frames"], render["height"], render["width"], render["fps"])
        assert masks.shape[0] == mtss.entity_count(item.caption)
        assert all(np.any(m) for m in masks), item.id  # every entity is visible somewhere
        assert frames.shape == (render["frames"], render["height"], render["width"], 3)


def test_synthetic_set_covers_counts_persons_interactions_and_camera() -> None:
    specs = [i.spec for i in load_prompt_set("synthetic")]
    assert {len(s.entities) for s in specs} == {1, 2, 3, 4}
    kinds = {e.motion.kind for s in specs for e in s.entities}
    assert kinds == {"static", "linear", "bounce", "rotate", "meet", "follow"}
    assert any(e.shape == "figure" for s in specs for e in s.entities)
    assert {s.camera for s in specs} == {"static", "pan_left", "pan_right"}


def test_realworld_set_is_multi_subject() -> None:
    items = load_prompt_set("realworld")
    assert all(mtss.entity_count(i.caption) >= 2 for i in items)
    assert sum(mtss.count_persons(i.caption) >= 2 for i in items) >= 9
    assert all(i.spec is None for i in items)
    moves = {s.camera.movement for i in items for s in i.caption.shots}
    assert len(moves - {"static"}) >= 5  # pans, tilts, push-ins, tracking, orbit


def test_unknown_set_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown prompt set 'vbench'"):
        load_prompt_set("vbench")


def test_prompt_json_ships_as_package_data() -> None:
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert pyproject["tool"]["setuptools"]["package-data"]["sara.data.prompts"] == ["*.json"]
