"""Faults and bad input: one clear line for bad params, weights and data; crashes close their MLflow runs;
checkpoints are never poisoned; nothing unpickles code or listens beyond loopback.

The Stage 2 runs are real `sara train-dit` processes on the tiny base model of tests/stage2_testlib.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import yaml

from sara.config import ParamsError, load_params, params_from_dict
from sara.errors import BadDataError
from sara.train import checkpoint as ckpt
from sara.train.health import UnhealthyStateError
from stage2_testlib import REPO, clean_env, launcher_env, make_clips, sara, sara_here, write_params  # noqa: F401  (fixtures)


def _runs(db: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}")
    exp = client.get_experiment_by_name("sara")
    return [] if exp is None else client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])


def _paper_params(tmp: Path, **dit: object) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["dit"].update(kind="local", base_dir=str(tmp / "models" / "base"), **dit)
    path = tmp / "paper.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


# 1. init-dit: missing paper weights -------------------------------------------------------------------------


@pytest.mark.slow  # a `sara init-dit` process
def test_missing_paper_weights_give_one_line_no_mlflow_run_and_no_temp_folder(tmp_path: Path):
    params = _paper_params(tmp_path, path=str(tmp_path / "nowhere" / "high_noise"))
    r = subprocess.run([sys.executable, "-m", "sara.cli", "init-dit", "--params", str(params)], cwd=tmp_path,
                       env=clean_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: dit.path = '{tmp_path / 'nowhere' / 'high_noise'}' does not exist: it must be a local "
                     "directory containing the Wan2.2 high-noise expert in diffusers format (config.json + safetensors)"],\
        r.stderr[-2000:]
    assert _runs(tmp_path / "mlflow.db") == []  # validated before a run was opened
    assert not (tmp_path / "models").exists() or list((tmp_path / "models").iterdir()) == []


def test_a_failing_init_dit_leaves_no_temp_folder(tmp_path: Path, tracking, monkeypatch):
    import sara.models.dit as dit
    from sara.stages import init_dit

    def boom(params, out):
        (Path(out) / "transformer").mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(dit, "save_base", boom)
    params = params_from_dict({"dit": {"base_dir": str(tmp_path / "models" / "base")}})
    with pytest.raises(RuntimeError, match="disk full"):
        init_dit.run(params)
    assert list((tmp_path / "models").iterdir()) == []


def test_no_stage_hand_rolls_its_own_temp_folder():
    for path in sorted((REPO / "sara" / "stages").glob("*.py")):
        assert "os.getpid()" not in path.read_text(), f"{path.name}: use sara.io.atomic_dir / write_json"


# 2. strict params --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "message"), [
    ({"train": {"lr": float("inf")}}, "train.lr: must be a finite number (got inf)"),
    ({"train": {"steps": True}}, "train.steps: must be a valid integer (got True)"),
    ({"train": {"lr": "1e-4"}}, "train.lr: must be a valid number (got '1e-4')"),
    ({"train": {"zero_stage": True}}, "train.zero_stage: must be an integer, not a boolean (got True)"),
    ({"report": {"main_run": "sara-nand"}},
     "report.main_run = 'sara-nand' is not a run the DAG trains (runs: sft, videorepa, moalign, sara-and, "
     "sara-or, sara-xor)"),
    ({"report": {"main_run": "sara-none"}}, "report.main_run = 'sara-none' is not a run the DAG trains"),
])
def test_params_that_must_be_refused_are_refused_in_one_line(raw: dict, message: str):
    with pytest.raises(ParamsError) as err:
        params_from_dict(raw, "params.yaml")
    assert str(err.value).startswith(f"invalid params in params.yaml: {message}")
    assert "\n" not in str(err.value)


def test_yaml_exponent_floats_still_load_and_tau_may_be_infinite(tmp_path: Path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  lr: 1e-4\ntrd:\n  tau: .inf\n")
    p = load_params(path)
    assert p.train.lr == 1e-4 and p.trd.tau == float("inf")
    path.write_text("train:\n  lr: '1e-4'\n")
    with pytest.raises(ParamsError, match="train.lr: must be a valid number"):
        load_params(path)


# 3. bad data refused by name ---------------------------------------------------------------------------------


@pytest.fixture()
def clips(tmp_path: Path) -> Path:
    root = tmp_path / "clips"
    make_clips(root, n=2)
    return root


def _shrink_masks(path: Path) -> None:
    with np.load(path) as z:
        ids, ent = z["ref_ids"], z["entities"]
    np.savez_compressed(path, ref_ids=ids, entities=ent[:, :, ::2, ::2])  # (K, F, H/2, W/2)


def test_masks_of_the_wrong_shape_are_refused_by_the_masks_stage_naming_clip_and_file(clips: Path, tracking):
    from sara.stages import masks

    _shrink_masks(clips / "clip001" / "masks.npz")
    params = params_from_dict({"data": {"out_dir": str(clips)}, "masks": {"out_dir": str(clips.parent / "masks")}})
    with pytest.raises(BadDataError) as err:
        masks.run(params)
    assert str(err.value) == (f"clip 'clip001': {clips / 'clip001' / 'masks.npz'} holds masks bool (3, 16, 32, 32), "
                              "the clip needs bool (3, 16, 64, 64) (K entities, and the F, H, W of its video)")
    assert not (clips.parent / "masks").exists()


def test_every_mask_reader_refuses_the_wrong_shape_by_clip_and_file(clips: Path, tmp_path: Path):
    from sara.data.clips import import_clip, load_clip
    from sara.masks.store import EntityMasks, load_masks, save_masks

    save_masks(tmp_path / "masks", EntityMasks("clip000", ["OBJECT_1"], np.zeros((1, 16, 32, 32), bool), "sam3"))
    with pytest.raises(BadDataError, match=r"^clip 'clip000': .*masks/clip000.npz holds masks bool \(1, 16, 32, 32\)"):
        load_masks(tmp_path / "masks", "clip000", (16, 64, 64, 3))
    _shrink_masks(clips / "clip001" / "masks.npz")
    with pytest.raises(BadDataError, match=r"^clip 'clip001': .*clip001/masks.npz holds masks"):
        load_clip(clips / "clip001")
    with pytest.raises(BadDataError, match=r"^clip 'real7': .*clip001/masks.npz holds masks"):
        import_clip(clips / "clip001", tmp_path / "imported", "real7", "train")  # folder import names the clip


@pytest.mark.slow  # ffmpeg processes
@pytest.mark.parametrize("damage", ["truncated", "empty", "zero_frames"])
def test_a_broken_video_is_one_error_naming_clip_and_file(clips: Path, tmp_path: Path, damage: str):
    import imageio_ffmpeg

    from sara.data.clips import import_clip, load_clip

    video = clips / "clip000" / "video.mp4"
    if damage == "truncated":
        video.write_bytes(video.read_bytes()[: video.stat().st_size // 3])
    elif damage == "empty":
        video.write_bytes(b"")
    else:
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "lavfi", "-i",
                        "color=c=black:s=64x64:r=8", "-frames:v", "0", "-c:v", "libx264", str(video)], check=True)
    for read in (lambda: load_clip(clips / "clip000"),
                 lambda: import_clip(clips / "clip000", tmp_path / "imported", "clip000", "train")):
        with pytest.raises(BadDataError) as err:
            read()
        msg = str(err.value)
        assert msg.startswith(f"clip 'clip000': {video} ") and "\n" not in msg and "ffmpeg version" not in msg


# 4. never poison checkpoints ---------------------------------------------------------------------------------


@pytest.mark.slow  # a Stage 2 run in this process (DeepSpeed)
def test_a_diverging_run_writes_no_checkpoint_and_names_no_bad_one(workspace: Path, launcher_env):
    """In this process: an lr of 1e30 breaks the weights in step 1; the run stops before writing that checkpoint."""
    from sara.runs import Run
    from sara.train.stage2 import train_stage2

    tmp = workspace / "diverge"
    tmp.mkdir()
    params = load_params(write_params(tmp, "p", lr=1e30, warmup_steps=0, checkpoint_every=1))
    with pytest.raises(UnhealthyStateError) as err:
        train_stage2(params, Run("sft"), resume=False, progress=False)
    assert "step 1 diverged, no checkpoint written" in str(err.value)
    assert "last good checkpoint: none" in str(err.value)
    assert ckpt.latest_tag(tmp / "state" / "sft") is None  # nothing a rerun could resume


def _poison(state: Path) -> None:
    """Overwrite one weight of the latest DeepSpeed checkpoint with inf (what an lr of inf used to save)."""
    f = state / ckpt.latest_tag(state) / "mp_rank_00_model_states.pt"
    sd = torch.load(f, map_location="cpu", weights_only=False)
    key = next(k for k, v in sd["module"].items() if torch.is_floating_point(v))
    sd["module"][key] = torch.full_like(sd["module"][key], float("inf"))
    torch.save(sd, f)


# 5. runs end KILLED; a resume shows the whole curve ----------------------------------------------------------


@pytest.mark.slow  # a Stage 2 run in this process (DeepSpeed)
def test_sigterm_ends_the_run_killed_and_a_poisoned_state_is_not_resumed(workspace: Path, tmp_path: Path, tracking,
                                                                        monkeypatch, capsys, launcher_env):
    """In this process: `sara train-dit` gets SIGTERM right after logging step 3 (what a cancelled sweep sends).
    The run stops like on Ctrl-C, exit status 143, its MLflow run KILLED, the step-2 checkpoint the last one."""
    import signal

    import sara.tracking
    from sara.cli import main

    tmp = workspace / "term"
    tmp.mkdir()
    monkeypatch.chdir(tmp)
    params = str(write_params(tmp, "p"))
    log_metrics = sara.tracking.log_metrics

    def log_then_terminate(metrics, step=None):
        log_metrics(metrics, step=step)
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered here, to the main thread, like from outside

    monkeypatch.setattr(sara.tracking, "log_metrics", log_then_terminate)
    assert main(["train-dit", "--params", params, "--run", "sft"]) == 143
    err = capsys.readouterr().err
    assert "interrupted: stopped by SIGTERM\n" in err and "Traceback" not in err
    [run] = _runs(tmp_path / "mlflow.db")  # conftest's `tracking` database
    assert run.info.status == "KILLED" and run.data.tags["sara.killed_by"] == "stopped by SIGTERM"
    assert [m.step for m in tracking.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3]
    assert ckpt.latest_tag(tmp / "state" / "sft") == "step_0000002"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the stage's handler is gone with its run

    monkeypatch.setattr(sara.tracking, "log_metrics", log_metrics)
    _poison(tmp / "state" / "sft")  # 4. a bad state is never resumed (weights_only DeepSpeed load included)
    with pytest.raises(UnhealthyStateError) as bad:
        main(["train-dit", "--params", params, "--run", "sft"])
    assert f"checkpoint {tmp / 'state' / 'sft' / 'step_0000002'} not resumed" in str(bad.value)
    assert "1/" in str(bad.value) and "weight tensors diverged" in str(bad.value)


@pytest.mark.slow(wall_s=22)  # a `sara train-dit` process killed, its resume in this process
def test_after_kill_9_the_resume_marks_the_orphan_killed_and_shows_the_whole_curve(workspace: Path):
    tmp = workspace / "orphan"
    tmp.mkdir()
    params = str(write_params(tmp, "p"))
    killed = sara(tmp, "train-dit", "--params", params, "--run", "sft", fault="kill@3")
    assert killed.returncode == -9
    [orphan] = _runs(tmp / "mlflow.db")
    assert orphan.info.status == "RUNNING"
    resumed = sara_here(tmp, "train-dit", "--params", params, "--run", "sft")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from 2" in resumed.stdout
    old, new = _runs(tmp / "mlflow.db")
    assert old.info.run_id == orphan.info.run_id and old.info.status == "KILLED"
    assert new.info.status == "FINISHED" and new.data.tags["sara.continues_run_id"] == old.info.run_id
    assert old.data.tags["sara.continued_in"] == new.info.run_id
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    assert [m.step for m in client.get_metric_history(new.info.run_id, "loss")] == [1, 2, 3, 4, 5, 6]


# 6. concurrent first use of a new mlflow.db ------------------------------------------------------------------

WRITER = """
import sys, time
from pathlib import Path
from sara.config import Params
from sara.tracking import log_metrics, stage_run
folder = Path(sys.argv[1])
(folder / f"ready{sys.argv[2]}").touch()
deadline = time.monotonic() + 120
while not (folder / "go").exists():  # start every writer at the same moment
    if time.monotonic() > deadline:
        raise SystemExit("no go")
