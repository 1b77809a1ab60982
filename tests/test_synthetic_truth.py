"""One typed truth record, drawn once: the renderer's `Truth` is what every consumer reads, the data stage renders
each clip a single time and summarises from memory, and the rubric path carries `SceneSpec` objects."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sara.config import params_from_dict
from sara.data import clips
from sara.data import synthetic as S
from sara.sample import load_prompts
from sara.stages import data as stage

ROOT = Path(__file__).resolve().parents[1]


def _params(out: Path, **data):
    return params_from_dict({"data": {"out_dir": str(out), "frames": 4, "height": 32, "width": 32,
                                      "n_train": 3, "n_heldout": 1, "interaction_prob": 1.0, "pan_prob": 1.0, **data}})


def test_render_returns_a_typed_truth_that_round_trips_through_truth_json(tmp_path: Path):
    spec = S.random_spec(np.random.default_rng(3), min_entities=2, interaction_prob=1.0, pan_prob=1.0)
    frames, masks, truth = S.render(spec, 6, 32, 32, 8)
    assert isinstance(truth, S.Truth) and truth.spec == spec
    assert truth.ref_ids == [e.ref_id for e in spec.entities]
    assert truth.entity(spec.entities[1].ref_id).visible_area_px == masks[1].reshape(6, -1).sum(1).tolist()
    caption = S.spec_to_mtss(spec, truth=truth)
    clips.write_clip(tmp_path, "c", "train", frames, 8, caption, truth, masks, truth.ref_ids)
    back = clips.load_clip(tmp_path / "c").truth
    assert isinstance(back, S.Truth) and back == truth


def test_a_malformed_truth_json_is_one_line_naming_the_file_and_field(tmp_path: Path):
    spec = S.random_spec(np.random.default_rng(4))
    frames, masks, truth = S.render(spec, 4, 32, 32, 8)
    clips.write_clip(tmp_path, "c", "train", frames, 8, S.spec_to_mtss(spec, truth=truth), truth, masks, truth.ref_ids)
    path = tmp_path / "c" / "truth.json"
    raw = json.loads(path.read_text())
    raw["entities"][0]["radius_px"] = "wide"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError) as err:
        clips.load_clip(tmp_path / "c")
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg and "entities.0.radius_px" in msg


def test_spec_to_mtss_refuses_the_truth_of_another_spec():
    a, b = (S.random_spec(np.random.default_rng(i)) for i in (5, 6))
    with pytest.raises(ValueError, match="another spec"):
        S.spec_to_mtss(a, truth=S.render(b, 4, 32, 32, 8)[2])


def test_the_data_stage_renders_each_clip_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tracking):
    calls = []
    real = S.render

    def counting(spec, *a, **k):
        calls.append(spec)
        return real(spec, *a, **k)

    # every module that could draw a clip on the data stage's path
    import sara.data.synthetic.caption as caption_mod

    monkeypatch.setattr(S, "render", counting)
    monkeypatch.setattr(caption_mod, "render", counting)
    stage.run(_params(tmp_path / "clips"))
    assert len(calls) == 4  # n_train + n_heldout, not twice that


def test_the_data_summary_comes_from_the_rendered_truths_not_a_re_read(tmp_path: Path, tracking, monkeypatch):
    out = tmp_path / "clips"
    read = []
    original = Path.read_text

    def spy(self, *a, **k):
        if self.name == "truth.json":
            read.append(self)
        return original(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", spy)
    stage.run(_params(out))
    assert read == []  # the stage never reads back the truth.json it just wrote
    monkeypatch.setattr(Path, "read_text", original)
    truths = [clips.load_clip(r.folder(out)).truth for r in clips.list_clips(out)]
    metrics = stage.summarise(clips.list_clips(out), truths)
    assert metrics["interactions"] == sum(len(t.interactions) for t in truths) > 0
    assert metrics["camera_pans"] == 4.0 and metrics["persons"] == sum(e.type == "person" for t in truths for e in t.entities)


def test_the_rubric_path_carries_typed_scene_specs():
    """Each synthetic prompt carries the scene its caption describes: the caption is the spec's MTSS caption at the
    file's render settings, and the specs are the prompts' own (no two prompts share one)."""
    from sara.data.prompts import prompt_set_raw

    items = load_prompts("synthetic")
    render = prompt_set_raw("synthetic")["render"]
    assert items and all(isinstance(it.spec, S.SceneSpec) for it in items)
    for it in items:
        assert S.spec_to_mtss(it.spec, **render) == it.caption, it.id
    assert len({it.spec.model_dump_json() for it in items}) == len(items)
    assert all(it.spec is None for it in load_prompts("realworld"))


@pytest.mark.parametrize("folder", ["sara", "evaluation", "flows"])
def test_no_source_file_is_a_too_big_room(folder: str):
    """One job per module: the 807-line renderer and the 680-line judge were split along their seams."""
    big = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
           if (n := len(p.read_text().splitlines())) > 600}
    assert not big, big
