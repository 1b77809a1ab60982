"""VBench preflight (every missing file named with its source) and the subprocess interface, with fake runners."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from evaluation.vbench.env import VBENCH_PINS, install_commands
from evaluation.vbench.runner import WORKER, run_vbench1, run_vbench2
from evaluation.vbench.scores import normalize_vb1
from evaluation.vbench.weights import ALL_DIMS, WEIGHTS, preflight


def test_without_weights_only_temporal_flickering_runs_and_every_missing_file_is_named():
    pre = preflight(list(ALL_DIMS), None, mode="vbench_standard")
    assert pre.runnable == ["temporal_flickering"]
    assert set(pre.missing) == set(ALL_DIMS) - {"temporal_flickering"}
    bg = pre.missing["background_consistency"]
    assert bg == ["$VBENCH_CACHE_DIR/clip_model/ViT-B-32.pt (vbench.cache_dir not set) (from https://openaipublic.azureedge.net/clip/models/"
                  "40d365715913c9da98579312b702a82c18be219cc2a73407c4526f58eba950af/ViT-B-32.pt)"]
    assert any("detectron2" in p for p in pre.missing["color"])
    assert len(pre.missing["overall_consistency"]) == 2  # ViCLIP weights and its BPE vocabulary
    assert "subject_consistency: missing" in pre.report()


def test_weights_present_make_a_dimension_runnable(tmp_path):
    for w in WEIGHTS["background_consistency"] + WEIGHTS["subject_consistency"] + WEIGHTS["appearance_style"]:
        p = tmp_path / w.path
        if w.kind == "dir":
            p.mkdir(parents=True)
        else:
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    pre = preflight(["background_consistency", "subject_consistency", "motion_smoothness", "appearance_style"], tmp_path, mode="custom_input")
    assert pre.runnable == ["background_consistency", "subject_consistency"]
    assert pre.missing["motion_smoothness"] == [f"{tmp_path}/amt_model/amt-s.pth (from https://huggingface.co/lalala125/AMT/resolve/main/amt-s.pth)"]
    # weights present, but vbench refuses the dimension on custom prompts
    assert pre.missing["appearance_style"][0].startswith("needs the standard VBench prompt suite")


def test_unknown_dimension_is_refused():
    with pytest.raises(ValueError, match=r"vbench.dimensions: unknown VBench-1.0 dimension\(s\) \['flicker'\]"):
        preflight(["flicker"], None)


class FakeRunner:
    """Stands in for the VBench venv's python: records the command and writes a scripted worker result."""

    def __init__(self, result: dict | None, returncode: int = 0):
        self.result, self.returncode, self.calls = result, returncode, []

    def __call__(self, cmd, *, env, cwd=None):
        self.calls.append({"cmd": cmd, "env": env, "cwd": cwd})
        job = json.loads(Path(cmd[-1]).read_text())
        if self.result is not None:
            Path(job["result_path"]).write_text(json.dumps(self.result))
        return subprocess.CompletedProcess(cmd, self.returncode, stdout="worker log", stderr="")


