"""Grounded-judge throughput (videos/s) of one rubric stage against the processes its pool takes.

Why: the lab's last rubric stage sits on the critical path after the last training and sampling. Its pool took
the stage's share of the cores (cores // jobs: 2 of 16 under `sara repro --jobs 8`) and scored run 12's 274
videos in 113 s while most cores idled; it now takes the idle cores when it starts (evaluation/rubric/evaluate.py,
`default_workers`). This measures what that is worth: the ground-truth clips of the first N prompts of a set,
written as a sampled run, then `evaluate_run` of that run with each pool size, timed.

    python benchmarks/grounded_judge.py --videos 256 --workers 2,4,8,16 >> benchmarks/grounded_judge.md
    python benchmarks/grounded_judge.py --videos 6 --workers 1,2            # CPU smoke run

One markdown row per pool size: videos, processes, seconds, videos/s, speed-up over the first size, machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAMES, SIZE, FPS = 17, 64, 8  # the lab's clip (configs/lab.yaml sample.frames/height/width/fps)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompt-set", default="lab530", help="prompt set whose ground truth is judged (sara/data/prompts)")
    ap.add_argument("--videos", type=int, default=256, help="the first N prompts with a scene spec")
    ap.add_argument("--workers", default="2,4,8,16", help="comma-separated pool sizes")
    args = ap.parse_args(argv)
    args.sizes = [int(x) for x in args.workers.split(",") if x.strip()]
    if args.videos < 1 or not args.sizes or min(args.sizes) < 1:
        ap.error("--videos and every --workers size must be >= 1")
    return args


def _write_clip(spec: dict, path: Path) -> None:
    from sara.data.synthetic import SceneSpec, render
    from sara.data.video_io import save_video_and_sheet

    frames, _, _ = render(SceneSpec.model_validate(spec), FRAMES, SIZE, SIZE, FPS)
    save_video_and_sheet(frames, FPS, path, path.with_suffix(".png"), label="truth")


def sampled_run(root: Path, prompt_set: str, n: int) -> int:
    """The ground truth of the first `n` prompts with a spec, written as the sample stage writes a run `truth`."""
    from sara.data.prompts import load_prompt_set

    items = [i for i in load_prompt_set(prompt_set) if i.spec is not None][:n]
    folder = root / "truth"
    folder.mkdir(parents=True)
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write_clip, [i.spec.model_dump(mode="json") for i in items],
                      [folder / f"{i.id}_s0.mp4" for i in items]))
    videos = [{"prompt_id": i.id, "seed": 0, "mp4": f"{i.id}_s0.mp4", "sheet": f"{i.id}_s0.png"} for i in items]
    (folder / "index.json").write_text(json.dumps({"videos": videos}))
    return len(items)


def main(argv: list[str] | None = None) -> list[str]:
    from evaluation.rubric.evaluate import evaluate_run
    from sara.config import params_from_dict

    args = parse_args(argv)
    root = Path(tempfile.mkdtemp())
    n = sampled_run(root / "samples", args.prompt_set, args.videos)
    params = params_from_dict({"sample": {"out_dir": str(root / "samples"), "prompt_set": args.prompt_set,
                                          "frames": FRAMES, "height": SIZE, "width": SIZE, "fps": FPS}})
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    rows, first = [], None
    for k in args.sizes:
        t0 = time.perf_counter()
        evaluate_run(params, "truth", root / f"rubric{k}", workers=k)
        dt = time.perf_counter() - t0
        first = first or dt
        row = f"| {args.prompt_set} | {n} | {k} | {dt:.1f} | {n / dt:.2f} | {first / dt:.1f}x | {machine} |"
        print(row, flush=True)
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
