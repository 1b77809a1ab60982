"""Runs INSIDE the isolated VBench environment: `<venv>/bin/python worker.py job.json`.

Imports only the standard library and vbench, so it works with vbench's own pins (numpy<2, transformers 4.33).
The job JSON names the videos, the dimensions, the mode and where to write; the result JSON is
`{"dimensions": {dim: {"raw": float, "n_videos": int}}, "errors": {dim: message}}`. Each dimension runs on its
own so one failure (a missing weight, a library error) is reported for that dimension and the others still run.
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
    from vbench import VBench

    here = os.path.dirname(os.path.abspath(__import__("vbench").__file__))
    full_info = job.get("full_info") or os.path.join(here, "VBench_full_info.json")
    out_dir = job["output_path"]
    os.makedirs(out_dir, exist_ok=True)
    bench = VBench(job.get("device", "cpu"), full_info, out_dir)
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
            )
            with open(os.path.join(out_dir, f"{job['name']}_{dim}_eval_results.json")) as f:
                raw = json.load(f)[dim]
            score, per_video = raw[0], raw[1]
            result["dimensions"][dim] = {"raw": float(score), "n_videos": len(per_video)}
        except BaseException as err:  # noqa: BLE001  (SystemExit from a failed wget included)
            result["errors"][dim] = f"{type(err).__name__}: {err}"[:2000]
            traceback.print_exc()
    with open(job["result_path"], "w") as f:
        json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
