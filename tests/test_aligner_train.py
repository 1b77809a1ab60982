"""The Stage 1 loop: a two-step smoke test, exact resume from a train state, the ablation switches, and the
train_aligner / eval_aligner stages end to end on three tiny rendered clips."""

from __future__ import annotations

import json

import pytest
import torch
from aligner_testlib import (GRID, stage1_examples, stage1_params, tiny_aligner_params, tiny_project,  # noqa: F401
                             tiny_text)
from torch.testing import assert_close

from sara.train.stage1 import make_batch, stage1_loss, train_aligner


def test_two_training_steps_run_and_change_the_trainable_weights(tmp_path):
    text = tiny_text(tmp_path)
    logged = []
    res = train_aligner(stage1_examples(), text, 16, GRID, stage1_params(), tmp_path / "work", device=torch.device("cpu"),
                        log_fn=lambda rec, step: logged.append((step, rec)), progress=False)
    assert [s for s, _ in logged] == [0, 1] and len(res.history) == 2
    rec = logged[-1][1]
    assert {"loss/total", "loss/bce", "loss/nce", "lr", "grad_norm", "nce_acc"} <= set(rec)
    assert rec["loss/total"] == pytest.approx(rec["loss/bce"] + rec["loss/nce"], rel=1e-6)
    assert rec["forwards"] == 8.0  # two whole clips of K + 2 = 4 forwards
    torch.manual_seed(0)
    from sara.models.aligner import SaliencyAligner

    init = SaliencyAligner(16, text.dim, stage1_params().aligner)
    changed = [not torch.equal(a, b) for a, b in zip(init.state_dict().values(), res.aligner.state_dict().values())]
    assert any(changed)


@pytest.mark.slow  # 40 aligner training steps
def test_training_reduces_the_loss_on_a_fixed_batch(tmp_path):
    text = tiny_text(tmp_path)
    ex = stage1_examples(2)
    p = stage1_params(steps=40, lr=3e-3, warmup_steps=0, min_lr=3e-3)
    res = train_aligner(ex, text, 16, GRID, p, tmp_path / "w", device=torch.device("cpu"), progress=False)
    assert res.history[-1]["loss/total"] < 0.5 * res.history[0]["loss/total"]


def test_resume_continues_exactly_where_an_interrupted_run_stopped(tmp_path):
    text = tiny_text(tmp_path)
    ex = stage1_examples()
    p = stage1_params(steps=4, checkpoint_every=2)
    torch.set_num_threads(1)
    full = train_aligner(ex, text, 16, GRID, p, tmp_path / "a", device=torch.device("cpu"), fingerprint="f",
                         progress=False)

    def crash(rec, step):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_aligner(ex, text, 16, GRID, p, tmp_path / "b", device=torch.device("cpu"), fingerprint="f",
                      log_fn=crash, progress=False)
    resumed = train_aligner(ex, text, 16, GRID, p, tmp_path / "b", device=torch.device("cpu"), fingerprint="f",
                            progress=False)
    assert resumed.resumed_from == 2 and len(resumed.history) == 4
    for a, b in zip(full.aligner.state_dict().values(), resumed.aligner.state_dict().values()):
        assert_close(a, b)
    other = train_aligner(ex, text, 16, GRID, p, tmp_path / "b", device=torch.device("cpu"), fingerprint="g",
                          progress=False)
    assert other.resumed_from == 0  # a state from another run is never picked up


def test_without_infonce_only_bce_is_optimised(tmp_path):
    text = tiny_text(tmp_path)
    out = stage1_loss(_aligner_for(text), text, make_batch(stage1_examples(2)), stage1_params(use_infonce=False).aligner, GRID)
    assert out.nce is None and torch.equal(out.total, out.bce)


def _aligner_for(text):
    from sara.models.aligner import SaliencyAligner

    torch.manual_seed(0)
    return SaliencyAligner(16, text.dim, tiny_aligner_params())


# ------------------------------------------------------------------------------------------ stages end to end


@pytest.mark.slow  # the train_aligner and eval_aligner stages, twice
def test_train_and_eval_stages_write_their_outputs(tiny_project):
    from sara.models.aligner import load_saliency_model
    from sara.stages import eval_aligner, train_aligner as train_stage

    root, params = tiny_project
    out = train_stage.run(params, progress=False)
    assert (out / "aligner.pt").is_file() and not list(root.glob("models/.aligner.tmp*"))
    summary = json.loads((out / "train_metrics.json").read_text())
    assert summary["steps"] == 2 and summary["train_clips"] == 2
    vfm_tag = summary["vfm_tag"]
    assert sorted(p.name.split("-")[0] for p in (root / "data/features" / vfm_tag).iterdir()) == [
        "clip_0", "clip_1", "clip_2"]  # one content-keyed entry per clip
    assert not (root / params.aligner.work_dir / "train_state.pt").exists()

    metrics_file = eval_aligner.run(params, progress=False)
    metrics = json.loads(metrics_file.read_text())
    for kind in ("entity", "combined", "background", "full"):  # every variant is scored on the same queries
        for key in ("saliency_mean", "saliency_max", "saliency_coverage", "saliency_entropy", "ca_focus",
                    "delta_self_attn_entropy", "pca_delta_var_ratio"):
            assert key in metrics[kind], (kind, key)
    assert "entity_pairs" in metrics and "baseline" in metrics
    # the numbers are the trained aligner's: its saliency of the held-out clip (the only one) under the full caption
    from sara.data.clips import load_clip
    from sara.data.mtss import full_caption
    from sara.models.aligner import load_saliency_model

    held = load_clip(root / "data/clips/clip_2")
    w = load_saliency_model(out, params, "cpu").saliency(torch.as_tensor(held.frames)[None],
                                                       [full_caption(held.caption)])[0].double()  # (T_s, N_s)
    assert metrics["full"]["saliency_mean"] == pytest.approx(float(w.mean()), rel=1e-5)
    assert metrics["full"]["saliency_max"] == pytest.approx(float(w.max(1).values.mean()), rel=1e-5)
    figs = sorted(p.name for p in (root / "outputs/aligner/figures").iterdir() if p.name != "SHA256SUMS")
    assert figs == ["fig3_clip_2.png", "fig4_clip_2.png", "per_forward.csv"]

    model = load_saliency_model(out, params, "cpu")
    from sara.data.clips import load_clip

    clip = load_clip(root / "data/clips/clip_2")
    w = model.saliency(torch.as_tensor(clip.frames)[None], ["a caption"])
    assert w.shape == (1, 2, 4)


@pytest.mark.slow  # the features and train_aligner stages, twice
def test_features_stage_writes_every_clip_and_train_aligner_only_reads_them(tiny_project):
    from sara.stages import features, train_aligner as train_stage

    root, params = tiny_project
    assert features.run(params, progress=False) == 3
    files = sorted((root / "data/features").glob("*/*.pt"))
    assert [f.name.split("-")[0] for f in files] == ["clip_0", "clip_1", "clip_2"]  # <clip_id>-<content hash>.pt
    before = {f: f.stat().st_mtime_ns for f in files}
    train_stage.run(params, progress=False)
    assert {f: f.stat().st_mtime_ns for f in files} == before  # read from the cache, never rewritten
