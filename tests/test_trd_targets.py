"""TRD targets (sara/models/targets.py): the oracle and random-init controls on the lab encoder's grid, and Stage 2
reading the run's target while SARA's saliency still reads the lab encoder."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sara.config import Params, VFMParams
from sara.models.encoders import build_vfm
from sara.models.targets import (EncoderTarget, OracleTarget, PerClip, build_target, membership_tokens,
                                 random_init_like)

FRAMES, SIZE = 16, 64  # the embedded clips; the tiny encoder sees 8 of 16 frames at 64 px: grid (4, 8, 8)


@pytest.fixture(scope="module")
def lab() -> object:
    return build_vfm(VFMParams())


def gram(tokens: torch.Tensor) -> torch.Tensor:
    """Cosine Gram (T*N, T*N) of tokens (T, N, D), as TRD builds it."""
    x = F.normalize(tokens.reshape(-1, tokens.shape[-1]).double(), dim=-1)
    return x @ x.T


def patch_masks() -> tuple[np.ndarray, np.ndarray]:
    """Two entities covering whole 8 px patches in every frame, and each token's label (0 = background)."""
    masks = np.zeros((2, FRAMES, SIZE, SIZE), bool)
    masks[0, :, 0:16, 0:32] = True  # patch rows 0-1, columns 0-3
    masks[1, :, 32:64, 40:64] = True  # patch rows 4-7, columns 5-7
    labels = np.zeros((8, 8), int)
    labels[0:2, 0:4], labels[4:8, 5:8] = 1, 2
    return masks, np.tile(labels.reshape(-1), 4)  # (T_s * N_s,) in (t, h, w) order


def test_oracle_gram_is_the_same_entity_indicator_for_hard_masks(lab) -> None:
    masks, labels = patch_masks()
    tokens = OracleTarget(lab).clip_tokens(masks)
    frames = torch.zeros(1, FRAMES, SIZE, SIZE, 3, dtype=torch.uint8)
    assert tokens.shape == lab.features(frames)[0].shape == (4, 64, lab.dim)  # the encoder's grid and width
    same = torch.from_numpy(labels[:, None] == labels[None, :]).double()
    torch.testing.assert_close(gram(tokens), same)


def test_oracle_token_straddling_an_edge_is_a_soft_membership(lab) -> None:
    masks = np.zeros((1, FRAMES, SIZE, SIZE), bool)
    masks[0, :, 0:8, 0:4] = True  # half of patch (0, 0)
    tokens = OracleTarget(lab).clip_tokens(masks)
    torch.testing.assert_close(tokens[0, 0, :2], torch.tensor([0.5, 0.5]))  # half background, half entity
    assert gram(tokens)[0, 1].item() == pytest.approx(2 ** -0.5)  # against a pure background token


def test_oracle_follows_the_encoder_frames_moving_entities_included(lab) -> None:
    """A tubelet averages the two frames the encoder takes for it: an entity present in one of them is half in."""
    masks = np.zeros((1, FRAMES, SIZE, SIZE), bool)
    idx = lab.frame_indices(FRAMES).tolist()  # 8 of 16 frames; tubelet 0 is idx[0], idx[1]
    masks[0, idx[0], 0:8, 0:8] = True
    tokens = OracleTarget(lab).clip_tokens(masks)
    torch.testing.assert_close(tokens[0, 0, :2], torch.tensor([0.5, 0.5]))
    torch.testing.assert_close(tokens[1, 0, :2], torch.tensor([1.0, 0.0]))  # later tubelets: background only


def test_oracle_without_masks_or_with_too_narrow_an_encoder_is_one_clear_error(lab) -> None:
    with pytest.raises(ValueError, match="clip 'c7' has none"):
        OracleTarget(lab).features([SimpleNamespace(clip_id="c7", masks=None)], torch.zeros(1))
    with pytest.raises(ValueError, match="width >= entities \\+ 1 = 5, got vfm width 4"):
        membership_tokens(torch.zeros(4, 2, 3), 4)


def tiny_videomae(tmp: Path) -> VFMParams:
    """A small VideoMAE saved like the lab's pretrained encoder (models/vfm), and the vfm params that load it."""
    from transformers import VideoMAEModel

    from sara.config import VFMPretrainParams
    from sara.models.videomae import videomae_config

    vfm = VFMParams(kind="videomae", path=str(tmp / "vfm"))
    VideoMAEModel(videomae_config(vfm, VFMPretrainParams(hidden_size=32, num_layers=1, num_heads=2))).save_pretrained(tmp / "vfm")
    return vfm


@pytest.mark.parametrize("kind", ["tiny", "videomae"])
def test_random_target_is_the_lab_architecture_at_another_init(kind: str, lab, tmp_path: Path) -> None:
    encoder = lab if kind == "tiny" else build_vfm(tiny_videomae(tmp_path))
    rand = random_init_like(encoder, seed=1)
    assert type(rand.model) is type(encoder.model) and rand.grid == encoder.grid and rand.dim == encoder.dim
    assert rand.tag != encoder.tag and "path" not in rand.identity  # its own feature-cache entries
    assert all(not p.requires_grad for p in rand.model.parameters())
    frames = torch.randint(0, 256, (2, FRAMES, SIZE, SIZE, 3), dtype=torch.uint8)
    ours, theirs = rand.features(frames), encoder.features(frames)
    assert ours.shape == theirs.shape and not torch.allclose(ours, theirs)
    torch.testing.assert_close(random_init_like(encoder, seed=1).features(frames), ours)  # seeded


