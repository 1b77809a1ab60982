"""Clip folders on disk: one folder per clip plus `index.json` (format in docs/data.md).

```
<root>/index.json            {"clips": [ClipRecord...], "source", "scale"}
<root>/<clip_id>/video.mp4   H.264 RGB frames
<root>/<clip_id>/meta.json   clip_id, split, fps, frames, height, width, num_entities, ref_ids, source
<root>/<clip_id>/caption.json MTSS caption (sara.data.mtss)
<root>/<clip_id>/truth.json  renderer ground truth, a `Truth` record (synthetic clips only)
<root>/<clip_id>/masks.npz   ground-truth masks: ref_ids (K,) str, entities (K, F, H, W) bool (synthetic only)
```
A clip folder is written under a temporary name and renamed into place, so a crash never leaves a half clip.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ValidationError

from sara.data.mtss import MTSSCaption, caption_to_dict, entity_count, foreground_references, load_caption
from sara.data.synthetic.truth import Truth
from sara.data.video_io import read_video, write_video
from sara.errors import BadDataError

SPLITS: tuple[str, str] = ("train", "heldout")
INDEX = "index.json"


@dataclass(frozen=True)
class ClipRecord:
    """One row of index.json; `path` is relative to the clips root."""

    clip_id: str
    split: str
    num_entities: int
    path: str

    def folder(self, root: str | Path) -> Path:
        return Path(root) / self.path


@dataclass
class Clip:
    clip_id: str
    split: str
    frames: np.ndarray  # (F, H, W, 3) uint8
    fps: float
    caption: MTSSCaption
    truth: Truth | None  # renderer ground truth (synthetic only)
    masks: np.ndarray | None  # (K, F, H, W) bool ground-truth masks, rows in `mask_ref_ids` order
    mask_ref_ids: list[str] | None
    path: Path

    @property
    def num_entities(self) -> int:
        return entity_count(self.caption)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def save_mask_array(path: Path, ref_ids: list[str], entities: np.ndarray) -> None:
    np.savez_compressed(path, ref_ids=np.array(ref_ids, dtype=str), entities=entities.astype(bool))


def check_mask_shape(entities: np.ndarray, k: int, video_shape: tuple[int, ...], clip_id: str, path: str | Path) -> None:
    """Refuse masks that are not bool (K, F, H, W) with the clip video's (F, H, W), naming the clip and the file."""
    want = (k, *video_shape[:3])
    if tuple(entities.shape) != want or entities.dtype != bool:
        raise BadDataError(f"clip {clip_id!r}: {path} holds masks {entities.dtype} {tuple(entities.shape)}, the clip "
                           f"needs bool {want} (K entities, and the F, H, W of its video)")


def _check_masks(ref_ids: list[str], entities: np.ndarray, frames: np.ndarray, caption: MTSSCaption,
                 clip_id: str = "?", path: str | Path = "masks") -> None:
    check_mask_shape(entities, len(ref_ids), frames.shape, clip_id, path)
    expected = [r.ref_id for r in foreground_references(caption)]
    if sorted(ref_ids) != sorted(expected):
        raise BadDataError(f"clip {clip_id!r}: {path} has mask ref_ids {ref_ids}, which do not match the caption's "
                           f"entities {expected}")


def _atomic_clip_dir(root: Path, clip_id: str):
    """Context-free helper: returns (tmp dir, final dir); the caller fills tmp then calls _commit."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{clip_id}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp, root / clip_id


def _commit(tmp: Path, final: Path) -> None:
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def write_clip(
    root: str | Path,
    clip_id: str,
    split: str,
    frames: np.ndarray,
    fps: int,
    caption: MTSSCaption,
    truth: Truth | None = None,
    masks: np.ndarray | None = None,
    mask_ref_ids: list[str] | None = None,
    source: str = "synthetic",
    pixel_format: str = "yuv444p",
) -> ClipRecord:
    """Write one clip folder atomically (temp dir, then rename) and return its index record.

    `pixel_format` of the mp4 (sara.data.video_io): yuv444p keeps the synthetic colours and edges sharp.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if (masks is None) != (mask_ref_ids is None):
        raise ValueError("masks and mask_ref_ids go together")
    if masks is not None:
        _check_masks(mask_ref_ids, masks, frames, caption, clip_id, "the masks given to write_clip")
    root = Path(root)
    tmp, final = _atomic_clip_dir(root, clip_id)
    try:
        write_video(tmp / "video.mp4", frames, fps, pixel_format)
        _write_json(tmp / "caption.json", caption_to_dict(caption))
        if truth is not None:
            _write_json(tmp / "truth.json", truth.model_dump(mode="json"))
        if masks is not None:
            save_mask_array(tmp / "masks.npz", mask_ref_ids, masks)
        meta = {
            "clip_id": clip_id, "split": split, "fps": fps, "frames": int(frames.shape[0]),
            "height": int(frames.shape[1]), "width": int(frames.shape[2]), "num_entities": entity_count(caption),
            "ref_ids": [r.ref_id for r in foreground_references(caption)], "source": source,
        }
        _write_json(tmp / "meta.json", meta)
        _commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipRecord(clip_id, split, entity_count(caption), clip_id)


