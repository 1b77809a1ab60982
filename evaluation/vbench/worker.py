"""Runs INSIDE the isolated VBench environment: `<venv>/bin/python worker.py job.json`.

Imports only the standard library and vbench, so it works with vbench's own pins (numpy<2, transformers 4.33).
The job JSON names the videos, the dimensions, the mode and where to write; the result JSON is
`{"dimensions": {dim: {"raw": float, "n_videos": int}}, "errors": {dim: message}}`. Each dimension runs on its
own so one failure (a missing weight, a library error) is reported for that dimension and the others still run.
A `long_*` mode runs VBench-Long (`vbench2_beta_long.VBenchLong`, shipped in the same wheel) with the defaults of
its `eval_long.py` (no dev branch: in-clip scores only, DINO / CLIP extractors; no semantic scene splitting; no
static filter, as our standard path) and the clip-length table the job carries; its result per dimension is
(score, per-clip results, per-video results), so `n_videos` counts the long videos and `n_clips` the clips.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(job_path: str) -> int:
    with open(job_path) as f:
        job = json.load(f)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # vbench's checkpoints are full pickles
    if job.get("cache_dir"):
        os.environ["VBENCH_CACHE_DIR"] = job["cache_dir"]
    import vbench

    here = os.path.dirname(os.path.abspath(vbench.__file__))
    full_info = job.get("full_info") or os.path.join(here, "VBench_full_info.json")
    out_dir = job["output_path"]
    os.makedirs(out_dir, exist_ok=True)
    long = job["mode"].startswith("long_")
    if long:
        from vbench2_beta_long import VBenchLong as Bench

        extra = long_kwargs(job, out_dir)
    else:
        Bench, extra = vbench.VBench, {}
    device = job.get("device", "cpu")
    if device == "auto":  # resolved here, where vbench has imported torch anyway: the stage process never imports it
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    bench = Bench(device, full_info, out_dir)
    result: dict = {"dimensions": {}, "errors": {}, "mode": job["mode"]}
    for dim in job["dimensions"]:
        try:
            bench.evaluate(
                videos_path=job["videos_path"],
                name=f"{job['name']}_{dim}",
                prompt_list=job.get("prompt_list") or [],
                dimension_list=[dim],
                local=True,  # never let vbench reach the network
                mode=job["mode"],
                **extra,
            )
            with open(os.path.join(out_dir, f"{job['name']}_{dim}_eval_results.json")) as f:
                raw = json.load(f)[dim]
            entry = {"raw": float(raw[0]), "n_videos": len(raw[1])}
            if long:  # (score, per-clip, per-long-video [+ a count record for temporal_flickering])
                entry = {"raw": float(raw[0]), "n_videos": sum(1 for r in raw[2] if "video_path" in r),
                         "n_clips": len(raw[1])}
            result["dimensions"][dim] = entry
        except BaseException as err:  # noqa: BLE001  (SystemExit from a failed wget included)
            result["errors"][dim] = f"{type(err).__name__}: {err}"[:2000]
            traceback.print_exc()
    with open(job["result_path"], "w") as f:
        json.dump(result, f, indent=2)
    return 0


def long_kwargs(job: dict, out_dir: str) -> dict:
    """VBenchLong.evaluate's keyword arguments: the defaults of VBench-Long's eval_long.py without --dev_flag."""
    import vbench2_beta_long

    lengths = os.path.join(out_dir, "clip_length.yaml")  # absolute: VBench-Long joins it onto its configs/ folder
    with open(lengths, "w") as f:
        f.writelines(f"{dim}: {sec}\n" for dim, sec in job["long_clip_seconds"].items())
    configs = os.path.join(os.path.dirname(os.path.abspath(vbench2_beta_long.__file__)), "configs")
    return {
        "clip_length_config": lengths,
        "use_semantic_splitting": False,
        "static_filter_flag": False,
        "dev_flag": False,
        "sb_clip2clip_feat_extractor": "dino",
        "bg_clip2clip_feat_extractor": "clip",
        "w_inclip": 1.0,
        "w_clip2clip": 0.0,
        "imaging_quality_preprocessing_mode": "longer",
        "num_of_samples_per_prompt": int(job.get("videos_per_prompt", 5)),
        "slow_fast_eval_config": os.path.join(configs, "slow_fast_params.yaml"),
        "sb_mapping_file_path": os.path.join(configs, "subject_mapping_table.yaml"),
        "bg_mapping_file_path": os.path.join(configs, "background_mapping_table.yaml"),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
