"""`sara features`: V-JEPA features of every clip, computed once per (clip, encoder) into `vfm.cache_dir`.

A stage of its own (not part of `train_aligner`) so that changing an aligner or Stage 2 param never recomputes
features, and so DVC's run cache can restore both this stage and the stages that read the cache. Entries are keyed
by the clip's content hash, the encoder's identity and the preprocessing version
(`sara.models.encoders.feature_cache_path`). The cache is built under a temporary name and renamed when every clip
is done, so a failed run leaves the previous cache (or none), never a partial one.
"""

from __future__ import annotations

import argparse

from sara.config import Params

SECTIONS = ["project", "data", "vfm"]  # data: where the clips are


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")


def run(params: Params, progress: bool = True) -> int:
    from tqdm import tqdm

    from sara.data.clips import list_clips, load_clip
    from sara.env import resolve_device
    from sara.io import atomic_dir
    from sara.models.encoders import build_vfm, cached_features
    from sara.tracking import log_metrics, stage_run

    with stage_run("features", params, SECTIONS):
        vfm = build_vfm(params.vfm, resolve_device(params.project.device))
        records = list_clips(params.data.out_dir)
        if not records:
            raise FileNotFoundError(f"no clips in {params.data.out_dir} (data.out_dir): run the data stage first")
        with atomic_dir(params.vfm.cache_dir) as tmp:
            for rec in tqdm(records, desc="V-JEPA features", disable=not progress):
                cached_features(vfm, load_clip(rec.folder(params.data.out_dir)), tmp)
        log_metrics({"clips": len(records), "tokens_per_clip": vfm.grid[0] * vfm.grid[1] * vfm.grid[2]})
    return len(records)
