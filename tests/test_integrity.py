"""A damaged output never yields silent numbers (issue: faults, round 2, finding 1).

Before: with 64 bytes flipped in a cached `aux.pt`, `torch.load` accepted it and the mechanism readout changed 36 of
134 values without a word. Now every output folder a stage builds carries `SHA256SUMS` (sara.integrity), and every
reader of a model, feature or sample output checks it: a mismatch is one line naming the file and the fix.
`sara verify` re-hashes the workspace outputs and DVC's cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sara.config import params_from_dict
from sara.io import atomic_dir

REPO = Path(__file__).resolve().parents[1]


def flip(path: Path, offset: int, n: int = 64) -> None:
    """Invert `n` bytes of `path` at `offset` (a damaged disk block or cache object)."""
    data = bytearray(path.read_bytes())
    data[offset : offset + n] = bytes(b ^ 0xFF for b in data[offset : offset + n])
    path.write_bytes(bytes(data))


def flip_inside_tensor(path: Path, tensor: torch.Tensor) -> None:
    """Flip 64 bytes inside the stored data of `tensor` (so the file still loads: the damage is silent)."""
    raw = tensor.detach().cpu().contiguous().numpy().tobytes()
    offset = path.read_bytes().find(raw[:256])
    assert offset >= 0, "tensor bytes not found in the file"
    flip(path, offset + 64)


def assert_one_line_naming(err: Exception, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg and "dvc checkout --relink" in msg, msg


def _trained_run(tmp_path: Path) -> tuple[Path, object, torch.nn.Module]:
    """A Stage 2 run folder as train_dit exports it (tiny DiT, videorepa projector)."""
    from sara.methods import build_objective
    from sara.models.dit import build_tiny_base
    from sara.runs import Run
    from sara.train.checkpoint import export_final

    params = params_from_dict({"train": {"out_dir": str(tmp_path / "dit")}})
    transformer = build_tiny_base(params)[0]
    dit_dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    aux = build_objective(Run.parse("videorepa"), params, dit_dim, 64)
    run_dir = export_final(tmp_path / "dit" / "videorepa", transformer, aux, {"steps": 1})
    return run_dir, params, aux


def test_a_damaged_aux_pt_is_refused_by_the_mechanism_readout_not_read(tmp_path: Path):
    from sara.errors import IntegrityError
    from sara.runs import Run
    from sara.stages.mechanism import _load_aux

    run_dir, params, aux = _trained_run(tmp_path)
    weight = max(aux.state_dict().values(), key=lambda t: t.numel())
    flip_inside_tensor(run_dir / "aux.pt", weight)
    with pytest.raises(IntegrityError) as err:
        _load_aux(Run.parse("videorepa"), params, run_dir, 32, 64)
    assert_one_line_naming(err.value, run_dir / "aux.pt")


def test_a_damaged_trained_transformer_is_refused(tmp_path: Path):
    from sara.errors import IntegrityError
    from sara.models.dit import load_trained_transformer

    run_dir, _, _ = _trained_run(tmp_path)
    weights = run_dir / "transformer" / "diffusion_pytorch_model.safetensors"
    flip(weights, weights.stat().st_size // 2)
    with pytest.raises(IntegrityError) as err:
        load_trained_transformer(run_dir)
    assert_one_line_naming(err.value, weights)


def test_a_damaged_base_model_is_refused(tmp_path: Path):
    from sara.errors import IntegrityError
    from sara.models.dit import load_base, save_base

    params = params_from_dict({})
    with atomic_dir(tmp_path / "base") as tmp:  # what init_dit does
        save_base(params, tmp)
    vae = tmp_path / "base" / "vae" / "diffusion_pytorch_model.safetensors"
    flip(vae, vae.stat().st_size // 2)
    with pytest.raises(IntegrityError) as err:
        load_base(tmp_path / "base", "tiny", with_low_noise=False)
    assert_one_line_naming(err.value, vae)


def test_a_damaged_feature_cache_entry_is_refused(tmp_path: Path):
    from types import SimpleNamespace

    from sara.errors import IntegrityError
    from sara.models.encoders import build_vfm, cached_features, clip_content_hash, feature_cache_path

    params = params_from_dict({})
    vfm = build_vfm(params.vfm)
    clip = SimpleNamespace(clip_id="clip000", frames=np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), np.uint8))
    with atomic_dir(tmp_path / "features") as tmp:  # what the features stage does
        feats = cached_features(vfm, clip, tmp)
    entry = feature_cache_path(vfm, tmp_path / "features", "clip000", clip_content_hash(clip.frames))
    flip_inside_tensor(entry, feats)
    with pytest.raises(IntegrityError) as err:
        cached_features(vfm, clip, tmp_path / "features")
    assert_one_line_naming(err.value, entry)


def test_damaged_samples_are_refused_before_they_are_scored(tmp_path: Path):
    from evaluation.rubric.evaluate import evaluate_run
    from sara.data.synthetic import render
    from sara.data.video_io import save_video_and_sheet
    from sara.errors import IntegrityError
    from sara.sample import load_prompts

    item = load_prompts("synthetic")[0]
    frames, _, _ = render(item.spec, 9, 64, 64, 8)
    with atomic_dir(tmp_path / "samples" / "base") as tmp:  # what the sample stage does
        save_video_and_sheet(frames, 8, tmp / f"{item.id}_s0.mp4", tmp / f"{item.id}_s0.png", label="x")
        index = {"videos": [{"prompt_id": item.id, "seed": 0, "mp4": f"{item.id}_s0.mp4", "sheet": f"{item.id}_s0.png"}]}
        (tmp / "index.json").write_text(json.dumps(index))
    video = tmp_path / "samples" / "base" / f"{item.id}_s0.mp4"
    flip(video, video.stat().st_size // 2)
    params = params_from_dict({"sample": {"out_dir": str(tmp_path / "samples")}})
    with pytest.raises(IntegrityError) as err:
        evaluate_run(params, "base", tmp_path / "rubric")
    assert_one_line_naming(err.value, video)


def test_a_truncated_or_missing_file_of_a_sealed_folder_is_named(tmp_path: Path):
    from sara.errors import IntegrityError
    from sara.integrity import verify

    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "a.bin").write_bytes(b"x" * 1000)
        (tmp / "sub").mkdir()
        (tmp / "sub" / "b.bin").write_bytes(b"y" * 10)
    verify(tmp_path / "out")  # intact
    (tmp_path / "out" / "a.bin").write_bytes(b"x" * 500)
    with pytest.raises(IntegrityError, match="a.bin: content does not match"):
        verify(tmp_path / "out")
    (tmp_path / "out" / "sub" / "b.bin").unlink()
    (tmp_path / "out" / "a.bin").write_bytes(b"x" * 1000)
    with pytest.raises(IntegrityError, match="b.bin: missing"):
        verify(tmp_path / "out")


# ---- sara verify --------------------------------------------------------------------------------------------


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "DVC_NO_ANALYTICS": "1"})


@pytest.mark.slow
def test_sara_verify_names_a_damaged_workspace_file_and_a_damaged_cache_object(tmp_path: Path):
    from flows_testlib import init_repo

    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "make.py").write_text(
        "from pathlib import Path\nimport sys\nsys.path.insert(0, %r)\nfrom sara.io import atomic_dir\n"
        "with atomic_dir('out') as tmp:\n    (tmp / 'w.bin').write_bytes(bytes(range(256)) * 64)\n"
        "    (tmp / 'm.json').write_text('{}')\n" % str(REPO))
    (repo / "dvc.yaml").write_text("stages:\n  make:\n    cmd: python make.py\n    deps: [make.py]\n    outs: [out]\n")
    init_repo(repo)
    assert _dvc(repo, "repro").returncode == 0

    def verify() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sara.cli", "verify"], cwd=repo, capture_output=True, text=True,
                              timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(REPO)})

    ok = verify()
    assert ok.returncode == 0 and "all intact" in ok.stdout, ok.stdout + ok.stderr

    flip(repo / "out" / "w.bin", 1000)  # the workspace copy (DVC's status still says up to date: same mtime rules)
    bad = verify()
    assert bad.returncode == 1
    lines = bad.stderr.strip().splitlines()
    assert any(str(repo / "out" / "w.bin") in ln and "dvc checkout --relink out" in ln for ln in lines), bad.stderr

    assert _dvc(repo, "checkout", "--relink", "--force", "out").returncode == 0
    assert verify().returncode == 0
    objects = [p for p in (repo / ".dvc" / "cache" / "files" / "md5").glob("??/*") if not p.name.endswith(".dir")]
    big = max(objects, key=lambda p: p.stat().st_size)
    big.chmod(0o644)
    flip(big, 100)  # the cache object itself
    bad = verify()
    assert bad.returncode == 1 and f"{big}: DVC cache object damaged" in bad.stderr, bad.stderr