def test_vbench1_runs_only_runnable_dimensions_through_the_worker(tmp_path):
    fake = FakeRunner({"dimensions": {"temporal_flickering": {"raw": 0.97, "n_videos": 18}}, "errors": {}})
    res = run_vbench1(tmp_path / "videos", ["temporal_flickering", "dynamic_degree"], work_dir=tmp_path / "work",
                      cache_dir=None, python="/fake/python", run_cmd=fake, log=lambda s: None)
    (call,) = fake.calls
    assert call["cmd"][:2] == ["/fake/python", str(WORKER)]
    job = json.loads(Path(call["cmd"][2]).read_text())
    assert job["dimensions"] == ["temporal_flickering"] and job["mode"] == "custom_input"
    assert call["env"]["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "PYTHONPATH" not in call["env"]
    assert res.raw == {"temporal_flickering": 0.97}
    assert "raft-things.pth" in res.missing["dynamic_degree"][0]
    q = res.scores["Quality"]
    assert q["score"] == pytest.approx(normalize_vb1("temporal_flickering", 0.97)) and q["partial"] is True
    assert res.scores["Semantic"]["score"] is None and res.scores["Total"]["score"] is None


def test_nothing_runnable_never_builds_the_environment(tmp_path):
    def build(_):
        raise AssertionError("must not build")

    res = run_vbench1(tmp_path, ["dynamic_degree"], work_dir=tmp_path / "w", cache_dir=None, build_env=build, log=lambda s: None)
    assert res.raw == {} and list(res.missing) == ["dynamic_degree"]


def test_environment_build_failure_reports_the_dimension_missing_with_the_reason(tmp_path):
    def build(_):
        raise RuntimeError("pip could not reach the index")

    res = run_vbench1(tmp_path, ["temporal_flickering"], work_dir=tmp_path / "w", cache_dir=None, build_env=build, log=lambda s: None)
    assert res.raw == {}
    assert res.missing == {"temporal_flickering": ["VBench environment could not be built: pip could not reach the index"]}
    assert res.scores["Quality"]["score"] is None


def test_worker_errors_and_crashes_are_reported_per_dimension(tmp_path):
    fake = FakeRunner({"dimensions": {}, "errors": {"temporal_flickering": "AssertionError: no frames"}})
    res = run_vbench1(tmp_path, ["temporal_flickering"], work_dir=tmp_path / "w", cache_dir=None, python="p", run_cmd=fake, log=lambda s: None)
    assert res.missing == {"temporal_flickering": ["AssertionError: no frames"]}
    crash = FakeRunner(None, returncode=1)
    res = run_vbench1(tmp_path, ["temporal_flickering"], work_dir=tmp_path / "w2", cache_dir=None, python="p", run_cmd=crash, log=lambda s: None)
    assert res.missing["temporal_flickering"][0].startswith("VBench worker failed (exit 1): worker log")


def test_install_commands_pin_vbench_beside_the_cpu_torch(tmp_path):
    cmds = install_commands(tmp_path / "venv", python="python3")
    assert cmds[0] == ["python3", "-m", "venv", str(tmp_path / "venv")]
    assert "torch==2.13.0" in cmds[1] and "setuptools<81" in cmds[1]
    assert all(p in cmds[2] for p in VBENCH_PINS)


def test_vbench2_needs_its_checkout_and_python(tmp_path):
    with pytest.raises(FileNotFoundError, match="vbench.vbench2_dir is not set: it must name a local directory containing a VBench-2.0 source checkout"):
        run_vbench2(tmp_path, ["Human_Anatomy"], work_dir=tmp_path / "w", vbench2_dir=None, vbench2_python=None)
    src = tmp_path / "VBench-2.0"
    src.mkdir()
    with pytest.raises(FileNotFoundError, match="has no evaluate.py"):
        run_vbench2(tmp_path, ["Human_Anatomy"], work_dir=tmp_path / "w", vbench2_dir=str(src), vbench2_python=None)
    (src / "evaluate.py").write_text("")
    with pytest.raises(FileNotFoundError, match="vbench.vbench2_python = None does not exist"):
        run_vbench2(tmp_path, ["Human_Anatomy"], work_dir=tmp_path / "w", vbench2_dir=str(src), vbench2_python=None)
    with pytest.raises(ValueError, match="unknown VBench-2.0 dimension"):
        run_vbench2(tmp_path, ["anatomy"], work_dir=tmp_path / "w", vbench2_dir=str(src), vbench2_python="p")


def test_vbench2_runs_each_dimension_and_aggregates(tmp_path):
    src = tmp_path / "VBench-2.0"
    src.mkdir()
    (src / "evaluate.py").write_text("")
    py = tmp_path / "python"
    py.write_text("")
    calls = []

    def fake(cmd, *, env, cwd=None):
        calls.append(cmd)
        dim = cmd[cmd.index("--dimension") + 1]
        out = Path(cmd[cmd.index("--output_path") + 1])
        if dim == "Human_Anatomy":
            (out / "results_2026_eval_results.json").write_text(json.dumps({dim: [0.9, [{"video_path": "a"}]]}))
            return subprocess.CompletedProcess(cmd, 0, "", "")
        return subprocess.CompletedProcess(cmd, 1, "", "CUDA out of memory")

    res = run_vbench2(tmp_path, ["Human_Anatomy", "Human_Clothes"], work_dir=tmp_path / "w", vbench2_dir=str(src), vbench2_python=str(py), run_cmd=fake)
    assert len(calls) == 2 and calls[0][1] == str(src / "evaluate.py")
    assert res.raw == {"Human_Anatomy": 0.9}
    assert "CUDA out of memory" in res.missing["Human_Clothes"][0]
    assert res.scores["categories"]["Human Fidelity"]["score"] == 0.9 and res.scores["Final"]["partial"] is True


def test_a_sweep_points_temp_copy_uses_the_checkouts_vbench_venv(tmp_path, monkeypatch):
    """A DVC temp experiment copy (one per sweep point) must not build a VBench venv of its own."""
    import evaluation.vbench.env as env
    from sara.env import workspace_root

    checkout = tmp_path / "repo"
    copy = checkout / ".dvc" / "tmp" / "exps" / "standalone" / "tmpab12cd"
    copy.mkdir(parents=True)
    (checkout / "dvc.yaml").write_text("stages: {}\n")
    (copy / "dvc.yaml").write_text("stages: {}\n")
    assert workspace_root(copy) == checkout and workspace_root(checkout) == checkout
    seen = []
    monkeypatch.setattr(env, "is_ready", lambda venv, root: seen.append(venv) or True)
    env.ensure_env(".venv-vbench", root=copy)
    assert seen == [checkout / ".venv-vbench"]


# ----------------------------------------------------------------------------------------------------------------
# vbench.mode: VBench or VBench-Long by VBench's documented 5-second rule


def test_benchmark_follows_vbenchs_five_second_rule():
    from evaluation.vbench.modes import resolve_benchmark, vbench1_mode

    wan = resolve_benchmark("auto", 81, 16)  # Wan2.2: 81 frames at 16 fps = 5.06 s
    assert wan["benchmark"] == "long" and wan["clip_seconds"] == 5.0625 and wan["param"] == "auto"
    assert resolve_benchmark("auto", 80, 16)["benchmark"] == "long"  # exactly 5.0 s: VBench-Long (>= 5.0 s)
    assert resolve_benchmark("auto", 79, 16)["benchmark"] == "standard"
    assert resolve_benchmark("auto", 9, 8)["benchmark"] == "standard"  # the embedded default
    assert resolve_benchmark("standard", 81, 16)["benchmark"] == "standard"  # forced either way
    assert resolve_benchmark("long", 9, 8)["benchmark"] == "long"
    assert [vbench1_mode(b, s) for b in ("standard", "long") for s in (True, False)] == [
        "vbench_standard", "custom_input", "long_vbench_standard", "long_custom_input"]


def test_long_custom_input_refuses_what_custom_input_refuses():
    pre = preflight(["temporal_flickering", "color"], None, mode="long_custom_input")
    assert pre.runnable == ["temporal_flickering"]
    assert "refuses it in long_custom_input mode" in pre.missing["color"][0]


def _sampled_runs(root: Path, runs=("base", "sara-or")) -> None:
    for run in runs:
        (root / run).mkdir(parents=True)
        (root / run / "index.json").write_text("[]")
        (root / run / "a red circle moves right-0.mp4").write_bytes(b"mp4")


@pytest.mark.parametrize("frames,fps,mode,benchmark,vb_mode", [
    (9, 8, "auto", "standard", "custom_input"),
    (81, 16, "auto", "long", "long_custom_input"),
    (81, 16, "standard", "standard", "custom_input"),
])
def test_both_benchmarks_plumb_temporal_flickering_and_record_the_choice(tmp_path, monkeypatch, frames, fps, mode,
                                                                         benchmark, vb_mode):
    import evaluation.vbench.runner as runner
    from sara.config import params_from_dict
    from sara.stages.vbench import evaluate

    _sampled_runs(tmp_path / "samples")
    jobs = []

    class SplittingRunner(FakeRunner):  # VBench-Long writes split_clip/ into the videos folder
        def __call__(self, cmd, *, env, cwd=None):
            job = json.loads(Path(cmd[-1]).read_text())
            jobs.append(job)
            if job["mode"].startswith("long_"):
                (Path(job["videos_path"]) / "split_clip" / "x").mkdir(parents=True)
            return super().__call__(cmd, env=env, cwd=cwd)

    fake = SplittingRunner({"dimensions": {"temporal_flickering": {"raw": 0.95, "n_videos": 1}}, "errors": {}})
    real = runner.run_vbench1
    monkeypatch.setattr(runner, "run_vbench1", lambda *a, **k: real(*a, **{**k, "python": "/fake/python", "run_cmd": fake}))
    params = params_from_dict({
        "sample": {"out_dir": str(tmp_path / "samples"), "frames": frames, "fps": fps},
        "vbench": {"mode": mode, "out_dir": str(tmp_path / "vb"), "device": "cpu"},
    })
    for run in ("base", "sara-or"):  # one run per call (the per-run vbench stage)
        res = evaluate(params, run, tmp_path / "vb" / run, log=lambda s: None)
        assert res["benchmark"]["benchmark"] == benchmark and res["benchmark"]["param"] == mode
        assert res["benchmark"]["clip_seconds"] == round(frames / fps, 4)
        assert res["mode"] == vb_mode and res["vbench1"]["mode"] == vb_mode
        assert res["vbench1"]["raw"] == {"temporal_flickering": 0.95}
        assert not (tmp_path / "vb" / run / "videos").exists()  # scaffolding (and split_clip/) removed
        assert (tmp_path / "samples" / run / "a red circle moves right-0.mp4").is_file()  # never the videos
    assert [j["mode"] for j in jobs] == [vb_mode] * 2
    assert all(("long_clip_seconds" in j) == (benchmark == "long") for j in jobs)
    if benchmark == "long":
        assert jobs[0]["long_clip_seconds"]["temporal_flickering"] == 2.0
        assert jobs[0]["long_clip_seconds"]["overall_consistency"] == 10.0


def _fake_vbench_modules(monkeypatch, calls: list) -> None:
    """`vbench` and `vbench2_beta_long` stand-ins: record the evaluate call and write VBench's result file."""
    import sys
    import types

    def make(name, result):
        class Bench:
            def __init__(self, device, full_info, output_path):
                self.output_path, self.device = output_path, device

            def evaluate(self, videos_path, name, prompt_list, dimension_list, local, mode, **kw):
                calls.append({"cls": cls_name, "mode": mode, "local": local, "kwargs": kw, "device": self.device})
                (Path(self.output_path) / f"{name}_eval_results.json").write_text(json.dumps({dimension_list[0]: result}))

        cls_name = name
        return Bench

    clips = [{"video_path": f"v/split_clip/a-0/a-0_00{i}.mp4", "video_results": 0.9} for i in range(3)]
    vb = types.ModuleType("vbench")
    vb.__file__ = "/fake/site/vbench/__init__.py"
    vb.VBench = make("VBench", [0.97, [{"video_path": "a-0.mp4", "video_results": 0.97}]])
    long = types.ModuleType("vbench2_beta_long")
    long.__file__ = "/fake/site/vbench2_beta_long/__init__.py"
    long.VBenchLong = make("VBenchLong", [0.9, clips, [{"video_path": "v/a-0.mp4", "video_results": 0.9},
                                                       {"long_video_cnt": 1}]])
    monkeypatch.setitem(sys.modules, "vbench", vb)
    monkeypatch.setitem(sys.modules, "vbench2_beta_long", long)
    for key in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "VBENCH_CACHE_DIR"):  # the worker sets them for its own process:
        monkeypatch.setenv(key, "")  # recorded, so the test's end puts back what was there (nothing), not what the
        monkeypatch.delenv(key)  # worker set for the tests after it


