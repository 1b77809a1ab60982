"""Stage 2 under DeepSpeed on CPU: exact kill-and-resume, NaN stop, 2 gloo ranks, checkpoint bookkeeping.

The runs are real `sara train-dit` processes (DeepSpeed, gloo, fp32) on a tiny base model and 4 synthetic clips.
DeepSpeed's shared-memory op is not built on CPU (sara/train/engine.py); training never uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sara.train import checkpoint as ckpt
from stage2_testlib import REPO, make_clips, sara, sara_here, weights, write_params


@pytest.mark.slow(wall_s=25)  # two `sara train-dit` processes killed, four runs in this process (DeepSpeed)
def test_kill_and_resume_gives_the_same_final_weights_as_an_uninterrupted_run(workspace: Path):
    """Killed after step 3 and resumed, a run ends bitwise where an uninterrupted one does, with per-step encoding and
    with train.cache_frozen_inputs (each clip's latent and caption encoded once, benchmarks/stage2_step.md: the
    resumed run rebuilds the same cache); the cached run matches per-step encoding up to rounding. One uninterrupted
    run of each kind serves both comparisons."""
    a, b = workspace / "uninterrupted", workspace / "killed"
    a.mkdir(), b.mkdir()
    r = sara_here(a, "train-dit", "--params", str(write_params(a, "p")), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    pb = write_params(b, "p")
    killed = sara(b, "train-dit", "--params", str(pb), "--run", "sft", fault="kill@3")
    assert killed.returncode == -9, killed.stderr[-3000:]  # SIGKILL after step 3: step 2 is the last checkpoint
    assert ckpt.latest_tag(b / "state" / "sft") == "step_0000002"
    assert not (b / "dit" / "sft").exists()
    resumed = sara_here(b, "train-dit", "--params", str(pb), "--run", "sft")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from 2" in resumed.stdout
    wa, wb = weights(a / "dit" / "sft"), weights(b / "dit" / "sft")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k  # bitwise: data order, RNG, optimizer and scheduler all restored
    base = weights(workspace / "base")
    assert any(not torch.equal(wa[k], base[k]) for k in wa)  # and training did change the model
    metrics = json.loads((b / "dit" / "sft" / "metrics.json").read_text())
    assert metrics["steps"] == 6 and "resumed_from" not in metrics  # the model folder: what determines the model
    assert json.loads((b / "outputs" / "metrics" / "sft" / "train_dit.json").read_text())["train_dit"]["resumed_from"] == 2

    cached, cached_killed = workspace / "cached", workspace / "cached_killed"
    cached.mkdir(), cached_killed.mkdir()
    r = sara_here(cached, "train-dit", "--params", str(write_params(cached, "p", cache_frozen_inputs=True)), "--run", "sft")
    assert r.returncode == 0, r.stderr[-3000:]
    pk = write_params(cached_killed, "p", cache_frozen_inputs=True)
    assert sara(cached_killed, "train-dit", "--params", str(pk), "--run", "sft", fault="kill@3").returncode == -9
    assert sara_here(cached_killed, "train-dit", "--params", str(pk), "--run", "sft").returncode == 0
    wc, wk = weights(cached / "dit" / "sft"), weights(cached_killed / "dit" / "sft")
    for k in wa:
        torch.testing.assert_close(wc[k], wa[k], rtol=1e-4, atol=1e-5)
        assert torch.equal(wc[k], wk[k]), k


@pytest.mark.slow  # a `sara train-dit` process killed, a run in this process
def test_resume_never_outlives_its_inputs(workspace: Path):
    """A killed run whose clips then change starts afresh, and a finished run leaves no state to resume.

    Before: the fingerprint was run name + params + world size, and the final checkpoint stayed on disk, so a
    repro after a code or data change printed `resumed from <steps>` and re-exported the old weights.
    """
    c = workspace / "inputs_changed"
    c.mkdir()
    make_clips(c / "clips", seed=0)
    pc = write_params(c, "p", steps=4)
    raw = yaml.safe_load(pc.read_text())
    raw["data"]["out_dir"] = str(c / "clips")
    pc.write_text(yaml.safe_dump(raw, sort_keys=False))
    killed = sara(c, "train-dit", "--params", str(pc), "--run", "sft", fault="kill@3")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert ckpt.latest_tag(c / "state" / "sft") == "step_0000002"
    shutil.rmtree(c / "clips")
    make_clips(c / "clips", seed=1)  # the data stage re-rendered the clips: same ids, other pixels
    rerun = sara_here(c, "train-dit", "--params", str(pc), "--run", "sft")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resumed from 0" in rerun.stdout  # the state of the old clips was discarded
    assert not (c / "state" / "sft").exists()  # exported: no resumable state outlives the run


def test_the_fingerprint_covers_code_and_upstream_outputs(tmp_path: Path):
    """Editing any module of the stage's import closure (here the diffusion loss) or an input changes it."""
    from sara.deps import ROOT

    src = tmp_path / "src"
    for top in ("sara", "configs"):
        shutil.copytree(ROOT / top, src / top, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"one")

    def fp() -> str:
        from sara.deps import code_digest, tree_digest

        inputs = {"code": code_digest("sara/stages/train_dit.py", src), "clips": tree_digest(tmp_path / "clips")}
        return ckpt.fingerprint("sft", {"train": {"lr": 1e-4}}, 1, inputs)

    first = fp()
    loss = src / "sara" / "losses" / "diffusion.py"
    loss.write_text(loss.read_text() + "\n# loss scaled by 5\n")
    second = fp()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"two")
    assert len({first, second, fp()}) == 3
    assert ckpt.fingerprint("sft", {}, 1, {"code": "x"}) != ckpt.fingerprint("sft", {}, 2, {"code": "x"})


