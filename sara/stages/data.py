"""`sara data`: write the clip folders and index.json under `data.out_dir`.

source synthetic: render `data.n_train` + `data.n_heldout` random scenes (sara.data.synthetic). Clip i of a split
is seeded by (data.seed, split, i), so any clip can be regenerated alone and adding clips never changes earlier ones.
source folder: validate every clip folder under `data.folder` (video.mp4 + caption.json [+ masks.npz]) and copy it
in; splits come from `<folder>/index.json` when present, else `data.n_heldout` clips (seeded choice) are held out.
The whole output folder is built under a temporary name and renamed at the end.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sara.config import Params

SECTIONS = ["project", "data"]
SPLIT_CODE = {"train": 0, "heldout": 1}  # part of each clip's seed


def clip_seed(seed: int, split: str, index: int) -> list[int]:
    return [seed, SPLIT_CODE[split], index]


def render_synthetic(params: Params, out: Path) -> tuple[list[Any], list[Any]]:
    """Render every synthetic clip into `out` (each drawn once); returns the ClipRecords and their Truths."""
    import numpy as np
    from tqdm import tqdm

    from sara.data.clips import write_clip
    from sara.data.synthetic import random_spec, render, spec_to_mtss

    d = params.data
    jobs = [("train", i) for i in range(d.n_train)] + [("heldout", i) for i in range(d.n_heldout)]
    records, truths = [], []
    for split, i in tqdm(jobs, desc="data: render", unit="clip"):
        rng = np.random.default_rng(clip_seed(d.seed, split, i))
        spec = random_spec(rng, **d.scene_options)
        frames, masks, truth = render(spec, d.frames, d.height, d.width, d.fps)
        caption = spec_to_mtss(spec, truth=truth)
        records.append(write_clip(out, f"{split}_{i:04d}", split, frames, d.fps, caption, truth, masks,
                                  [e.ref_id for e in spec.entities], pixel_format=d.pixel_format))
        truths.append(truth)
    return records, truths


def import_folder(params: Params, out: Path) -> list[Any]:
    """Validate and copy the real clips of `data.folder` into `out`; returns the ClipRecords."""
    import numpy as np
    from tqdm import tqdm

    from sara.data.clips import import_clip

    d = params.data
    src = Path(d.folder or "")
    if not src.is_dir():
        raise FileNotFoundError(f"data.folder = {d.folder!r} is not a directory of clip folders")
    folders = sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"data.folder = {d.folder!r} holds no clip folders (each needs video.mp4 + caption.json)")
    names = [p.name for p in folders]
    if (src / "index.json").is_file():
        given = {row["clip_id"]: row["split"] for row in json.loads((src / "index.json").read_text())["clips"]}
        missing = [n for n in names if n not in given]
        if missing:
            raise ValueError(f"{src / 'index.json'} lacks a split for clip folders {missing[:5]}")
        splits = {n: given[n] for n in names}
    else:
        n_held = min(d.n_heldout, len(names) - 1)
        held = set(np.random.default_rng(d.seed).permutation(len(names))[:n_held].tolist())
        splits = {n: ("heldout" if k in held else "train") for k, n in enumerate(names)}
    return [import_clip(p, out, p.name, splits[p.name]) for p in tqdm(folders, desc="data: import", unit="clip")]


def summarise(records: list[Any], truths: list[Any]) -> dict[str, float]:
    """Scalar metrics over the written clips (entity counts) and the renderer truths (persons, interactions,
    camera pans; none for imported clips)."""
    counts = Counter(r.num_entities for r in records)
    persons = sum(e.type == "person" for t in truths for e in t.entities)
    interactions = sum(len(t.interactions) for t in truths)
    pans = sum(t.camera.movement != "static" for t in truths)
    n = max(len(records), 1)
    metrics = {
        "clips": float(len(records)),
        "clips_train": float(sum(r.split == "train" for r in records)),
        "clips_heldout": float(sum(r.split == "heldout" for r in records)),
        "entities_mean": sum(r.num_entities for r in records) / n,
        "persons": float(persons),
        "interactions": float(interactions),
        "camera_pans": float(pans),
    }
    metrics.update({f"clips_with_{k}_entities": float(v) for k, v in sorted(counts.items())})
    return metrics


def run(params: Params) -> Path:
    from sara.data.clips import load_truth, write_index
    from sara.io import atomic_dir
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.data.out_dir)
    with stage_run("data", params, SECTIONS, tags={"sara.data.source": params.data.source}):
        start = time.perf_counter()
        with atomic_dir(out) as tmp:
            if params.data.source == "synthetic":
                records, truths = render_synthetic(params, tmp)
            else:
                records = import_folder(params, tmp)
                truths = [load_truth(p) for r in records if (p := r.folder(tmp) / "truth.json").is_file()]
            write_index(tmp, records, params.data.source, params.project.scale)
            metrics = summarise(records, truths)
        metrics["seconds"] = time.perf_counter() - start
        log_metrics(metrics)
        log_artifact(out / "index.json")
        print(f"[data] {len(records)} {params.data.source} clips -> {out} ({metrics['seconds']:.1f} s)")
    return out
