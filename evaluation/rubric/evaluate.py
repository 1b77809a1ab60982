"""Score every sampled video (and the oracle) with the grounded judge and the configured VLM judges.

Layout of `rubric.out_dir`:
  oracle/<prompt>_s<seed>.mp4 + .png  the renderer's ground-truth clip of each synthetic prompt (the oracle row)
  <run>/<prompt>_s<seed>.json         per video: grounded scores and, per VLM judge, both group calls with raw replies
  summary.json                        per protocol ("grounded", "vlm") and run: per-dimension mean/vote, TA/MQ, n_valid
The two protocols are never mixed: the grounded judge is a measurement against ground truth, the VLM judges
are the paper's protocol; each table names which produced it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from evaluation.grounded import build_reference, grounded_scores
from evaluation.rubric.aggregate import per_method
from evaluation.rubric.dimensions import GROUPS
from evaluation.rubric.judges import make_judge, score_group
from evaluation.rubric.prompts import description_from_caption
from sara.data.synthetic import render
from sara.data.video_io import read_video, save_video_and_sheet
from sara.sample import load_prompts

ORACLE = "oracle"
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
    order = ["base", "sft", "videorepa", "moalign", "sara-or", "sara-and", "sara-xor", "sara-none"]
    found = [p.name for p in samples_dir.iterdir() if (p / "index.json").is_file()] if samples_dir.is_dir() else []
    return sorted(found, key=lambda r: (order.index(r) if r in order else len(order), r))


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


def evaluate_all(params: Any, out: Path, judges: list[Any] | None = None, log=print) -> dict:
    """Score all runs found under `sample.out_dir` plus the oracle; write per-video JSON and summary.json."""
    from tqdm import tqdm

    r, s = params.rubric, params.sample
    prompts = {p.id: p for p in load_prompts(s.prompt_set)}
    samples_dir = Path(s.out_dir)
    runs = list_runs(samples_dir)
    if not runs:
        raise FileNotFoundError(f"no sampled runs under sample.out_dir = {s.out_dir!r}: run `sara sample --run <run>` first")
    folders = {run: samples_dir / run for run in runs}
    has_specs = any(p.spec is not None for p in prompts.values())
    if has_specs:
        write_oracle(params, list(prompts.values()), out / ORACLE)
        folders = {ORACLE: out / ORACLE, **folders}
    if judges is None:
        judges = [make_judge(j, retries=r.retries, backoff_s=r.backoff_s) for j in r.judges]
    refs: dict[str, Any] = {}
    per_run: dict[str, dict[str, list]] = {"grounded": {}, "vlm": {}}
    for run, folder in folders.items():
        index = json.loads((folder / "index.json").read_text())
        (out / run).mkdir(parents=True, exist_ok=True)
        grounded_videos, vlm_videos = [], []
        for v in tqdm(index["videos"], desc=f"rubric {run}", unit="video"):
            item = prompts[v["prompt_id"]]
            frames, _ = read_video(folder / v["mp4"])
            rec: dict[str, Any] = {"run": run, "prompt_id": item.id, "seed": v["seed"], "video": str(folder / v["mp4"])}
            if r.grounded and item.spec is not None:
                if item.id not in refs:
                    refs[item.id] = build_reference(item.spec, *frames.shape[:3], s.fps)
                g = grounded_scores(item.spec, frames, s.fps, ref=refs[item.id])
                rec["grounded"] = g
                grounded_videos.append({"grounded": {d: x["score"] for d, x in g.items()}})
            if judges:
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
            (out / run / f"{item.id}_s{v['seed']}.json").write_text(json.dumps(rec, indent=2))
        if grounded_videos:
            per_run["grounded"][run] = per_method(grounded_videos, skip_inapplicable=True)
        if vlm_videos:
            per_run["vlm"][run] = per_method(vlm_videos)
    summary = {
        "prompt_set": s.prompt_set,
        "scale": params.project.scale,
        "runs": list(folders),
        "protocols": {
            name: {"note": GROUNDED_NOTE if name == "grounded" else vlm_note(judges),
                   "judges": ["grounded"] if name == "grounded" else [j.name for j in judges],
                   "runs": res}
            for name, res in per_run.items() if res
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
