"""TRD targets: the frozen tokens a method's projected DiT tokens regress onto, one per run target (sara/runs.py).

- `lab`: the pipeline's frozen video encoder (`vfm.*`; pretrained here at lab scale): V_y = E_v(x_0).
- `random`: the same encoder architecture at random init (`random_init_like`), the negative control: a target
  that carries no learned relation. Seeded by `vfm.seed + 1`, so it is never the tiny encoder's own draw.
- `oracle`: the renderer's ground truth, the positive control. Each encoder-grid token gets its soft membership
  over the clip's background and entities (`membership_tokens`): the share of its tubelet-by-patch pixel volume
  that each visible ground-truth mask covers, through the encoder's own frame sampling and resize. Its cosine Gram
  is then exactly "these two tokens belong to the same entity" where tokens are pure, and graded where they
  straddle an edge.

Every target lives on the lab encoder's grid (T_s, H_s*W_s) with its width D_v (the oracle's K+1 memberships are
zero-padded, which changes no cosine similarity), so the projector, the grid alignment and the loss are the same
code for all three; only the values differ. SARA's saliency is not a target: it always comes from the Stage 1
aligner reading the lab encoder, so the routing is the same whichever target a run regresses onto.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Protocol, Sequence

import torch

from sara.config import VFMParams
from sara.losses.aligner import masks_to_grid
from sara.models.encoders import VideoEncoder, _state_fingerprint, _vfm_tag, cached_features, freeze

RANDOM_SEED_OFFSET = 1  # random target seed = vfm.seed + 1: another draw than the tiny lab encoder's (vfm.seed)


class TRDTarget(Protocol):
    """What Stage 2 and the mechanism readout ask of a target."""

    name: str
    grid: tuple[int, int, int]  # (T_s, H_s, W_s): the lab encoder's
    dim: int  # D_v: the lab encoder's width

    def features(self, clips: Sequence[Any], frames: torch.Tensor) -> torch.Tensor:
        """Target tokens (B, T_s, H_s*W_s, D_v) of clips (each with `clip_id`, `frames` (F, H, W, 3) uint8 and, for
        the oracle, `masks` (K, F, H, W) bool) whose frames are also given stacked, `frames` (B, F, H, W, 3)."""
        ...


class OnEncoderGrid:
    """A target on its `encoder`'s token grid, with its width."""

    encoder: VideoEncoder

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.encoder.grid

    @property
    def dim(self) -> int:
        return self.encoder.dim


@dataclasses.dataclass
class EncoderTarget(OnEncoderGrid):
    """A frozen video encoder's tokens (the `lab` and `random` targets), read from the feature cache when
    `cache_dir` is set (content-keyed by encoder: the random encoder has its own entries), else computed."""

    name: str
    encoder: VideoEncoder
    cache_dir: str | None = None

    def features(self, clips: Sequence[Any], frames: torch.Tensor) -> torch.Tensor:
        if self.cache_dir is not None:
            return torch.stack([cached_features(self.encoder, c, self.cache_dir) for c in clips]).to(self.encoder.device)
        return self.encoder.features(frames)  # (B, T_s, N_s, D_v)


def membership_tokens(fractions: torch.Tensor, dim: int) -> torch.Tensor:
    """Per-entity token fractions (K, T, N) in [0, 1] -> membership tokens (T, N, dim): channel 0 the background,
    channel k the k-th entity, each token a distribution over them; channels K+1.. are zero.

    The renderer's visible masks are disjoint, so the background is what no entity covers; the renormalisation
    only matters for masks that overlap. For a token wholly inside one entity (or the background) the token is
    one-hot, so the cosine Gram of two such tokens is 1 for the same entity and 0 otherwise."""
    k, t, n = fractions.shape
    if dim < k + 1:
        raise ValueError(f"the oracle target needs an encoder width >= entities + 1 = {k + 1}, got vfm width {dim}")
    fg = fractions.float().clamp(0.0, 1.0)  # (K, T, N)
    bg = (1.0 - fg.sum(0)).clamp_min(0.0)  # (T, N)
    m = torch.cat([bg[None], fg], 0)  # (K+1, T, N)
    m = m / m.sum(0, keepdim=True).clamp_min(1e-6)  # a distribution over background and entities per token
    out = torch.zeros(t, n, dim)
    out[..., : k + 1] = m.permute(1, 2, 0)  # (T, N, K+1)
    return out


