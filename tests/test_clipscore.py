"""CLIP text-video score: a tiny random open_clip model saved to a file and loaded back through the real loader.

The score must equal a reference computed by hand (preprocess, embed, normalise, cosine, x100, mean over the
uniformly sampled frames), be deterministic, refuse a missing checkpoint naming the param and the path, and the
disabled stage must write no number.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.clipscore import frame_indices, load_clip_model, prompt_text, require_file
from sara.config import ClipScoreParams, Params, SampleParams

TINY = "sara-test-tiny-clip"  # a small architecture registered for these tests only
TINY_CFG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
TEXT = "On a plain light-grey studio backdrop, one shape: a red circle moving to the right."


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory):
    """(original model in eval mode, .pt path, .safetensors path) of a random-init tiny open_clip model."""
    import open_clip
    from safetensors.torch import save_file

    d = tmp_path_factory.mktemp("tiny_clip")
    (d / "configs").mkdir()
    (d / "configs" / f"{TINY}.json").write_text(json.dumps(TINY_CFG))
    open_clip.add_model_config(d / "configs")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY, pretrained=None).eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, d / "tiny.pt")
    save_file(state, str(d / "tiny.safetensors"))
    return model, d / "tiny.pt", d / "tiny.safetensors"


def _frames(seed: int, n: int = 9, h: int = 40, w: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _reference_score(model, frames: np.ndarray, text: str, k: int) -> torch.Tensor:
    """By hand: OpenAI-normalised bicubic resize + centre crop, embed, L2-normalise, cosine x 100, mean."""
    import open_clip
    import torchvision.transforms as T
    from PIL import Image

    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    tf = T.Compose([T.Resize(32, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(32), T.ToTensor(),
                    T.Normalize(OPENAI_DATASET_MEAN, OPENAI_DATASET_STD)])
    idx = np.linspace(0, len(frames) - 1, k).round().astype(int)
    with torch.no_grad():
        img = model.encode_image(torch.stack([tf(Image.fromarray(frames[i])) for i in idx]))
        txt = model.encode_text(open_clip.tokenize([text]))[0]
    img = img / img.pow(2).sum(-1, keepdim=True).sqrt()
    txt = txt / txt.pow(2).sum().sqrt()
    return torch.stack([100.0 * (img[j] * txt).sum() for j in range(len(idx))]).mean()


def test_frame_indices_are_uniform_with_both_ends() -> None:
    assert frame_indices(9, 3) == [0, 4, 8]
    assert frame_indices(16, 8)[0] == 0 and frame_indices(16, 8)[-1] == 15 and len(frame_indices(16, 8)) == 8
    assert frame_indices(5, 8) == [0, 1, 2, 3, 4]  # fewer frames than asked: each frame once
    assert frame_indices(1, 1) == [0]


def test_loaded_weights_equal_the_saved_ones(tiny_checkpoint) -> None:
    model, pt, st = tiny_checkpoint
    for path in (pt, st):
        scorer = load_clip_model(TINY, str(path))
        assert not scorer.model.training
        loaded = scorer.model.state_dict()
        for k, v in model.state_dict().items():
            torch.testing.assert_close(loaded[k], v, rtol=0, atol=0)


@pytest.mark.parametrize("k", [1, 3, 8])
def test_score_equals_the_hand_computed_reference(tiny_checkpoint, k: int) -> None:
    model, pt, _ = tiny_checkpoint
    scorer = load_clip_model(TINY, str(pt))
    frames = _frames(1)
    got = scorer.score(frames, TEXT, k)
    torch.testing.assert_close(torch.tensor(got, dtype=torch.float32), _reference_score(model, frames, TEXT, k), rtol=1e-5, atol=1e-4)
    assert -100.0 <= got <= 100.0


def test_score_is_deterministic(tiny_checkpoint) -> None:
    _, pt, st = tiny_checkpoint
    frames = _frames(2)
    a = load_clip_model(TINY, str(pt))
    first = a.score(frames, TEXT, 8)
    assert a.score(frames.copy(), TEXT, 8) == first  # same inputs, same scorer (text embedding cached)
    assert load_clip_model(TINY, str(pt)).score(frames, TEXT, 8) == first  # a fresh load
    torch.testing.assert_close(load_clip_model(TINY, str(st)).score(frames, TEXT, 8), first)  # the safetensors copy
    assert a.score(frames, "a blue square resting in place", 8) != first  # the text matters


def test_missing_checkpoint_names_the_param_and_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"clipscore\.checkpoint is not set: .*local file containing .*open_clip weights"):
        load_clip_model("ViT-B-32", None)
    missing = tmp_path / "nope" / "ViT-B-32.pt"
    with pytest.raises(FileNotFoundError, match=rf"clipscore\.checkpoint = '{missing}' does not exist: .*open_clip weights"):
        load_clip_model("ViT-B-32", str(missing))
    with pytest.raises(FileNotFoundError, match=r"clipscore\.checkpoint = .* is a directory, not a file"):
        require_file("clipscore.checkpoint", str(tmp_path), "weights")


def test_remote_model_names_are_refused(tiny_checkpoint) -> None:
    _, pt, _ = tiny_checkpoint
    with pytest.raises(ValueError, match=r"clipscore\.model = 'hf-hub:.*architecture name"):
        load_clip_model("hf-hub:org/repo", str(pt))


def test_disabled_stage_writes_no_numbers(tmp_path: Path, tracking, metrics_dir: Path) -> None:
    from sara.stages import clipscore as stage

    params = Params(clipscore=ClipScoreParams(out_dir=str(tmp_path / "clipscore")))
    assert params.clipscore.enabled is False  # the embedded default
    stage.run(params, "sara-or")
    out = tmp_path / "clipscore" / "sara-or"
    assert sorted(p.name for p in out.iterdir()) == ["SHA256SUMS", "metrics.json"]  # sealed: sara.integrity
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "disabled" and "clipscore.enabled" in metrics["reason"]
    assert not any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values())
    assert json.loads((metrics_dir / "sara-or" / "clipscore.json").read_text()) == {"clipscore": {"status": "disabled"}}
    run = tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id])[0]
    assert run.info.run_name == "clipscore/sara-or" and run.data.tags["clipscore.status"] == "disabled"
    assert run.data.metrics == {}


def test_enabled_stage_scores_one_run_under_stable_metric_names(tmp_path: Path, tracking, tiny_checkpoint, metrics_dir: Path) -> None:
    """`sara clipscore --run sara-or` scores sara-or only; its metrics are `clipscore/mean`, never named by run."""
    from sara.data.video_io import read_video, write_video
    from sara.sample import load_prompts
    from sara.stages import clipscore as stage

    _, pt, _ = tiny_checkpoint
    prompts = load_prompts("synthetic")[:2]
    samples = tmp_path / "samples"
    for r, run in enumerate(["base", "sara-or"]):
        (samples / run).mkdir(parents=True)
        videos = []
        for i, p in enumerate(prompts):
            write_video(samples / run / f"{p.id}_s0.mp4", _frames(10 * r + i, n=9, h=32, w=32), 8)
            videos.append({"prompt_id": p.id, "title": p.title, "seed": 0, "mp4": f"{p.id}_s0.mp4", "sheet": f"{p.id}_s0.png"})
        (samples / run / "index.json").write_text(json.dumps({"run": run, "prompt_set": "synthetic", "videos": videos}))
    params = Params(
        project={"device": "cpu"},
        sample=SampleParams(out_dir=str(samples)),
        clipscore=ClipScoreParams(enabled=True, model=TINY, checkpoint=str(pt), frames=4, out_dir=str(tmp_path / "clipscore")),
    )
    metrics = stage.run(params, "sara-or")
    assert sorted(p.name for p in (tmp_path / "clipscore").iterdir()) == ["sara-or"]  # base is not re-scored
    out = tmp_path / "clipscore" / "sara-or"
    with (out / "scores.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["prompt_id"]) for r in rows] == [("sara-or", p.id) for p in prompts]
    scorer = load_clip_model(TINY, str(pt))
    for row in rows:
        frames, _ = read_video(samples / row["run"] / row["video"])
        text = prompt_text(next(p.caption for p in prompts if p.id == row["prompt_id"]))
        assert row["text"] == text and row["frames_used"] == "4"
        torch.testing.assert_close(float(row["clip_score"]), scorer.score(frames, text, 4))
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(metrics)) and on_disk["status"] == "ok"
    vals = [float(r["clip_score"]) for r in rows]
    torch.testing.assert_close(on_disk["clip_score"], float(np.mean(vals)))
    assert on_disk["n_videos"] == 2
    assert not list((tmp_path / "clipscore").glob(".*tmp*"))  # the temporary folder was renamed into place
    dvc_metrics = json.loads((metrics_dir / "sara-or" / "clipscore.json").read_text())["clipscore"]
    torch.testing.assert_close(dvc_metrics["mean"], on_disk["clip_score"])
    run = tracking.search_runs([tracking.get_experiment_by_name("sara").experiment_id])[0]
    assert run.info.run_name == "clipscore/sara-or"
    assert run.data.params["routing_op"] == "or" and run.data.tags["sara.method"] == "sara"
    torch.testing.assert_close(run.data.metrics["clipscore/mean"], on_disk["clip_score"])
    assert not any("sara-or" in k for k in run.data.metrics)