@pytest.mark.slow  # a `sara train-dit` process
def test_nan_loss_stops_the_run_marks_mlflow_failed_and_keeps_the_last_good_checkpoint(workspace: Path):
    import mlflow

    tmp = workspace / "nan"
    tmp.mkdir()
    r = sara(tmp, "train-dit", "--params", str(write_params(tmp, "p")), "--run", "sft", fault="nan@4")
    assert r.returncode != 0
    assert "NonFiniteLossError" in r.stderr and "non-finite loss at step 4" in r.stderr
    assert "Last good checkpoint: " + str(tmp / "state" / "sft" / "step_0000002") in r.stderr
    assert ckpt.latest_tag(tmp / "state" / "sft") == "step_0000002"
    assert not (tmp / "dit" / "sft").exists()  # no final model from a failed run
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("sara").experiment_id])
    assert [(x.info.run_name, x.info.status) for x in runs] == [("train_dit/sft", "FAILED")]
    hist = client.get_metric_history(runs[0].info.run_id, "loss")
    assert [m.step for m in hist] == [1, 2, 3]  # steps before the NaN were logged
    logged = runs[0].data.metrics
    for key in ("loss_diff", "lr", "grad_norm", "step_time_s", "tokens_per_s", "peak_mem_gb"):
        assert key in logged, key
    assert runs[0].data.params["train.steps"] == "6" and "trd.lam_trd" not in runs[0].data.params


