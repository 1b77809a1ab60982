"""Mask store, ground-truth backend, grid resampling and the pair-budget statistic (the paper's App. A, Fig. 8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sara.data import clips
from sara.data import synthetic as S
from sara.masks.groundtruth import groundtruth_masks
from sara.masks.stats import budget_summary, summary_metrics, token_foreground
from sara.masks.store import EntityMasks, load_masks, resample_to_grid, save_masks


def _random_masks(k: int = 3, shape=(4, 8, 8), seed: int = 0) -> EntityMasks:
    rng = np.random.default_rng(seed)
    ent = rng.random((k, *shape)) < 0.3
    return EntityMasks("clip_a", [f"OBJECT_{i + 1}" for i in range(k)], ent, "groundtruth")


def test_union_and_background_are_complements() -> None:
    m = _random_masks()
    np.testing.assert_array_equal(m.union, m.entities[0] | m.entities[1] | m.entities[2])
    np.testing.assert_array_equal(m.background, ~m.union)
    np.testing.assert_array_equal(m.entity("OBJECT_2"), m.entities[1])
    with pytest.raises(KeyError, match="no mask for 'PERSON_1'"):
        m.entity("PERSON_1")


def test_save_load_round_trip(tmp_path: Path) -> None:
    m = EntityMasks("clip_a", ["PERSON_1", "OBJECT_1"], _random_masks(2).entities, "sam3",
                    np.array([0.9, 0.0], np.float32), ["red stick figure", "blue ring"])
    path = save_masks(tmp_path, m)
    assert path == tmp_path / "clip_a.npz" and not list(tmp_path.glob(".*"))
    back = load_masks(tmp_path, "clip_a")
    assert (back.ref_ids, back.backend, back.prompts) == (m.ref_ids, "sam3", m.prompts)
    np.testing.assert_array_equal(back.entities, m.entities)
    np.testing.assert_array_equal(back.scores, m.scores)
    with np.load(path) as z:  # the documented keys, consistent with each other
        assert set(z.files) == {"ref_ids", "entities", "union", "background", "scores", "prompts", "backend"}
        np.testing.assert_array_equal(z["background"], ~z["entities"].any(0))


def test_clip_without_entities_round_trips(tmp_path: Path) -> None:
    m = EntityMasks("empty", [], np.zeros((0, 4, 8, 8), bool), "sam3")
    save_masks(tmp_path, m)
    back = load_masks(tmp_path, "empty")
    assert back.entities.shape == (0, 4, 8, 8) and back.background.all()


def test_corrupted_union_is_refused(tmp_path: Path) -> None:
    m = _random_masks()
    path = save_masks(tmp_path, m)
    with np.load(path) as z:
        data = dict(z)
    data["union"] = ~data["union"]
    np.savez_compressed(path, **data)
    with pytest.raises(ValueError, match="union/background do not match"):
        load_masks(tmp_path, "clip_a")
    with pytest.raises(FileNotFoundError, match="run `sara masks` first"):
        load_masks(tmp_path, "clip_b")


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"K = len\(ref_ids\) = 2"):
        EntityMasks("c", ["OBJECT_1", "OBJECT_2"], np.zeros((3, 2, 4, 4), bool), "groundtruth")


def test_resample_to_grid_matches_block_average() -> None:
    mask = np.random.default_rng(1).random((8, 16, 16)) < 0.4
    got = resample_to_grid(mask, (4, 4, 4))
    naive = np.zeros((4, 4, 4))
    for t in range(4):
        for i in range(4):
            for j in range(4):
                naive[t, i, j] = mask[2 * t : 2 * t + 2, 4 * i : 4 * i + 4, 4 * j : 4 * j + 4].mean()
    np.testing.assert_allclose(got, naive, atol=1e-6)


def test_groundtruth_backend_orders_masks_like_the_caption(tmp_path: Path) -> None:
    sp = S.random_spec(np.random.default_rng([4]), min_entities=3, max_entities=3, height=32, width=32)
    video, masks, truth = S.render(sp, 4, 32, 32, 8)
    caption = S.spec_to_mtss(sp, frames=4, height=32, width=32, fps=8)
    ids = [e.ref_id for e in sp.entities]
    rec = clips.write_clip(tmp_path, "c0", "train", video, 8, caption, truth, masks[::-1].copy(), ids[::-1])
    m = groundtruth_masks(rec.folder(tmp_path), "c0")
    assert m.ref_ids == ids and m.backend == "groundtruth"
    np.testing.assert_array_equal(m.entities, masks)
    (rec.folder(tmp_path) / "masks.npz").unlink()
    with pytest.raises(FileNotFoundError, match="use masks.backend 'sam3' otherwise"):
        groundtruth_masks(rec.folder(tmp_path), "c0")


def test_budget_of_one_clip_is_the_closed_form() -> None:
    fg = np.zeros((4, 16), bool)
    fg[:, :6] = True  # p = 6/16 in every frame
    s = budget_summary([fg], ["c"])
    p = 6 / 16
    assert s["p_fg"] == {"c": p}
    expected = {"fg_fg": p * p, "fg_bg": 2 * p * (1 - p), "bg_bg": (1 - p) ** 2}
    for cat, v in expected.items():
        assert s["shares"]["none"][cat] == pytest.approx(v)
        assert s["closed_form_at_mean"][cat] == pytest.approx(v)
    assert s["coverage"]["or"] == pytest.approx({"fg_fg": p * p, "fg_bg": 2 * p * (1 - p), "bg_bg": 0.0})
    assert s["shares"]["and"] == pytest.approx({"fg_fg": 1.0, "fg_bg": 0.0, "bg_bg": 0.0})
    assert s["shares"]["xor"] == pytest.approx({"fg_fg": 0.0, "fg_bg": 1.0, "bg_bg": 0.0})


def test_budget_pools_clips_so_jensen_shows() -> None:
    ps = [0.125, 0.5, 0.875]
    fgs = []
    for p in ps:
        fg = np.zeros((2, 8), bool)
        fg[:, : int(p * 8)] = True
        fgs.append(fg)
    s = budget_summary(fgs, ["a", "b", "c"])
    assert s["shares"]["none"]["fg_fg"] == pytest.approx(np.mean(np.square(ps)))  # mean of p^2 ...
    assert s["shares"]["none"]["fg_fg"] > s["closed_form_at_mean"]["fg_fg"]  # ... exceeds (mean p)^2
    assert s["p_fg_mean"] == pytest.approx(0.5)
    assert sum(s["p_fg_histogram"]["fraction"]) == pytest.approx(1.0)
    metrics = summary_metrics(s)
    assert metrics["share.none.fg_fg"] == s["shares"]["none"]["fg_fg"]
    assert metrics["coverage.or.bg_bg"] == 0.0


def test_token_foreground_needs_more_than_half_a_cell() -> None:
    ent = np.zeros((1, 4, 8, 8), bool)
    ent[0, :, :4, :4] = True  # exactly one 4x4 cell of a 2x2 grid per frame
    ent[0, :, 4:, 4:6] = True  # half of another cell: not FG
    fg = token_foreground(EntityMasks("c", ["OBJECT_1"], ent, "groundtruth"), (2, 2, 2))
    np.testing.assert_array_equal(fg, [[True, False, False, False]] * 2)
