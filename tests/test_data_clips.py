"""Clip folders and mp4 I/O: round trips, index and splits, atomic writes, clear refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sara.data import clips, video_io
from sara.data import synthetic as S


def _clip(seed: int = 1, frames: int = 6, size: int = 32):
    sp = S.random_spec(np.random.default_rng([seed]), height=size, width=size)
    video, masks, truth = S.render(sp, frames, size, size, 8)
    caption = S.spec_to_mtss(sp, frames=frames, height=size, width=size, fps=8)
    return sp, video, masks, truth, caption


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(float) - b.astype(float)) ** 2)))


@pytest.mark.parametrize(("pixel_format", "min_psnr"), [("yuv444p", 36.0), ("yuv420p", 24.0)])
def test_video_round_trip_quality(tmp_path: Path, pixel_format: str, min_psnr: float) -> None:
    _, video, _, _, _ = _clip(seed=1, frames=8, size=64)  # a busy grid-floor clip with textures
    video_io.write_video(tmp_path / "v.mp4", video, fps=8, pixel_format=pixel_format)
    back, fps = video_io.read_video(tmp_path / "v.mp4")
    assert back.shape == video.shape and back.dtype == np.uint8 and fps == 8.0
    assert _psnr(back, video) > min_psnr  # 4:2:0 halves chroma, so saturated edges cost ~12 dB
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed away


def test_video_writer_is_byte_stable(tmp_path: Path) -> None:
    _, video, _, _, _ = _clip()
    video_io.write_video(tmp_path / "a.mp4", video, fps=8)
    video_io.write_video(tmp_path / "b.mp4", video, fps=8)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_odd_sizes_and_wrong_dtypes_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs even height and width, got 33x32"):
        video_io.write_video(tmp_path / "v.mp4", np.zeros((2, 33, 32, 3), np.uint8), fps=8)
    video_io.write_video(tmp_path / "odd.mp4", np.zeros((2, 33, 32, 3), np.uint8), fps=8, pixel_format="yuv444p")
    assert video_io.read_video(tmp_path / "odd.mp4")[0].shape == (2, 33, 32, 3)  # 4:4:4 has no parity rule
    with pytest.raises(ValueError, match="pixel_format must be one of"):
        video_io.write_video(tmp_path / "v.mp4", np.zeros((2, 32, 32, 3), np.uint8), fps=8, pixel_format="rgb24")
    with pytest.raises(ValueError, match=r"frames must be \(F, H, W, 3\) uint8"):
        video_io.write_video(tmp_path / "v.mp4", np.zeros((2, 32, 32, 3), np.float32), fps=8)
    with pytest.raises(FileNotFoundError, match="video not found"):
        video_io.read_video(tmp_path / "missing.mp4")


def test_write_load_round_trip_and_index(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    records = []
    for i, split in enumerate(["train", "train", "heldout"]):
        sp, video, masks, truth, caption = _clip(seed=i)
        ids = [e.ref_id for e in sp.entities]
        records.append(clips.write_clip(root, f"{split}_{i:04d}", split, video, 8, caption, truth, masks, ids))
    clips.write_index(root, records, "synthetic", "embedded")
    assert [r.clip_id for r in clips.list_clips(root, "train")] == ["train_0000", "train_0001"]
    assert [r.clip_id for r in clips.list_clips(root, "heldout")] == ["heldout_0002"]
    index = json.loads((root / "index.json").read_text())
    assert index["source"] == "synthetic" and index["scale"] == "embedded"
    assert index["clips"][2] == {"clip_id": "heldout_0002", "split": "heldout",
                                 "num_entities": records[2].num_entities, "path": "heldout_0002"}

    sp, video, masks, truth, caption = _clip(seed=2)
    c = clips.load_clip(records[2].folder(root))
    assert (c.clip_id, c.split, c.fps) == ("heldout_0002", "heldout", 8.0)
    assert c.caption == caption and c.truth == truth and c.num_entities == len(sp.entities)
    np.testing.assert_array_equal(c.masks, masks)
    assert c.mask_ref_ids == [e.ref_id for e in sp.entities]
    assert c.frames.shape == video.shape
    meta = json.loads((records[2].folder(root) / "meta.json").read_text())
    assert meta["ref_ids"] == c.mask_ref_ids and meta["frames"] == 6 and meta["source"] == "synthetic"


def test_failed_write_leaves_no_partial_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sp, video, masks, truth, caption = _clip()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(clips, "write_video", broken)  # the writer clips.py calls
    with pytest.raises(OSError, match="disk full"):
        clips.write_clip(tmp_path, "train_0000", "train", video, 8, caption, truth, masks,
                         [e.ref_id for e in sp.entities])
    assert list(tmp_path.iterdir()) == []


def test_bad_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    sp, video, masks, truth, caption = _clip()
    ids = [e.ref_id for e in sp.entities]
    with pytest.raises(ValueError, match="split must be one of"):
        clips.write_clip(tmp_path, "x", "test", video, 8, caption)
    with pytest.raises(ValueError, match=r"^clip 'x': the masks given to write_clip holds masks bool"):
        clips.write_clip(tmp_path, "x", "train", video, 8, caption, truth, masks[:, :-1], ids)
    with pytest.raises(ValueError, match="do not match the caption's entities"):
        clips.write_clip(tmp_path, "x", "train", video, 8, caption, truth, masks, ["OBJECT_9"] * len(ids))
    with pytest.raises(FileNotFoundError, match="run `sara data`"):
        clips.list_clips(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no meta.json"):
        clips.load_clip(tmp_path)


def test_import_real_clip_folder(tmp_path: Path) -> None:
    sp, video, masks, truth, caption = _clip()
    src = tmp_path / "real" / "walk_01"
    src.mkdir(parents=True)
    video_io.write_video(src / "video.mp4", video, 8)
    (src / "caption.json").write_text(json.dumps(clips.caption_to_dict(caption)))
    rec = clips.import_clip(src, tmp_path / "out", "walk_01", "heldout")
    c = clips.load_clip(rec.folder(tmp_path / "out"))
    assert c.caption == caption and c.truth is None and c.masks is None and c.split == "heldout"
    (src / "caption.json").unlink()
    with pytest.raises(FileNotFoundError, match="lacks caption.json"):
        clips.import_clip(src, tmp_path / "out", "walk_01", "heldout")
