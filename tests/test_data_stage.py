"""The data stage: synthetic clips are reproducible per clip; a folder of real clips is validated and indexed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sara.config import params_from_dict
from sara.data import clips
from sara.stages import data as stage


pytestmark = pytest.mark.usefixtures("tracking")  # every stage run logs to the test's own MLflow database


def _params(out: Path, **data):
    return params_from_dict({"data": {"out_dir": str(out), "frames": 4, "height": 32, "width": 32,
                                      "n_train": 2, "n_heldout": 1, **data}})


def test_synthetic_clips_are_reproducible_and_stable_when_more_are_added(tmp_path: Path) -> None:
    a = stage.run(_params(tmp_path / "a"))
    b = stage.run(_params(tmp_path / "b", n_train=3))
    ids_a = [r.clip_id for r in clips.list_clips(a)]
    assert ids_a == ["train_0000", "train_0001", "heldout_0000"]
    assert [r.clip_id for r in clips.list_clips(b, "train")] == ["train_0000", "train_0001", "train_0002"]
    for cid in ids_a:  # clip i is seeded by (seed, split, i): adding clips changes none of the earlier ones
        for name in ("video.mp4", "caption.json", "truth.json", "masks.npz"):
            assert (a / cid / name).read_bytes() == (b / cid / name).read_bytes(), (cid, name)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary build folder was renamed into place


def test_folder_source_keeps_given_splits(tmp_path: Path) -> None:
    src = stage.run(_params(tmp_path / "synthetic"))
    real = tmp_path / "real"
    for rec in clips.list_clips(src):
        shutil.copytree(src / rec.path, real / f"walk_{rec.clip_id}")
        (real / f"walk_{rec.clip_id}" / "meta.json").unlink()  # real clips need only video + caption
    rows = [{"clip_id": f"walk_{r.clip_id}", "split": r.split} for r in clips.list_clips(src)]
    (real / "index.json").write_text(json.dumps({"clips": rows}))
    out = stage.run(_params(tmp_path / "imported", source="folder", folder=str(real)))
    got = {r.clip_id: r.split for r in clips.list_clips(out)}
    assert got == {row["clip_id"]: row["split"] for row in rows}
    index = json.loads((out / "index.json").read_text())
    assert index["source"] == "folder"
    loaded = clips.load_clip(out / "walk_train_0000")
    assert loaded.masks is not None  # shipped ground-truth masks are kept for the groundtruth backend


def test_folder_source_refuses_a_clip_without_caption(tmp_path: Path) -> None:
    (tmp_path / "real" / "clip_a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="lacks video.mp4"):
        stage.run(_params(tmp_path / "out", source="folder", folder=str(tmp_path / "real")))
    assert not (tmp_path / "out").exists()
