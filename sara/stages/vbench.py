"""`sara vbench`: VBench-1.0 (isolated venv, built on first use) and VBench-2.0 (given by path) on every run.

Per run: the VBench-1.0 standard suite in `<run>/vbench/` (mode vbench_standard, files `{prompt}-{i}.mp4`) when
it was sampled, else the prompt-set mp4s in custom_input mode. `vbench.mode` picks VBench or VBench-Long (auto: by
the clip length, VBench's 5 s rule, evaluation/vbench/modes.py); the choice is in the summary and every result. Only dimensions whose weights pass the
preflight run (temporal_flickering needs none); the rest are reported missing with every file and its source.
VBench-2.0 runs when `vbench.vbench2_dimensions` is set and needs `vbench.vbench2_dir` + `vbench.vbench2_python`
(a clear error otherwise). Writes `vbench.out_dir/summary.json` and `<out_dir>_metrics.json`; MLflow run `vbench`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "sample", "vbench"]


def _device(want: str) -> str:
    if want != "auto":
        return want
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def link_videos(src: Path, dst: Path) -> int:
    """Symlink the mp4s of `src` into `dst` (VBench would also read the contact-sheet PNGs as one-frame videos)."""
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(src.glob("*.mp4")):
        os.symlink(p.resolve(), dst / p.name)
        n += 1
    return n


def flat_metrics(summary: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for run, res in summary["runs"].items():
        v1 = res.get("vbench1")
        if v1:
            for dim, raw in v1["raw"].items():
                out[f"vbench1.{run}.{dim}"] = round(raw, 6)
            for agg in ("Quality", "Semantic", "Total"):
                if v1["scores"][agg]["score"] is not None:
                    out[f"vbench1.{run}.{agg}"] = round(v1["scores"][agg]["score"], 6)
        v2 = res.get("vbench2")
        if v2:
            for cat, c in v2["scores"]["categories"].items():
                if c["score"] is not None:
                    out[f"vbench2.{run}.{cat}"] = round(c["score"], 6)
            if v2["scores"]["Final"]["score"] is not None:
                out[f"vbench2.{run}.Final"] = round(v2["scores"]["Final"]["score"], 6)
    return out


def benchmark_choice(params: Params) -> dict:
    """`vbench.mode` resolved on the sampled clips: {"param", "benchmark" (standard | long), "clip_seconds", "rule"}."""
    from evaluation.vbench.modes import resolve_benchmark

    return resolve_benchmark(params.vbench.mode, params.sample.frames, params.sample.fps)


def evaluate(params: Params, out: Path, log=print) -> dict:
    from evaluation.rubric.evaluate import list_runs
    from evaluation.vbench.modes import vbench1_mode
    from evaluation.vbench.runner import run_vbench1, run_vbench2

    v, s = params.vbench, params.sample
    choice = benchmark_choice(params)
    summary: dict = {"enabled": v.enabled, "scale": params.project.scale, "benchmark": choice, "runs": {}}
    if not v.enabled:
        return summary
    if v.vbench2_dimensions and not v.vbench2_dir:
        raise FileNotFoundError(
            "vbench.vbench2_dimensions is set but vbench.vbench2_dir is not: it must name a VBench-2.0 source checkout "
            "(the VBench-2.0/ folder of the VBench repository) and vbench.vbench2_python its environment's python"
        )
    runs = list_runs(Path(s.out_dir))
    if not runs:
        raise FileNotFoundError(f"no sampled runs under sample.out_dir = {s.out_dir!r}: run `sara sample --run <run>` first")
    python = None  # the VBench venv is built (or found) once, on the first run that has a runnable dimension
    for run in runs:
        folder = Path(s.out_dir) / run
        standard = folder / "vbench"
        mode = vbench1_mode(choice["benchmark"], standard.is_dir())
        videos = out / run / "videos"
        n = link_videos(standard if standard.is_dir() else folder, videos)
        res: dict = {"mode": mode, "benchmark": choice["benchmark"], "n_videos": n}

        def build(venv, _cache={}):  # noqa: B006  (memo: one build per stage)
            from evaluation.vbench.env import ensure_env

            if "py" not in _cache:
                _cache["py"] = ensure_env(venv, log=log)
            return _cache["py"]

        r1 = run_vbench1(videos, list(v.dimensions), work_dir=out / run / "work", cache_dir=v.cache_dir, mode=mode,
                         venv=v.venv, python=python, device=_device(v.device), build_env=build, log=log,
                         videos_per_prompt=s.vbench_videos_per_prompt)
        res["vbench1"] = r1.to_dict()
        if v.vbench2_dimensions:
            suite2 = folder / "vbench2"
            mode2 = "vbench_standard" if suite2.is_dir() else "custom_input"
            videos2 = out / run / "videos2"
            link_videos(suite2 if mode2 == "vbench_standard" else folder, videos2)
            r2 = run_vbench2(videos2, list(v.vbench2_dimensions), work_dir=out / run / "work2", vbench2_dir=v.vbench2_dir,
                             vbench2_python=v.vbench2_python, mode=mode2)
            res["vbench2"] = r2.to_dict()
        summary["runs"][run] = res
        for d in (videos, out / run / "videos2"):  # scaffolding only (links, VBench-Long's split_clip/): the results
            if d.is_dir():                          # name the videos; rmtree unlinks links, never their targets
                shutil.rmtree(d)
        log(f"[vbench] {run}: raw {r1.raw}; missing {sorted(r1.missing)}")
    summary["vbench2"] = "on" if v.vbench2_dimensions else "off (vbench.vbench2_dimensions is empty)"
    return summary


def run(params: Params) -> dict:
    from sara.io import atomic_dir, write_json
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.vbench.out_dir)
    choice = benchmark_choice(params)
    with stage_run("vbench", params, SECTIONS, tags={"vbench.benchmark": choice["benchmark"]}):
        with atomic_dir(out) as tmp:
            summary = evaluate(params, tmp)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        metrics = flat_metrics(summary)
        write_json(out.with_name(out.name + "_metrics.json"), metrics)
        log_metrics(metrics)
        log_artifact(out / "summary.json")
    return summary