def test_build_target_gives_every_target_the_lab_grid_and_width(lab) -> None:
    targets = {name: build_target(name, lab, VFMParams()) for name in ("lab", "oracle", "random")}
    assert {(t.grid, t.dim) for t in targets.values()} == {(lab.grid, lab.dim)}
    assert targets["lab"].encoder is lab and targets["random"].encoder.tag != lab.tag
    with pytest.raises(ValueError, match="unknown TRD target 'nowhere'"):
        build_target("nowhere", lab, VFMParams())


def test_per_clip_computes_each_clip_once_and_off_computes_every_time() -> None:
    calls: list[list[int]] = []

    def compute(at: list[int]) -> torch.Tensor:
        calls.append(at)
        return torch.tensor([[float(i)] for i in at])

    memo = PerClip()
    assert memo.get(["a", "b"], compute)[:, 0].tolist() == [0.0, 1.0]
    assert memo.get(["b", "c", "a"], compute)[:, 0].tolist() == [1.0, 1.0, 0.0]  # only c (position 1) is new
    assert calls == [[0, 1], [1]]
    off = PerClip(enabled=False)
    off.get(["a"], compute), off.get(["a"], compute)
    assert calls[-2:] == [[0], [0]]


def _setup(lab, target_name: str, cached: bool, seen: list) -> object:
    """A Stage2Setup with just what frozen_targets reads: the lab encoder, the run's target, a recording aligner."""
    from sara.train.stage2 import Stage2Setup

    def saliency(vy: torch.Tensor, captions: list[str]) -> torch.Tensor:
        seen.append(vy.clone())
        return vy[..., 0].sigmoid()  # (B, T_s, N_s)

    target = build_target(target_name, lab, VFMParams())
    return Stage2Setup(None, SimpleNamespace(device=torch.device("cpu")), None, SimpleNamespace(saliency=saliency), lab,
                       None, None, None, None, target=target, lab_tokens=build_target("lab", lab, VFMParams()),
                       per_clip={k: PerClip(cached) for k in ("target", "w")})


def samples(n: int = 2) -> tuple[list, torch.Tensor]:
    from sara.train.stage2 import Sample

    masks, _ = patch_masks()
    rng = np.random.default_rng(0)
    out = [Sample(f"clip{i}", rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8), f"caption {i}",
                  masks=masks) for i in range(n)]
    return out, torch.from_numpy(np.stack([s.frames for s in out]))


@pytest.mark.parametrize("name", ["oracle", "random"])
def test_stage2_regresses_onto_the_runs_target_while_saliency_reads_the_lab_encoder(lab, name: str) -> None:
    from sara.train.stage2 import frozen_targets

    seen: list = []
    batch, frames = samples()
    targets, w = frozen_targets(_setup(lab, name, False, seen), Params(), batch, frames)
    expected = build_target(name, lab, VFMParams()).features(batch, frames)
    torch.testing.assert_close(targets.vy, expected)  # TRD's target: the run's
    torch.testing.assert_close(seen[0], lab.features(frames))  # the aligner's input: the lab encoder, always
    assert not torch.allclose(expected, seen[0][..., : expected.shape[-1]])
    assert targets.vfm_grid == lab.grid and w.shape == (2, *targets.vy.shape[1:3])


def test_with_cached_frozen_inputs_targets_and_saliency_are_computed_once_per_clip(lab) -> None:
    from sara.train.stage2 import frozen_targets

    seen: list = []
    setup = _setup(lab, "oracle", True, seen)
    batch, frames = samples(3)
    first, w1 = frozen_targets(setup, Params(), batch[:2], frames[:2])
    again, w2 = frozen_targets(setup, Params(), [batch[1], batch[2]], frames[1:3])
    assert [len(v) for v in seen] == [2, 1]  # clip1 came from the cache: only clip2 reached the aligner
    torch.testing.assert_close(again.vy[0], first.vy[1])
    torch.testing.assert_close(w2[0], w1[1])
    assert set(setup.per_clip["target"].store) == {"clip0", "clip1", "clip2"}


@pytest.mark.slow
@pytest.mark.parametrize("run", ["videorepa@oracle", "videorepa@random"])
def test_a_run_with_a_control_target_trains_and_exports(run: str, workspace: Path) -> None:
    """`sara train-dit --run videorepa@oracle` end to end (DeepSpeed on CPU, 2 steps, in this process): the target's
    tokens reach the loss through the same projector width as the lab encoder's, and the export names the target."""
    import json

    from stage2_testlib import sara_here, write_params

    work = workspace / f"target_{run.replace('@', '_')}"
    work.mkdir()
    r = sara_here(work, "train-dit", "--params", str(write_params(work, "p", steps=2, cache_frozen_inputs=True)), "--run", run)
    assert r.returncode == 0, r.stderr[-3000:]
    metrics = json.loads((work / "dit" / run / "metrics.json").read_text())
    assert metrics["target"] == run.split("@")[1] and metrics["steps"] == 2
    assert metrics["loss_aux"] > 0 and np.isfinite(metrics["loss"])
