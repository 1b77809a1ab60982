"""The grounded judge scores a run's videos in worker processes: the same scores as one process, in order.

The lab samples 274 prompts per run; one process scored about one video a second, so the rubric stage sat on the
critical path after the last sampling stage (docs/lab/comparison.md).
"""

from __future__ import annotations

import os

import json
from pathlib import Path

from sara.config import params_from_dict
from sara.io import atomic_dir


def _sampled_run(root: Path, n: int) -> None:
    from sara.data.synthetic import render
    from sara.data.video_io import save_video_and_sheet
    from sara.sample import load_prompts

    items = load_prompts("synthetic")[:n]
    with atomic_dir(root / "base") as tmp:  # what the sample stage writes
        videos = []
        for k, item in enumerate(items):
            frames, _, _ = render(item.spec, 9, 64, 64, 8)
            frames = frames if k % 2 == 0 else frames[:, :, ::-1]  # a mirrored video scores lower: rows differ
            save_video_and_sheet(frames, 8, tmp / f"{item.id}_s0.mp4", tmp / f"{item.id}_s0.png", label="x")
            videos.append({"prompt_id": item.id, "seed": 0, "mp4": f"{item.id}_s0.mp4", "sheet": f"{item.id}_s0.png"})
        (tmp / "index.json").write_text(json.dumps({"videos": videos}))


def test_worker_processes_give_the_scores_of_one_process(tmp_path: Path):
    from evaluation.rubric.evaluate import evaluate_run

    _sampled_run(tmp_path / "samples", 3)
    params = params_from_dict({"sample": {"out_dir": str(tmp_path / "samples"), "fps": 8}})
    one = evaluate_run(params, "base", tmp_path / "one", workers=1)
    three = evaluate_run(params, "base", tmp_path / "three", workers=3)
    assert one == three
    per_video = sorted(p.name for p in (tmp_path / "one").glob("*_s0.json"))
    assert len(per_video) == 3 and per_video == sorted(p.name for p in (tmp_path / "three").glob("*_s0.json"))
    for name in per_video:
        assert json.loads((tmp_path / "one" / name).read_text()) == json.loads((tmp_path / "three" / name).read_text())


def test_grounded_pool_takes_the_stage_share_of_the_cores(monkeypatch):
    """Under `sara repro --jobs N` each stage gets cores // N: a rubric stage beside the trainers must not start a
    process per core of the machine; alone it takes every core it may use, whatever torch's thread count (the
    embedded scale's OMP_NUM_THREADS=1 is about torch's threads, not this pool)."""
    import sara.env as env
    from evaluation.rubric.evaluate import default_workers
    from flows.repro import share_cores

    monkeypatch.setattr(env, "runnable_tasks", lambda: 16)  # a busy machine: no idle core to take
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    for key in ("OMP_NUM_THREADS", "SARA_STAGE_CORES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert default_workers() == 16
    for key, value in share_cores(8, env={}).items():  # what `sara repro --jobs 8` gives each stage
        monkeypatch.setenv(key, value)
    assert default_workers() == 2
    monkeypatch.setenv("SARA_STAGE_CORES", "64")
    assert default_workers() == 16  # never more processes than cores


def test_videos_scored_in_workers_are_not_decoded_again_by_the_stage(tmp_path: Path, monkeypatch):
    """The main process used to decode every video a second time after the pool had scored it, one by one: about
    0.05 s a video, serial, on the lab's critical path (530 prompts per run). With no VLM judge it reads none."""
    import evaluation.rubric.evaluate as ev

    _sampled_run(tmp_path / "samples", 3)
    params = params_from_dict({"sample": {"out_dir": str(tmp_path / "samples"), "fps": 8}})
    reads: list[Path] = []
    real = ev.read_video
    monkeypatch.setattr(ev, "read_video", lambda path, *a, **k: reads.append(Path(path)) or real(path, *a, **k))
    summary = ev.evaluate_run(params, "base", tmp_path / "three", workers=3)
    assert reads == [] and summary["protocols"]["grounded"]["result"]
    ev.evaluate_run(params, "base", tmp_path / "one", workers=1)  # in-process scoring still decodes each video once
    assert len(reads) == 3


def test_a_rubric_stage_that_starts_on_an_idle_machine_takes_the_idle_cores(monkeypatch):
    """The share (cores // jobs) is a floor, not a cap. The lab's last rubric stage is the critical path: it starts
    after the last training and sampling, with most of 16 cores idle, and scored its 274 videos on 2 of them in
    113 s (run 12). It takes the cores nobody runs on, and never fewer than its share."""
    import evaluation.rubric.evaluate as ev
    import sara.env as env

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("SARA_STAGE_CORES", "2")
    monkeypatch.setattr(env, "runnable_tasks", lambda: 3)  # this process and two busy ones
    assert ev.default_workers() == 14  # 16 cores - the 2 busy beside it
    monkeypatch.setattr(env, "runnable_tasks", lambda: 20)  # a crowded machine: the share
    assert ev.default_workers() == 2
    monkeypatch.setattr(env, "runnable_tasks", lambda: None)  # no /proc/loadavg (macOS): the share
    assert ev.default_workers() == 2


def test_runnable_tasks_reads_the_kernels_count_of_running_tasks(tmp_path: Path):
    from sara.env import runnable_tasks

    f = tmp_path / "loadavg"
    f.write_text("7.95 8.10 7.70 5/1203 40112\n")
    assert runnable_tasks(f) == 5
    assert runnable_tasks(tmp_path / "missing") is None
    f.write_text("garbage\n")
    assert runnable_tasks(f) is None


def test_the_judges_worker_processes_yield_the_cores_to_the_trainers():
    """A pool that takes idle cores must not slow a trainer that wakes up beside it: its processes run at a lower
    priority (niceness + JUDGE_NICENESS), so the kernel gives the cores back to the stages on the critical path."""
    from evaluation.rubric.evaluate import JUDGE_NICENESS, judge_pool

    here = os.nice(0)
    with judge_pool(2) as pool:
        assert set(pool.map(os.nice, [0, 0])) == {min(19, here + JUDGE_NICENESS)}
    assert os.nice(0) == here  # the stage's own process keeps its priority