with stage_run("writer", Params(), ["project"], variant=sys.argv[2]):
    log_metrics({"x": 1.0}, step=1)
"""


@pytest.mark.slow  # four Python processes opening MLflow
def test_concurrent_writers_on_a_new_mlflow_db_all_succeed(tmp_path: Path):
    n = 4
    env = {**clean_env(tmp_path), "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(n)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready*"))) < n and time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.01)  # polling for the writers to be ready, not timing them
    (tmp_path / "go").touch()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc == 0, err[-2000:]
    assert sorted(r.info.run_name for r in _runs(tmp_path / "mlflow.db")) == [f"writer/{i}" for i in range(n)]


# 7. no pickle loads ------------------------------------------------------------------------------------------


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_aligner_or_train_state_runs_no_code(tmp_path: Path):
    import pickle

    from sara.models.aligner import load_aligner

    marker = tmp_path / "pwned"
    crafted = tmp_path / "aligner.pt"
    torch.save({"state_dict": _Payload(marker)}, crafted)
    with pytest.raises(pickle.UnpicklingError):
        load_aligner(crafted)
    assert not marker.exists()
    from sara.train.engine import weights_only_loads

    with weights_only_loads(), pytest.raises(pickle.UnpicklingError):  # what DeepSpeed's own loads go through
        torch.load(crafted, map_location="cpu", weights_only=False)
    assert not marker.exists()


def test_a_shell_that_exports_no_weights_only_still_resumes_with_weights_only_loads(tmp_path: Path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 in the environment (a common workaround for old checkpoints; VBench's
    worker sets it) made every resume fail: torch refuses a load when both it and the TORCH_FORCE_WEIGHTS_ONLY_LOAD
    that `weights_only_loads` sets are there. Inside the block the former is unset; afterwards it is back."""
    import pickle

    from sara.train.engine import weights_only_loads

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    plain, crafted = tmp_path / "state.pt", tmp_path / "crafted.pt"
    torch.save({"module": {"w": torch.ones(2)}}, plain)
    torch.save({"state_dict": _Payload(tmp_path / "pwned")}, crafted)
    with weights_only_loads():
        assert torch.equal(torch.load(plain, map_location="cpu", weights_only=False)["module"]["w"], torch.ones(2))
        with pytest.raises(pickle.UnpicklingError):
            torch.load(crafted, map_location="cpu", weights_only=False)
    assert not (tmp_path / "pwned").exists()
    assert os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] == "1" and "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_a_crafted_stage1_train_state_runs_no_code(tmp_path: Path):
    import pickle

    from sara.train.stage1 import TRAIN_STATE, train_aligner
    from aligner_testlib import GRID, stage1_examples, stage1_params, tiny_text

    marker = tmp_path / "pwned"
    (tmp_path / "work").mkdir()
    torch.save({"fingerprint": "f", "aligner": _Payload(marker)}, tmp_path / "work" / TRAIN_STATE)
    with pytest.raises(pickle.UnpicklingError):
        train_aligner(stage1_examples(), tiny_text(tmp_path), 16, GRID, stage1_params(steps=2), tmp_path / "work",
                      device=torch.device("cpu"), fingerprint="f", progress=False)
    assert not marker.exists()


