"""Score every sampled video (and the oracle) with the grounded judge and the configured VLM judges.

One run at a time (`evaluate_run`, the stage `sara rubric --run <run>`); layout of `rubric.out_dir`:
  oracle/<prompt>_s<seed>.mp4 + .png  the renderer's ground-truth clip of each synthetic prompt (the oracle row)
  <run>/<prompt>_s<seed>.json         per video: grounded scores and, per VLM judge, both group calls with raw replies
  <run>/summary.json                  per protocol ("grounded", "vlm"): per-dimension mean/vote, TA/MQ, n_valid
`merge_runs` (evaluation/rubric/summaries.py) puts the runs' summaries side by side for the report.
The two protocols are never mixed: the grounded judge is a measurement against ground truth, the VLM judges
are the paper's protocol; each table names which produced it.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from evaluation.grounded import build_reference, grounded_scores
from evaluation.rubric.aggregate import per_method
from evaluation.rubric.dimensions import GROUPS
from evaluation.rubric.judges import make_judge, score_group
from evaluation.rubric.prompts import description_from_caption
from sara.data.synthetic import SceneSpec, render
from sara.data.video_io import read_video, save_video_and_sheet
from sara.integrity import verify
from sara.sample import load_prompts
from evaluation.rubric.summaries import list_runs_with, merge_runs
from sara.runs import ORACLE

GROUNDED_NOTE = (
    "grounded judge: measured against the renderer's ground truth (palette segmentation, entity tracks, "
    "background statistics), mapped to the paper's 1-5 scales by documented cuts (evaluation/grounded/)"
)


def vlm_note(judges: list[Any]) -> str:
    """Which judges produced the VLM tables: name, backend, model, thinking and media of each."""

    def one(j: Any) -> str:
        p = getattr(j, "p", None)  # the JudgeParams of a configured judge
        if p is None:
            return j.name
        return f"{p.name} ({p.backend}: {p.model}, thinking {'on' if p.thinking else 'off'}, {p.media})"

    names = ", ".join(one(j) for j in judges)
    return f"VLM judges: {names}; paper rubric, 1-5 scales, one call per group (TA, MQ), mean and vote over judges"


def list_runs(samples_dir: Path) -> list[str]:
    """Runs with sampled videos (a folder holding index.json), in the paper's row order when known."""
    return list_runs_with(samples_dir, "index.json")


def write_oracle(params: Any, prompts: list[Any], out: Path) -> list[dict]:
    """Render each synthetic prompt's ground truth at the sampling settings: the "real video (oracle)" row."""
    s = params.sample
    out.mkdir(parents=True, exist_ok=True)
    videos = []
    for item in prompts:
        if item.spec is None:
            continue
        frames, _, _ = render(item.spec, s.frames, s.height, s.width, s.fps)
        for seed in s.seeds:  # the renderer is deterministic: one clip, listed per seed so rows align
            stem = f"{item.id}_s{seed}"
            save_video_and_sheet(frames, s.fps, out / f"{stem}.mp4", out / f"{stem}.png", label=f"oracle | {item.id}")
            videos.append({"prompt_id": item.id, "seed": seed, "mp4": f"{stem}.mp4", "sheet": f"{stem}.png"})
    (out / "index.json").write_text(json.dumps({"run": ORACLE, "videos": videos}, indent=2))
    return videos


def _judge_note(name: str, judges: list[Any]) -> dict:
    return {"note": GROUNDED_NOTE if name == "grounded" else vlm_note(judges),
            "judges": ["grounded"] if name == "grounded" else [j.name for j in judges]}


def default_workers() -> int:
    """Processes for the grounded judge: every core this process may use; beside other stages, its share of them
    or the cores idle when it starts, whichever is more.

    `sara repro --jobs N` gives each stage cores // N in SARA_STAGE_CORES: a pool of every core in each of several
    rubric stages beside the trainers oversubscribed the machine. But the share is a floor, not a cap: the lab's
    last rubric stage starts after the last training, with most cores idle, and sits on the critical path (run
    12: 274 videos on 2 of 16 cores, 113 s). Idle cores are the cores minus the tasks the kernel runs besides this
    one (the most of three looks 0.1 s apart, so a trainer caught waiting for its GPU still counts). The scores
    are pure functions of a video and its prompt, so the count changes the wall time only."""
    import time

    from sara import env

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = os.environ.get(env.STAGE_CORES_ENV, "")
    if not share.isdigit():
        return cores
    floor = max(1, min(cores, int(share)))
    looks = [env.runnable_tasks()]
    for _ in range(2):
        time.sleep(0.1)
        looks.append(env.runnable_tasks())
    if None in looks:  # no /proc/loadavg: the share
        return floor
    idle = cores - (max(looks) - 1)  # type: ignore[type-var]  # the count includes this process
    return max(floor, min(cores, idle))


def _grounded_one(spec: dict, path: Path, fps: int) -> dict:
    """Grounded scores of one video file against its prompt's reference (a worker process's task)."""
    frames, _ = read_video(path)
    scene = SceneSpec.model_validate(spec)
    return grounded_scores(scene, frames, fps, ref=build_reference(scene, *frames.shape[:3], fps))


JUDGE_NICENESS = 10  # the judge's worker processes yield the cores to the stages beside them (trainers, samplers)


def judge_pool(workers: int) -> ProcessPoolExecutor:
    """`workers` processes at a lower priority: a pool that took the idle cores (`default_workers`) gives them back
    to any stage that needs them later."""
    return ProcessPoolExecutor(max_workers=workers, initializer=os.nice, initargs=(JUDGE_NICENESS,))


