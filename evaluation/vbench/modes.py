"""Which VBench-1.0 benchmark a clip length belongs to: VBench (standard) or VBench-Long (`vbench.mode`).

VBench's own guidance (its README-FAQ, "What's the difference between VBench and VBench-Long?"): videos shorter
than 5.0 s go to VBench, videos of 5.0 s or more to VBench-Long, whose `VBenchLong.evaluate` first splits every
video into fixed-length clips (per dimension, `configs/clip_length_mix.yaml` of `vbench2_beta_long`), scores the
clips with the VBench dimension and averages them per video. Wan2.2's 81 frames at 16 fps last 5.06 s, so the
paper scale is VBench-Long; the embedded default (9 frames at 8 fps) is standard.

`vbench.mode: auto` applies that rule to the sampled clips (`sample.frames / sample.fps`); `standard` or `long`
forces one. The benchmark's own mode string then follows from the prompt suite: `vbench_standard` /
`custom_input` for VBench, `long_vbench_standard` / `long_custom_input` for VBench-Long.
"""

from __future__ import annotations

LONG_MIN_SECONDS = 5.0  # VBench's rule: >= 5.0 s -> VBench-Long
RULE = "VBench-Long for clips >= 5.0 s, VBench below (VBench README-FAQ)"

# VBench-Long's per-dimension clip length in seconds (vbench2_beta_long/configs/clip_length_mix.yaml, the default of
# its eval_long.py). The PyPI wheel of vbench 0.1.5 ships the package without its configs/ folder, so the worker
# writes this table for it. In long_custom_input mode VBench-Long splits every video into 2 s clips regardless.
LONG_CLIP_SECONDS = {
    "subject_consistency": 2.0, "background_consistency": 2.0, "motion_smoothness": 2.0,
    "temporal_flickering": 2.0, "dynamic_degree": 2.0, "imaging_quality": 2.0, "aesthetic_quality": 2.0,
    "object_class": 2.0, "multiple_objects": 2.0, "human_action": 10.0, "color": 2.0,
    "spatial_relationship": 2.0, "scene": 2.0, "appearance_style": 2.0, "temporal_style": 10.0,
    "overall_consistency": 10.0,
}


def resolve_benchmark(mode: str, frames: int, fps: int) -> dict:
    """`vbench.mode` -> {"param", "benchmark" (standard | long), "clip_seconds", "rule"}, recorded in every result."""
    if mode not in ("auto", "standard", "long"):
        raise ValueError(f"vbench.mode must be auto, standard or long, got {mode!r}")
    seconds = frames / fps
    benchmark = mode if mode != "auto" else ("long" if seconds >= LONG_MIN_SECONDS else "standard")
    return {"param": mode, "benchmark": benchmark, "clip_seconds": round(seconds, 4), "rule": RULE}


def vbench1_mode(benchmark: str, standard_suite: bool) -> str:
    """The mode string VBench / VBench-Long's `evaluate` takes, from the benchmark and whether the videos are the
    standard prompt suite (`{prompt}-{i}.mp4`) or custom prompts."""
    if benchmark == "long":
        return "long_vbench_standard" if standard_suite else "long_custom_input"
    return "vbench_standard" if standard_suite else "custom_input"


def is_long(vbench_mode: str) -> bool:
    return vbench_mode.startswith("long_")