@pytest.mark.parametrize("mode", ["custom_input", "long_custom_input", "long_vbench_standard"])
def test_worker_runs_vbench_or_vbench_long_with_its_documented_arguments(tmp_path, monkeypatch, mode):
    from evaluation.vbench import worker
    from evaluation.vbench.modes import LONG_CLIP_SECONDS

    calls: list = []
    _fake_vbench_modules(monkeypatch, calls)
    job = {"videos_path": str(tmp_path / "videos"), "name": "sara", "dimensions": ["temporal_flickering"],
           "mode": mode, "device": "cpu", "cache_dir": None, "full_info": None, "output_path": str(tmp_path / "out"),
           "result_path": str(tmp_path / "result.json"), "videos_per_prompt": 5}
    if mode.startswith("long_"):
        job["long_clip_seconds"] = LONG_CLIP_SECONDS
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert worker.main(str(tmp_path / "job.json")) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    (call,) = calls
    assert call["mode"] == mode and call["local"] is True
    if mode == "custom_input":
        assert call["cls"] == "VBench" and call["kwargs"] == {}
        assert result["dimensions"]["temporal_flickering"] == {"raw": 0.97, "n_videos": 1}
        return
    kw = call["kwargs"]
    assert call["cls"] == "VBenchLong"
    assert kw["static_filter_flag"] is False and kw["use_semantic_splitting"] is False and kw["dev_flag"] is False
    assert (kw["w_inclip"], kw["w_clip2clip"]) == (1.0, 0.0) and kw["num_of_samples_per_prompt"] == 5
    lengths = dict(line.split(": ") for line in Path(kw["clip_length_config"]).read_text().splitlines())
    assert Path(kw["clip_length_config"]).is_absolute() and lengths["temporal_flickering"] == "2.0"
    assert result["dimensions"]["temporal_flickering"] == {"raw": 0.9, "n_videos": 1, "n_clips": 3}


def test_the_vbench_stage_leaves_device_auto_to_the_worker(tmp_path, monkeypatch):
    """The stage process imported torch (~1.5 s of start-up per vbench stage) only to turn `vbench.device: auto`
    into cpu or cuda for the worker, which imports torch anyway: now the worker resolves it."""
    import subprocess
    import sys

    import torch

    from evaluation.vbench import worker

    code = ("import sys; from sara.stages.vbench import worker_device; "
            "assert worker_device('auto') == 'auto' and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
    calls: list = []
    _fake_vbench_modules(monkeypatch, calls)
    job = {"videos_path": str(tmp_path / "videos"), "name": "sara", "dimensions": ["temporal_flickering"],
           "mode": "custom_input", "device": "auto", "cache_dir": None, "full_info": None,
           "output_path": str(tmp_path / "out"), "result_path": str(tmp_path / "result.json"), "videos_per_prompt": 5}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert worker.main(str(tmp_path / "job.json")) == 0
    assert calls[0]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
