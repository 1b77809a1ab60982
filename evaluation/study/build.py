"""Build a study from the sampled videos (`sara study build`): pairs, stripped media, rater plans (design.py).

Reads `<samples_dir>/<run>/index.json` of the main run and of every baseline (what `sara sample --run` writes).
Every video of the main run is paired with the same prompt and sampling seed of each baseline; a baseline missing
one is an error naming its index. Writes into `out`: `study.json` (the key: never served), `media/<id>.mp4` (one
stripped copy per video, media.py) and `raters.txt` (the rater ids to hand out, one per line).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.study.design import (MEDIA_DIR, RATERS_FILE, STUDY_FILE, Pair, Study, Video, fingerprint, opaque,
                                     rater_plan, study_key)
from evaluation.study.media import corrupt, strip_metadata, write_clean
from sara.data.prompts import load_prompt_set
from sara.errors import BadDataError, InputError, MissingDataError

GROUNDTRUTH, CORRUPTED = "groundtruth", "corrupted"  # the sources of an attention check's two videos


def read_index(samples_dir: Path, run: str) -> dict:
    path = samples_dir / run / "index.json"
    if not path.is_file():
        raise MissingDataError(f"{path} not found: run `sara sample --run {run}` first")
    return json.loads(path.read_text())


def _videos(samples_dir: Path, run: str, index: dict) -> dict[tuple[str, int], Path]:
    return {(v["prompt_id"], int(v["seed"])): samples_dir / run / v["mp4"] for v in index["videos"]}


@dataclass(frozen=True)
class Sources:
    """The sampled videos a study is built from, checked: every baseline has every video of the main run."""

    main_run: str
    baselines: list[str]
    prompt_set: str
    fps: int
    videos: dict[str, dict[tuple[str, int], Path]]  # run -> (prompt, sampling seed) -> mp4

    @property
    def units(self) -> list[tuple[str, int]]:
        return list(self.videos[self.main_run])


def read_sources(samples_dir: Path, main_run: str, baselines: list[str]) -> Sources:
    main_index = read_index(samples_dir, main_run)
    prompt_set, fps = main_index["prompt_set"], int(main_index["sampler"]["fps"])
    units = _videos(samples_dir, main_run, main_index)  # (prompt, seed) -> the main run's video
    if not units:
        raise BadDataError(f"{samples_dir / main_run / 'index.json'} lists no video")
    videos = {main_run: units}
    for run in baselines:
        index = read_index(samples_dir, run)
        found = _videos(samples_dir, run, index)
        missing = sorted(set(units) - set(found))
        if missing or index["prompt_set"] != prompt_set:
            what = f"prompt set {index['prompt_set']!r}" if not missing else f"no video of {missing[0][0]} seed {missing[0][1]}"
            raise BadDataError(f"{samples_dir / run / 'index.json'}: {what}, which the main run {main_run} has")
        videos[run] = {u: found[u] for u in units}
    return Sources(main_run, list(baselines), prompt_set, fps, videos)


def build_study(src: Sources, *, raters: int, attention_checks: int, seed: int, out: Path,
                log: Callable[[str], None] = print) -> Study:
    key = study_key(seed)
    main_run, baselines, prompt_set, fps, units = src.main_run, src.baselines, src.prompt_set, src.fps, src.units
    prompts = {p.id: p for p in load_prompt_set(prompt_set)}
    caption = {pid: prompts[pid].caption.structured_caption.english.scene_description for pid, _ in units}

    media = out / MEDIA_DIR
    media.mkdir(parents=True, exist_ok=True)
    videos: dict[tuple[str, str, int], Video] = {}  # (source, prompt, seed) -> its stripped copy
    for run, by_unit in src.videos.items():
        for (pid, s), path in by_unit.items():
            v = Video(media=opaque(key, "media", run, pid, s), source=run)
            strip_metadata(path, media / f"{v.media}.mp4")
            videos[(run, pid, s)] = v
    pairs = [Pair(id=opaque(key, "pair", run, pid, s), kind="compare", prompt_id=pid, seed=s, caption=caption[pid],
                  a=videos[(main_run, pid, s)], b=videos[(run, pid, s)], baseline=run)
             for run in baselines for pid, s in units]
    pairs += _attention_pairs(key, src.videos[main_run], prompts, main_run, videos, caption, fps, attention_checks, seed, media)
    plans = {opaque(key, "rater", i, length=10): rater_plan(pairs, i, seed) for i in range(raters)}
    study = Study(fingerprint=fingerprint(pairs, plans, media), key=key.hex(), main_run=main_run,
                  baselines=list(baselines), prompt_set=prompt_set, fps=fps, pairs=pairs, plans=plans)
    (out / STUDY_FILE).write_text(study.model_dump_json(indent=1))
    (out / RATERS_FILE).write_text("".join(f"{r}\n" for r in plans))
    n_cmp = sum(p.kind == "compare" for p in pairs)
    log(f"[study] {n_cmp} pairs ({len(units)} videos x {len(baselines)} baselines) + {len(pairs) - n_cmp} attention "
        f"checks, {raters} raters, {len(list(media.glob('*.mp4')))} media files -> {out}")
    return study


def _attention_pairs(key: bytes, units: dict[tuple[str, int], Path], prompts: dict, main_run: str,
                     videos: dict[tuple[str, str, int], Video], caption: dict[str, str], fps: int, k: int, seed: int,
                     media: Path) -> list[Pair]:
    """k checks on k distinct videos drawn by `seed`: the ground truth rendered at the sampled size (the main
    run's own video when the prompt has none) against a corrupted copy of it."""
    from sara.data.synthetic import render
    from sara.data.video_io import read_video

    if k > len(units):
        raise InputError(f"study.attention_checks = {k}: more than the {len(units)} sampled videos to draw them from")
    rng = np.random.default_rng([seed, 2])
    chosen = [list(units)[i] for i in sorted(rng.choice(len(units), size=k, replace=False))]
    pairs = []
    for pid, s in chosen:
        sampled, _ = read_video(units[(pid, s)])  # (F, H, W, 3): the size and length raters see
        spec = prompts[pid].spec
        if spec is not None:
            clean, _, _ = render(spec, *sampled.shape[:3], fps)
            a = Video(media=opaque(key, "media", GROUNDTRUTH, pid, s), source=GROUNDTRUTH)
            write_clean(clean, fps, media / f"{a.media}.mp4")
        else:
            clean, a = sampled, videos[(main_run, pid, s)]
        b = Video(media=opaque(key, "media", CORRUPTED, pid, s), source=CORRUPTED)
        write_clean(corrupt(clean, rng), fps, media / f"{b.media}.mp4")
        pairs.append(Pair(id=opaque(key, "pair", "attention", pid, s), kind="attention", prompt_id=pid, seed=s,
                          caption=caption[pid], a=a, b=b))
    return pairs