# 8. loopback only --------------------------------------------------------------------------------------------

PORTS = """
import psutil, torch
from sara.train.engine import init_distributed
init_distributed("cpu")
torch.distributed.barrier()
print([c.laddr.ip for c in psutil.Process().net_connections(kind="inet") if c.status == psutil.CONN_LISTEN])
"""


@pytest.mark.slow  # a process initialising DeepSpeed
def test_single_rank_training_listens_on_loopback_only(tmp_path: Path):
    env = {**clean_env(tmp_path), "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, "-c", PORTS], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    addresses = json.loads(r.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert all(a.startswith("127.") or a == "::1" for a in addresses), addresses


# 9. VBench prompt names checked before any work --------------------------------------------------------------


@pytest.mark.parametrize(("prompt", "message"), [
    ("AC/DC on stage", "prompt 2: VBench prompt contains '/' or NUL, which cannot be in a file name"),
    ("a" * 260, "prompt 2: VBench prompt 'aaaa"),
])
def test_vbench_prompt_names_are_checked_before_any_video_is_sampled(tmp_path: Path, monkeypatch, prompt, message):
    import sara.sample as sample_mod

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled before the VBench prompts were checked")

    monkeypatch.setattr(sample_mod, "Sampler", no_sampling)
    suite = tmp_path / "prompts.txt"
    suite.write_text(f"a cat on a mat\n{prompt}\n")
    params = params_from_dict({"sample": {"vbench_prompts": str(suite)}})
    with pytest.raises(ValueError) as err:
        sample_mod.sample_run(params, "base", tmp_path / "out")
    assert str(err.value).startswith(f"{suite}: {message}")
    if len(prompt) > 255:
        assert "more than the 255 bytes a file name may have" in str(err.value)