@pytest.mark.slow(wall_s=35)  # torchrun with 2 ranks, then one rank
def test_two_gloo_ranks_match_one_rank_with_the_same_global_batch(workspace: Path):
    """2 ranks x batch 1 train exactly what 1 rank x batch 2 trains: the same samples and draws, the gradient
    averaged over ranks. Adam hides a gradient's scale (2 ranks summing instead of averaging would move the weights
    the same), so the global gradient norm, logged before clipping, is compared as well."""
    two, one = workspace / "two_ranks", workspace / "one_rank"
    two.mkdir(), one.mkdir()
    script = str(REPO / "sara" / "cli.py")  # a script path: torchrun's own parser would swallow `--run` after `-m`
    # --standalone: the rendezvous store binds a port the OS picks (localhost:0); no port is guessed
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script]
    train = dict(steps=3, lr=1e-3, warmup_steps=0)
    p2 = str(write_params(two, "p", batch_size=1, **train))
    r2 = sara(two, "train-dit", "--params", p2, "--dit-run", "sft", launcher=torchrun)
    assert r2.returncode == 0, r2.stderr[-4000:]
    r1 = sara_here(one, "train-dit", "--params", str(write_params(one, "p", batch_size=2, **train)), "--run", "sft")
    assert r1.returncode == 0, r1.stderr[-3000:]
    m2, m1 = (json.loads((d / "dit" / "sft" / "metrics.json").read_text()) for d in (two, one))
    assert (m2["world_size"], m1["world_size"]) == (2, 1)
    assert m2["grad_norm"] == pytest.approx(m1["grad_norm"], rel=1e-4)  # summed over 2 ranks it would double
    w2, w1, base = weights(two / "dit" / "sft"), weights(one / "dit" / "sft"), weights(workspace / "base")
    largest = max(float((w1[k] - base[k]).abs().max()) for k in w1)
    assert largest > 1e-3  # three steps of lr 1e-3 moved the weights
    for k in w1:  # only the gradient reduction order differs: the updates agree to 1% of the largest one
        torch.testing.assert_close(w2[k] - base[k], w1[k] - base[k], rtol=0, atol=0.01 * largest)


def test_a_state_from_other_params_is_discarded_not_resumed(tmp_path: Path):
    state = tmp_path / "state"
    assert ckpt.prepare_state_dir(state, "aaaa", resume=True) is None
    (state / "step_0000004").mkdir()
    (state / "latest").write_text("step_0000004")
    assert ckpt.prepare_state_dir(state, "aaaa", resume=True) == "step_0000004"
    assert ckpt.prepare_state_dir(state, "bbbb", resume=True) is None  # params changed: start fresh
    assert not (state / "step_0000004").exists()
    assert json.loads((state / ckpt.FINGERPRINT).read_text()) == {"fingerprint": "bbbb"}


def test_prune_keeps_the_newest_checkpoints(tmp_path: Path):
    for s in (2, 4, 6, 8):
        (tmp_path / ckpt.tag_for(s)).mkdir()
    (tmp_path / "latest").write_text(ckpt.tag_for(8))
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_0000006", "step_0000008"]


@pytest.mark.parametrize("stage", [0, 1, 2, 3])
def test_deepspeed_config_per_zero_stage(stage: int):
    from sara.config import TrainParams
    from sara.train.engine import deepspeed_config

    cfg = deepspeed_config(TrainParams(zero_stage=stage, grad_clip=0.5, batch_size=3), "bf16")
    assert cfg["zero_optimization"]["stage"] == stage
    assert cfg["gradient_clipping"] == 0.5 and cfg["train_micro_batch_size_per_gpu"] == 3
    assert cfg["bf16"] == {"enabled": True} and cfg["gradient_accumulation_steps"] == 1


def test_warmup_then_constant_lr():
    from sara.train.engine import warmup_constant

    f = warmup_constant(4)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_constant(0)(0) == 1.0


def test_a_cpu_world_does_not_build_deepspeed_shared_memory_op(tmp_path: Path) -> None:
    """The shared-memory all-reduce op serves only DeepSpeed's inference all-reduce, which training never calls; it
    used to be compiled at the first CPU run of every new environment (~44 s wall, ~70 CPU s of a fresh clone's
    `dvc repro` and of the suite). The world is made without it (the op would be a module here, not None)."""
    code = ("from sara.train.engine import init_distributed; init_distributed('cpu'); "
            "import deepspeed.comm.comm as c; print('shm_op', c.cdb.shm_comm_op)")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}  # an empty build cache: nothing to load
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "shm_op None" in out.stdout
    assert not (tmp_path / "ext").exists() or not any((tmp_path / "ext").iterdir())