def _grounded_in_workers(tasks: list[tuple[dict, Path, int]], workers: int, desc: str) -> list[dict]:
    """`_grounded_one` of every task, in order, on up to `workers` processes (with a progress bar)."""
    from tqdm import tqdm

    with judge_pool(min(workers, len(tasks))) as pool:
        done = pool.map(_grounded_one, *zip(*tasks), chunksize=max(1, len(tasks) // (4 * workers)))
        return list(tqdm(done, total=len(tasks), desc=desc, unit="video"))


def evaluate_run(params: Any, run: str, out: Path, judges: list[Any] | None = None, refs: dict | None = None,
                 workers: int | None = None) -> dict:
    """Score one run's sampled videos (or, for `oracle`, render and score the ground truth) into `out`.

    `workers`: processes for the grounded judge (None: every core, `default_workers`); with one, a prompt's
    reference is kept in `refs` and shared with the next run (`evaluate_all`).

    Writes `out/<prompt>_s<seed>.json` per video and `out/summary.json`:
    `{"run", "prompt_set", "scale", "protocols": {protocol: {"note", "judges", "result": per_method(...)}}}`.
    """
    from tqdm import tqdm

    r, s = params.rubric, params.sample
    prompts = {p.id: p for p in load_prompts(s.prompt_set)}
    out.mkdir(parents=True, exist_ok=True)
    if run == ORACLE:
        if not any(p.spec is not None for p in prompts.values()):
            raise ValueError(f"rubric --run oracle: prompt set {s.prompt_set!r} has no synthetic prompt, so no ground truth")
        write_oracle(params, list(prompts.values()), out)
        folder = out
    else:
        folder = Path(s.out_dir) / run
        if not (folder / "index.json").is_file():
            raise FileNotFoundError(f"{folder / 'index.json'} not found: run `sara sample --run {run}` first")
        verify(folder)  # the videos are the ones sampled, not a damaged copy
    if judges is None:
        judges = [make_judge(j, retries=r.retries, backoff_s=r.backoff_s) for j in r.judges]
    refs = {} if refs is None else refs
    index = json.loads((folder / "index.json").read_text())
    workers = default_workers() if workers is None else workers
    grounded = [v for v in index["videos"] if r.grounded and prompts[v["prompt_id"]].spec is not None]
    scored: dict[int, dict] = {}
    if workers > 1 and len(grounded) > 1:
        tasks = [(prompts[v["prompt_id"]].spec, folder / v["mp4"], s.fps) for v in grounded]
        desc = f"grounded {run} ({min(workers, len(tasks))} processes)"
        scored = {id(v): g for v, g in zip(grounded, _grounded_in_workers(tasks, workers, desc))}
    grounded_videos, vlm_videos = [], []
    for v in tqdm(index["videos"], desc=f"rubric {run}", unit="video"):
        item = prompts[v["prompt_id"]]
        frames = None  # decoded only when this process needs the pixels (a pool's scores need none)
        video = v["mp4"] if run == ORACLE else str(folder / v["mp4"])  # the oracle's clips sit beside the scores
        rec: dict[str, Any] = {"run": run, "prompt_id": item.id, "seed": v["seed"], "video": video}
        if r.grounded and item.spec is not None:
            g = scored.get(id(v))
            if g is None:
                frames, _ = read_video(folder / v["mp4"])
                if item.id not in refs:
                    refs[item.id] = build_reference(SceneSpec.model_validate(item.spec), *frames.shape[:3], s.fps)
                g = grounded_scores(SceneSpec.model_validate(item.spec), frames, s.fps, ref=refs[item.id])
            rec["grounded"] = g
            grounded_videos.append({"grounded": {d: x["score"] for d, x in g.items()}})
        if judges:
            if frames is None:
                frames, _ = read_video(folder / v["mp4"])
            d = description_from_caption(item.caption)
            rec["judges"] = {}
            video_scores: dict[str, dict] = {}
            for j in judges:
                rec["judges"][j.name] = {}
                video_scores[j.name] = {}
                for group in GROUPS:
                    res = score_group(j, group, d, frames, folder / v["mp4"], r.retries)
                    rec["judges"][j.name][group] = res.to_dict()
                    video_scores[j.name].update({dim: x["score"] for dim, x in res.scores.items()})
            vlm_videos.append(video_scores)
        (out / f"{item.id}_s{v['seed']}.json").write_text(json.dumps(rec, indent=2))
    protocols = {}
    if grounded_videos:
        protocols["grounded"] = {**_judge_note("grounded", judges), "result": per_method(grounded_videos, skip_inapplicable=True)}
    if vlm_videos:
        protocols["vlm"] = {**_judge_note("vlm", judges), "result": per_method(vlm_videos)}
    summary = {"run": run, "prompt_set": s.prompt_set, "scale": params.project.scale, "protocols": protocols}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def evaluate_all(params: Any, out: Path, judges: list[Any] | None = None, log=print) -> dict:
    """Score all runs found under `sample.out_dir` plus the oracle (`out/<run>/`); return the merged view."""
    r, s = params.rubric, params.sample
    runs = list_runs(Path(s.out_dir))
    if not runs:
        raise FileNotFoundError(f"no sampled runs under sample.out_dir = {s.out_dir!r}: run `sara sample --run <run>` first")
    if any(p.spec is not None for p in load_prompts(s.prompt_set)):
        runs = [ORACLE, *runs]
    if judges is None:
        judges = [make_judge(j, retries=r.retries, backoff_s=r.backoff_s) for j in r.judges]
    refs: dict[str, Any] = {}
    return merge_runs([evaluate_run(params, run, out / run, judges, refs) for run in runs])