@dataclasses.dataclass
class OracleTarget(OnEncoderGrid):
    """The renderer's ground truth as tokens on the lab encoder's grid (`membership_tokens`)."""

    encoder: VideoEncoder  # gives the grid, the width, the frames it samples and its resize; its weights are unused
    name: str = "oracle"

    def clip_tokens(self, masks: Any, clip_id: str = "?") -> torch.Tensor:
        """One clip's ground-truth masks (K, F, H, W) bool -> membership tokens (T_s, N_s, D_v)."""
        if masks is None:
            raise ValueError(f"the oracle target needs the renderer's ground-truth masks: clip {clip_id!r} has "
                             "none (masks.npz of a synthetic clip)")
        seen = self.encoder.masks_seen(torch.as_tensor(masks))  # (K, frames, S', S'): the encoder's frames and view
        fractions = masks_to_grid(seen, torch.arange(seen.shape[-3]), self.grid)  # (K, T_s, N_s) share per entity
        return membership_tokens(fractions, self.dim)

    def features(self, clips: Sequence[Any], frames: torch.Tensor) -> torch.Tensor:
        tokens = [self.clip_tokens(getattr(c, "masks", None), c.clip_id) for c in clips]
        return torch.stack(tokens).to(self.encoder.device)  # (B, T_s, N_s, D_v)


def random_init_like(encoder: VideoEncoder, seed: int) -> VideoEncoder:
    """The same encoder architecture (config, preprocessing, grid, dtype, device) at a seeded random init, frozen.

    Its identity (and so its feature-cache tag) names the random weights, never the pretrained ones."""
    config = copy.deepcopy(encoder.model.config)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the same random encoder on every machine and in every stage
        model = type(encoder.model)(config)
    dtype = next(encoder.model.parameters()).dtype
    model = freeze(model).to(device=encoder.device, dtype=dtype)
    identity = {**encoder.identity, "kind": f"random-init {encoder.kind}", "init_seed": seed,
                "weights": _state_fingerprint(model)}
    identity.pop("path", None)  # the pretrained folder's weights are not these
    return dataclasses.replace(encoder, model=model, identity=identity, tag=_vfm_tag(identity))


def build_target(name: str, lab: VideoEncoder, vfm: VFMParams, cache_dir: str | None = None) -> TRDTarget:
    """The run's target (`Run.target`) on the lab encoder `lab`'s grid (`vfm`: its params, whose seed draws the
    random init); encoder targets read the feature cache `cache_dir` when given."""
    if name == "lab":
        return EncoderTarget("lab", lab, cache_dir)
    if name == "random":
        return EncoderTarget("random", random_init_like(lab, vfm.seed + RANDOM_SEED_OFFSET), cache_dir)
    if name == "oracle":
        return OracleTarget(lab)
    raise ValueError(f"unknown TRD target {name!r}: expected lab, random or oracle (sara.runs.TARGETS)")


class PerClip:
    """Per-clip frozen tensors computed once: `get(ids, compute)` stacks the tensors of clips `ids`, calling
    `compute(positions)` (positions into `ids`, returning (M, ...)) only for clips it has not seen yet. Disabled,
    it computes every clip every time (the per-step behaviour)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.store: dict[str, torch.Tensor] = {}

    def get(self, ids: Sequence[str], compute: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        if not self.enabled:
            return compute(list(range(len(ids))))
        missing = [i for i, c in enumerate(ids) if c not in self.store]
        if missing:
            for i, value in zip(missing, compute(missing)):
                self.store[ids[i]] = value
        return torch.stack([self.store[c] for c in ids])
