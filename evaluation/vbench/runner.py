"""Run VBench-1.0 (isolated venv) or VBench-2.0 (a source checkout + its own python) as subprocesses.

Both return a `VBenchResult`: raw scores of the dimensions that ran, every other requested dimension in
`missing` with the reason (missing weight files with their sources, a refused mode, an environment that could
not be built, an error inside the benchmark), and the official aggregates computed over what ran, marked
partial. Nothing is ever zero-filled. `run_cmd` is injectable so tests drive the interface with a fake runner.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from evaluation.vbench.modes import LONG_CLIP_SECONDS, is_long
from evaluation.vbench.scores import VB2_DIMS, vb1_scores, vb2_scores
from evaluation.vbench.weights import preflight

WORKER = Path(__file__).with_name("worker.py")
RunCmd = Callable[..., subprocess.CompletedProcess]


@dataclass
class VBenchResult:
    version: str  # "vbench1" | "vbench2"
    mode: str
    raw: dict[str, float] = field(default_factory=dict)  # dims that ran: raw benchmark score
    missing: dict[str, list[str]] = field(default_factory=dict)  # dim -> reasons it has no score
    scores: dict = field(default_factory=dict)  # official aggregates over `raw` (partial-marked)
    log_tail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def _default_run(cmd: list[str], *, env: dict, cwd: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)


def run_vbench1(
    videos_dir: str | Path,
    dimensions: list[str],
    *,
    work_dir: str | Path,
    cache_dir: str | None,
    mode: str = "custom_input",
    venv: str | Path = ".venv-vbench",
    python: str | Path | None = None,
    device: str = "cpu",
    full_info: str | None = None,
    videos_per_prompt: int = 5,
    hf_home: str | None = None,
    run_cmd: RunCmd = _default_run,
    build_env: Callable[[str | Path], Path] | None = None,
    log: Callable[[str], None] = print,
) -> VBenchResult:
    """VBench-1.0 on a folder of mp4s. Preflight first; the venv is built only when some dimension can run.

    `mode`: vbench_standard | custom_input (VBench), long_vbench_standard | long_custom_input (VBench-Long, which
    splits each video into clips first; evaluation/vbench/modes.py)."""
    res = VBenchResult(version="vbench1", mode=mode)
    pre = preflight(dimensions, cache_dir, mode=mode, hf_home=hf_home or os.environ.get("HF_HOME"))
    res.missing.update(pre.missing)
    log("[vbench] preflight\n" + pre.report())
    if pre.runnable:
        try:
            if python is None:
                from evaluation.vbench.env import ensure_env

                python = (build_env or ensure_env)(venv)
        except Exception as err:  # noqa: BLE001  (pip failure, no network, ...)
            for dim in pre.runnable:
                res.missing[dim] = [f"VBench environment could not be built: {err}"[:2000]]
        else:
            _run_worker(res, pre.runnable, Path(python), videos_dir, work_dir, cache_dir, mode, device, full_info,
                        videos_per_prompt, run_cmd)
    res.scores = vb1_scores({d: res.raw.get(d) for d in dimensions})
    return res


def _run_worker(res, dims, python, videos_dir, work_dir, cache_dir, mode, device, full_info, videos_per_prompt,
                run_cmd) -> None:
    work = Path(work_dir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    job = {
        "videos_path": str(Path(videos_dir).resolve()),
        "name": "sara",
        "dimensions": dims,
        "mode": mode,
        "device": device,
        "cache_dir": str(Path(cache_dir).expanduser().resolve()) if cache_dir else str(work / "empty_cache"),
        "full_info": full_info,
        "videos_per_prompt": videos_per_prompt,
        "output_path": str(work / "vbench_out"),
        "result_path": str(work / "worker_result.json"),
    }
    if is_long(mode):  # VBench-Long: the per-dimension clip lengths its wheel lacks (evaluation/vbench/modes.py)
        job["long_clip_seconds"] = LONG_CLIP_SECONDS
    (work / "job.json").write_text(json.dumps(job, indent=2))
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "VBENCH_CACHE_DIR": job["cache_dir"], "PYTHONNOUSERSITE": "1"}
    env.pop("PYTHONPATH", None)  # the project's packages must not leak into vbench's interpreter
    proc = run_cmd([str(python), str(WORKER), str(work / "job.json")], env=env, cwd=str(work))
    res.log_tail = ((proc.stdout or "") + (proc.stderr or ""))[-4000:]
    result_path = Path(job["result_path"])
    if proc.returncode != 0 or not result_path.is_file():
        for dim in dims:
            res.missing[dim] = [f"VBench worker failed (exit {proc.returncode}): {res.log_tail[-1500:]}"]
        return
    out = json.loads(result_path.read_text())
    for dim in dims:
        if dim in out.get("dimensions", {}):
            res.raw[dim] = float(out["dimensions"][dim]["raw"])
        else:
            res.missing[dim] = [out.get("errors", {}).get(dim, "no result from the VBench worker")]


def run_vbench2(
    videos_dir: str | Path,
    dimensions: list[str],
    *,
    work_dir: str | Path,
    vbench2_dir: str | None,
    vbench2_python: str | None,
    mode: str = "vbench_standard",
    run_cmd: RunCmd = _default_run,
) -> VBenchResult:
    """VBench-2.0 from its source checkout (`evaluate.py`) with its own python, one dimension per process."""
    from sara.weights import require_dir

    unknown = [d for d in dimensions if d not in VB2_DIMS]
    if unknown:
        raise ValueError(f"vbench.vbench2_dimensions: unknown VBench-2.0 dimension(s) {unknown}; known: {', '.join(VB2_DIMS)}")
    src = require_dir("vbench.vbench2_dir", vbench2_dir, "a VBench-2.0 source checkout (evaluate.py, vbench2/)")
    if not (src / "evaluate.py").is_file():
        raise FileNotFoundError(f"vbench.vbench2_dir = {vbench2_dir!r} has no evaluate.py: it must be the VBench-2.0 folder of the VBench repository")
    if not vbench2_python or not Path(vbench2_python).is_file():
        raise FileNotFoundError(
            f"vbench.vbench2_python = {vbench2_python!r} does not exist: it must be the python of the VBench-2.0 environment (its torch-2.5 era pins)"
        )
    res = VBenchResult(version="vbench2", mode=mode)
    work = Path(work_dir).resolve()
    for dim in dimensions:
        out_dir = work / dim
        out_dir.mkdir(parents=True, exist_ok=True)
        cmd = [
            str(vbench2_python), str(src / "evaluate.py"), "--dimension", dim, "--videos_path", str(Path(videos_dir).resolve()),
            "--output_path", str(out_dir), "--mode", mode, "--load_ckpt_from_local", "True",
        ]
        proc = run_cmd(cmd, env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}, cwd=str(src))
        found = sorted(glob.glob(str(out_dir / "*_eval_results.json")))
        if proc.returncode != 0 or not found:
            tail = ((proc.stdout or "") + (proc.stderr or ""))[-1500:]
            res.missing[dim] = [f"VBench-2.0 evaluate.py failed (exit {proc.returncode}): {tail}"]
            continue
        data = json.loads(Path(found[-1]).read_text())
        value = data.get(dim)
        res.raw[dim] = float(value[0] if isinstance(value, list) else value)
    res.scores = vb2_scores({d: res.raw.get(d) for d in dimensions})
    return res