def import_clip(src: str | Path, root: str | Path, clip_id: str, split: str) -> ClipRecord:
    """Validate a real clip folder (video.mp4 + caption.json [+ masks.npz]) and copy it into `root` atomically."""
    src = Path(src)
    for name in ("video.mp4", "caption.json"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"clip folder {src} lacks {name} (a real clip needs video.mp4 and caption.json)")
    caption = load_caption(src / "caption.json")
    frames, fps = read_video(src / "video.mp4", clip_id)
    if (src / "masks.npz").is_file():
        ids, entities = load_mask_array(src / "masks.npz")
        _check_masks(ids, entities, frames, caption, clip_id, src / "masks.npz")
    tmp, final = _atomic_clip_dir(Path(root), clip_id)
    try:
        for name in ("video.mp4", "caption.json", "masks.npz", "truth.json"):
            if (src / name).is_file():
                shutil.copy2(src / name, tmp / name)
        _write_json(tmp / "meta.json", {
            "clip_id": clip_id, "split": split, "fps": fps, "frames": int(frames.shape[0]),
            "height": int(frames.shape[1]), "width": int(frames.shape[2]), "num_entities": entity_count(caption),
            "ref_ids": [r.ref_id for r in foreground_references(caption)], "source": "folder",
        })
        _commit(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipRecord(clip_id, split, entity_count(caption), clip_id)


def write_index(root: str | Path, records: list[ClipRecord], source: str, scale: str) -> Path:
    root = Path(root)
    path = root / INDEX
    tmp = root / f".{INDEX}.tmp"
    _write_json(tmp, {"clips": [r.__dict__ for r in records], "source": source, "scale": scale})
    tmp.replace(path)
    return path


def clip_shape(folder: str | Path) -> tuple[int, int, int]:
    """(F, H, W) of a clip's video, from its meta.json (without decoding the video)."""
    meta = json.loads((Path(folder) / "meta.json").read_text())
    return int(meta["frames"]), int(meta["height"]), int(meta["width"])


def list_clips(root: str | Path, split: str | None = None) -> list[ClipRecord]:
    """Clips listed in `<root>/index.json`, optionally one split, in index order."""
    root = Path(root)
    path = root / INDEX
    if not path.is_file():
        raise FileNotFoundError(f"no clip index at {path}: run `sara data` (or `dvc repro data`) first")
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS} or None, got {split!r}")
    rows = json.loads(path.read_text())["clips"]
    records = [ClipRecord(**row) for row in rows]
    return [r for r in records if split is None or r.split == split]


def load_mask_array(path: str | Path) -> tuple[list[str], np.ndarray]:
    with np.load(path) as z:
        return [str(x) for x in z["ref_ids"]], z["entities"].astype(bool)


def load_truth(path: Path) -> Truth:
    """The typed renderer truth of a clip; a malformed file is a one-line error naming it and the field."""
    try:
        return Truth.model_validate_json(path.read_text())
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"{path}: invalid truth record at {where or '<root>'}: {err['msg']}") from None


def load_clip(path: str | Path) -> Clip:
    """Load one clip folder: frames, fps, MTSS caption, and truth / ground-truth masks when present."""
    path = Path(path)
    meta_path = path / "meta.json"
    if not meta_path.is_file():
        raise FileNotFoundError(f"not a clip folder (no meta.json): {path}")
    meta = json.loads(meta_path.read_text())
    frames, _ = read_video(path / "video.mp4", meta["clip_id"])
    if frames.shape[0] != meta["frames"]:
        raise BadDataError(f"clip {meta['clip_id']!r}: {path / 'video.mp4'} holds {frames.shape[0]} frames, "
                           f"{meta_path} says {meta['frames']} (truncated video?)")
    caption = load_caption(path / "caption.json")
    truth = load_truth(path / "truth.json") if (path / "truth.json").is_file() else None
    masks = ids = None
    if (path / "masks.npz").is_file():
        ids, masks = load_mask_array(path / "masks.npz")
        check_mask_shape(masks, len(ids), frames.shape, meta["clip_id"], path / "masks.npz")
    return Clip(meta["clip_id"], meta["split"], frames, float(meta["fps"]), caption, truth, masks, ids, path)
