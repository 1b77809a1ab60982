"""`sara masks`: per-entity masks for every clip, plus the pair-budget statistic (the paper's App. A, Fig. 8).

backend groundtruth: the renderer's masks shipped with each clip. backend sam3: SAM 3 from `masks.sam3_dir`,
prompted with each entity's noun phrase. Writes `<masks.out_dir>/<clip_id>.npz` (sara.masks.store) and
`<masks.out_dir>/summary.json` (backend, grid, per-clip p_fg and entity coverage, pooled FG-FG / FG-BG / BG-BG
shares per routing operator), built in a temporary folder and renamed at the end; the flat metrics also go to
`<masks.out_dir>_metrics.json` (beside the folder, declared as DVC metrics) and to MLflow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from sara.config import Params

SECTIONS = ["project", "data", "masks"]  # data.out_dir is where the clips are read


def metrics_path(out_dir: str | Path) -> Path:
    """Flat metrics file beside the masks folder (a DVC metrics file may not sit inside another output)."""
    out = Path(out_dir)
    return out.with_name(f"{out.name}_metrics.json")


def _backend(params: Params):
    """A function (clip_dir, clip_id) -> EntityMasks for the configured backend (SAM 3 is loaded once)."""
    from sara.masks.groundtruth import groundtruth_masks

    if params.masks.backend == "groundtruth":
        return groundtruth_masks
    from sara.data.clips import load_clip
    from sara.masks.sam3 import Sam3Segmenter

    segmenter = Sam3Segmenter.from_params(params)

    def sam3_masks(clip_dir: Path, clip_id: str):
        clip = load_clip(clip_dir)
        return segmenter.segment(clip_id, clip.frames, clip.caption)

    return sam3_masks


def run(params: Params) -> Path:
    import numpy as np
    from tqdm import tqdm

    from sara.data.clips import clip_shape, list_clips
    from sara.masks.stats import budget_summary, summary_metrics, token_foreground
    from sara.masks.store import check_clip_masks, save_masks
    from sara.io import atomic_dir
    from sara.tracking import log_artifact, log_metrics, stage_run

    m = params.masks
    out = Path(m.out_dir)
    grid = tuple(m.budget_grid)
    with stage_run("masks", params, SECTIONS, tags={"sara.masks.backend": m.backend}):
        start = time.perf_counter()
        records = list_clips(params.data.out_dir)
        masks_for = _backend(params)
        with atomic_dir(out) as tmp:
            fg_tokens, per_clip = [], {}
            for i, rec in enumerate(tqdm(records, desc=f"masks: {m.backend}", unit="clip")):
                folder = rec.folder(params.data.out_dir)
                em = masks_for(folder, rec.clip_id)
                # masks of another size than the clip (a resized masks.npz) are refused here, by clip and file
                source = folder / "masks.npz" if m.backend == "groundtruth" else f"the {m.backend} masks"
                check_clip_masks(em, clip_shape(folder), source)
                save_masks(tmp, em)
                fg = token_foreground(em, grid)  # (T_s, N) bool
                fg_tokens.append(fg)
                area = em.entities.reshape(len(em.ref_ids), -1).mean(1) if em.ref_ids else np.zeros(0)
                per_clip[rec.clip_id] = {
                    "split": rec.split,
                    "p_fg": float(fg.mean()),
                    "pixel_p_fg": float(em.union.mean()),
                    "entities": len(em.ref_ids),
                    "entities_found": int((area > 0).sum()),
                    "entity_area": {r: float(a) for r, a in zip(em.ref_ids, area)},
                }
                log_metrics({"p_fg_clip": float(fg.mean())}, step=i)
            summary: dict[str, Any] = {"backend": m.backend, "budget_grid": list(grid), "scale": params.project.scale,
                                       **budget_summary(fg_tokens, [r.clip_id for r in records])}
            summary["per_clip"] = per_clip
            found = sum(c["entities_found"] for c in per_clip.values())
            total = sum(c["entities"] for c in per_clip.values())
            summary["entities_found_fraction"] = found / total if total else 1.0
            (tmp / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
        metrics = summary_metrics(summary)
        metrics["entities_found_fraction"] = summary["entities_found_fraction"]
        metrics["seconds"] = time.perf_counter() - start
        mpath = metrics_path(out)
        tmp_metrics = mpath.with_name(f".{mpath.name}.tmp")
        # seconds stays out of the DVC metrics file so identical reruns give identical files
        tmp_metrics.write_text(json.dumps({k: v for k, v in metrics.items() if k != "seconds"}, indent=1,
                                          sort_keys=True) + "\n")
        tmp_metrics.replace(mpath)
        log_metrics(metrics)
        log_artifact(out / "summary.json")
        print(f"[masks] {m.backend}: {len(records)} clips -> {out}; p_fg mean {summary.get('p_fg_mean', 0.0):.3f}, "
              f"OR keeps {sum(summary.get('coverage', {}).get('or', {}).values()):.3f} of the pair budget")
    return out
