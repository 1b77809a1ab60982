"""`sara vbench --run <run>`: VBench-1.0 (isolated venv, built on first use) and VBench-2.0 (given by path) on one run.

The VBench-1.0 standard suite in `<run>/vbench/` (mode vbench_standard, files `{prompt}-{i}.mp4`) when
it was sampled, else the prompt-set mp4s in custom_input mode. `vbench.mode` picks VBench or VBench-Long (auto: by
the clip length, VBench's 5 s rule, evaluation/vbench/modes.py); the choice is in the summary, the result and the
MLflow tag `vbench.benchmark`. Only dimensions whose weights pass the
preflight run (temporal_flickering needs none); the rest are reported missing with every file and its source.
VBench-2.0 runs when `vbench.vbench2_dimensions` is set and needs `vbench.vbench2_dir` + `vbench.vbench2_python`
(a clear error otherwise). Writes `<vbench.out_dir>/<run>/summary.json` and `outputs/metrics/<run>/vbench.json`
(DVC metrics); MLflow run `vbench/<run>` with `vbench/<dimension>`, `vbench/quality`, `vbench/semantic`,
`vbench/total` and the run's method, routing operator, seed and lambda_TRD.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from sara.config import Params
from sara.env import resolve_device
from sara.stages.per_run import RUNS

SECTIONS = ["project", "sample", "vbench"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, choices=RUNS, help="a sampled run")


def link_videos(src: Path, dst: Path) -> int:
    """Symlink the mp4s of `src` into `dst` (VBench would also read the contact-sheet PNGs as one-frame videos)."""
    dst.mkdir(parents=True, exist_ok=True)
    n = 0
    for p in sorted(src.glob("*.mp4")):
        os.symlink(p.resolve(), dst / p.name)
        n += 1
    return n


def worker_device(want: str) -> str:
    """The device the VBench worker runs on: `auto` is left to the worker, which imports torch anyway; this stage
    process then never imports torch (~1.5 s of start-up, 7 stages in the embedded DAG). A named device is checked
    here, before the worker starts (cuda asked for without CUDA is an error)."""
    return want if want == "auto" else str(resolve_device(want))


def run_metrics(summary: dict) -> dict[str, float]:
    """`vbench/<dimension>` (raw), `vbench/quality|semantic|total` (+ `_dims`: how many dimensions they average),
    `vbench2/<category>`, `vbench2/final` of one run; keys relative to the stage (`<dimension>`, `quality`)."""
    out: dict[str, float] = {}
    v1 = summary.get("vbench1")
    if v1:
        for dim, raw in v1["raw"].items():
            out[dim] = round(raw, 6)
        for agg in ("Quality", "Semantic", "Total"):
            a = v1["scores"][agg]
            if a["score"] is not None:
                out[agg.lower()] = round(a["score"], 6)
                if a.get("n_dims") is not None:
                    out[f"{agg.lower()}_dims"] = a["n_dims"]
    v2 = summary.get("vbench2")
    if v2:
        for cat, c in v2["scores"]["categories"].items():
            if c["score"] is not None:
                out[f"v2_{cat}"] = round(c["score"], 6)
        if v2["scores"]["Final"]["score"] is not None:
            out["v2_final"] = round(v2["scores"]["Final"]["score"], 6)
    return out


def benchmark_choice(params: Params) -> dict:
    """`vbench.mode` resolved on the sampled clips: {"param", "benchmark" (standard | long), "clip_seconds", "rule"}."""
    from evaluation.vbench.modes import resolve_benchmark

    return resolve_benchmark(params.vbench.mode, params.sample.frames, params.sample.fps)


def evaluate(params: Params, run: str, out: Path, log=print) -> dict:
    """VBench of one sampled run into `out` (work dirs); returns that run's summary."""
    from evaluation.vbench.modes import vbench1_mode
    from evaluation.vbench.runner import run_vbench1, run_vbench2
    from sara.integrity import verify

    v, s = params.vbench, params.sample
    choice = benchmark_choice(params)
    summary: dict = {"enabled": v.enabled, "scale": params.project.scale, "run": run, "benchmark": choice}
    if not v.enabled:
        return summary
    if v.vbench2_dimensions and not v.vbench2_dir:
        raise FileNotFoundError(
            "vbench.vbench2_dimensions is set but vbench.vbench2_dir is not: it must name a VBench-2.0 source checkout "
            "(the VBench-2.0/ folder of the VBench repository) and vbench.vbench2_python its environment's python"
        )
    folder = Path(s.out_dir) / run
    if not (folder / "index.json").is_file():
        raise FileNotFoundError(f"{folder / 'index.json'} not found: run `sara sample --run {run}` first")
    verify(folder)  # the videos are the ones sampled, not a damaged copy
    standard = folder / "vbench"
    mode = vbench1_mode(choice["benchmark"], standard.is_dir())
    videos = out / "videos"
    n = link_videos(standard if standard.is_dir() else folder, videos)
    summary.update(mode=mode, n_videos=n)

    def build(venv):
        from evaluation.vbench.env import ensure_env

        return ensure_env(venv, log=log)

    r1 = run_vbench1(videos, list(v.dimensions), work_dir=out / "work", cache_dir=v.cache_dir, mode=mode,
                     venv=v.venv, python=None, device=worker_device(v.device), build_env=build, log=log,
                     videos_per_prompt=s.vbench_videos_per_prompt)
    summary["vbench1"] = r1.to_dict()
    if v.vbench2_dimensions:
        suite2 = folder / "vbench2"
        mode2 = "vbench_standard" if suite2.is_dir() else "custom_input"
        videos2 = out / "videos2"
        link_videos(suite2 if mode2 == "vbench_standard" else folder, videos2)
        r2 = run_vbench2(videos2, list(v.vbench2_dimensions), work_dir=out / "work2", vbench2_dir=v.vbench2_dir,
                         vbench2_python=v.vbench2_python, mode=mode2)
        summary["vbench2"] = r2.to_dict()
    for d in (videos, out / "videos2"):  # scaffolding only (links, VBench-Long's split_clip/): the results name
        if d.is_dir():                   # the videos; rmtree unlinks links, never their targets
            shutil.rmtree(d)
    log(f"[vbench] {run}: raw {r1.raw}; missing {sorted(r1.missing)}")
    summary["vbench2_note"] = "on" if v.vbench2_dimensions else "off (vbench.vbench2_dimensions is empty)"
    return summary


def merge_runs(summaries: list[dict]) -> dict:
    """Per-run summaries -> the report's view `{"enabled", "vbench2", "runs": {run: summary}}`."""
    enabled = [s for s in summaries if s.get("enabled")]
    return {"enabled": bool(enabled), "vbench2": enabled[0].get("vbench2_note", "off") if enabled else "off",
            "runs": {s["run"]: s for s in enabled}}


def run(params: Params, run: str) -> dict:
    from sara.io import atomic_dir
    from sara.stages.per_run import publish_metrics
    from sara.tracking import log_artifact, run_identity, stage_run

    out = Path(params.vbench.out_dir) / run
    identity, tags = run_identity(params, run)
    tags = {**tags, "vbench.benchmark": benchmark_choice(params)["benchmark"]}
    with stage_run("vbench", params, SECTIONS, variant=run, tags=tags, extra_params=identity):
        with atomic_dir(out) as tmp:
            summary = evaluate(params, run, tmp)
            (tmp / "summary.json").write_text(json.dumps(summary, indent=2))
        metrics = run_metrics(summary)
        publish_metrics("vbench", run, metrics if summary["enabled"] else {"status": "disabled"})
        log_artifact(out / "summary.json")
    return summary
