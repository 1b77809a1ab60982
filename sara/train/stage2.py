"""Stage 2: continual training of the Wan high-noise DiT with L = L_diff + lam_TRD * L_aux (paper Table 11).

One loop for every method (sft, videorepa, moalign, sara-<op>); `sara.methods` supplies the auxiliary loss.
Per step (assembled from the paper's Stage 2 description; docs/stage2.md):
  1. batch: clips chosen by (seed, step, rank); the DiT takes `dit.frames` frames at bin centres of the clip,
     V-JEPA takes its own `vfm.frames` by the same rule, so both span the whole clip (docs/stage2.md);
  2. z_0 = VAE(x_0) (frozen); sigma from the band-limited shifted logit-normal; z_t on the flow path;
  3. frozen targets without grad: the run's TRD target tokens (sara/models/targets.py: the lab encoder's V_y =
     E_v(x_0), or the oracle / random-init controls on its grid), w = aligner(V_y of the lab encoder, full
     caption); with `train.cache_frozen_inputs` both are computed once per clip and kept;
  4. DiT forward; the hook keeps the output of block `trd.layer`; the method's loss projects it and compares;
  5. non-finite loss on any rank -> stop with NonFiniteLossError (weights untouched, last good checkpoint kept);
  6. backward, clip, AdamW step, lr schedule (DeepSpeed); log; checkpoint every k steps and at the end, each one
     only after the gradient norm and every weight passed `sara.train.health` (a resumed state is checked too).
The logged metrics travel inside each checkpoint, so a resumed run logs the whole curve again from step 1.

Exact resume: the data order and every random draw (timesteps, noise, caption dropout) come from generators
seeded by (train.seed, the sample's position in the global sample stream), so nothing but the DeepSpeed state
and the step number must be restored, and 2 ranks x batch 1 draw exactly what 1 rank x batch 2 draws.
"""

from __future__ import annotations

import math
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sara.config import Params
from sara.data.clips import list_clips, load_clip
from sara.data.flow import flow_source
from sara.data.mtss import full_caption
from sara.data.synthetic.truth import Truth
from sara.losses.budget import pair_budget_shares
from sara.losses.diffusion import diffusion_loss, flow_match_target, flow_match_xt, sample_band_sigmas, sigma_to_timestep
from sara.losses.moalign import flow_to_grid
from sara.masks.store import load_masks
from sara.methods import REGISTRY, AuxObjective, AuxTargets, build_objective, params_subset
from sara.models.aligner import load_saliency_model
from sara.models.dit import BlockFeatureHook, encode_latents, frames_to_pixels, load_base, token_grid
from sara.models.encoders import build_vfm
from sara.models.targets import EncoderTarget, PerClip, TRDTarget, build_target
from sara.models.video_view import require_full_clip_view
from sara.runs import Run
from sara.train import checkpoint as ckpt
from sara.train import health
from sara.train.validation import ValidationSink, build_validator

FAULT_ENV = "SARA_FAULT"  # test hook after step K: "kill@K" SIGKILL, "term@K" SIGTERM; "nan@K" poisons step K's loss


class NonFiniteLossError(RuntimeError):
    """A NaN/inf loss: the run stops before the optimizer step, so the last checkpoint stays the last good one."""


# ----------------------------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Sample:
    clip_id: str
    frames: np.ndarray  # (F, H, W, 3) uint8, the whole clip
    caption: str  # the full MTSS caption c (what both the DiT and the aligner see)
    fg: np.ndarray | None = None  # (F, H, W) bool union of entity masks, for the pair-budget log
    truth: Truth | None = None  # renderer ground truth (synthetic clips; MoAlign's ground-truth flow)
    masks: np.ndarray | None = None  # (K, F, H, W) bool ground-truth entity masks, kept for the oracle target only


class ClipSet:
    """Training clips from the clip folders (`data.out_dir`), with ground-truth / SAM FG masks when present.

    Decoded clips are kept in memory when the set is small (the embedded default), else read per step.
    `entity_masks` keeps each clip's ground-truth entity masks too (the oracle TRD target reads them).
    """

    def __init__(self, clips_root: str | Path, masks_dir: str | Path | None = None, split: str = "train", cache_mb: int = 1024,
                 entity_masks: bool = False) -> None:
        self.root = Path(clips_root)
        self.records = list_clips(self.root, split)
        if not self.records:
            raise ValueError(f"no {split} clips in {self.root}/index.json")
        self.masks_dir = Path(masks_dir) if masks_dir else None
        self.cache_mb = cache_mb
        self.entity_masks = entity_masks
        self._cache: dict[int, Sample] = {}
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.records)

    def _fg(self, clip: Any) -> np.ndarray | None:
        if self.masks_dir is not None and (self.masks_dir / f"{clip.clip_id}.npz").is_file():
            m = load_masks(self.masks_dir, clip.clip_id, clip.frames.shape)
            return np.asarray(m.union, dtype=bool)
        if clip.masks is not None and len(clip.masks):
            return np.asarray(clip.masks, dtype=bool).any(0)  # (F, H, W)
        return None

    def _load(self, i: int) -> Sample:
        clip = load_clip(self.records[i].folder(self.root))
        masks = clip.masks if self.entity_masks else None
        return Sample(clip.clip_id, clip.frames, full_caption(clip.caption), self._fg(clip), clip.truth, masks)

    @staticmethod
    def _nbytes(s: Sample) -> int:
        return sum(x.nbytes for x in (s.frames, s.fg, s.masks) if x is not None)

    def _keep(self, i: int, s: Sample) -> bool:
        """Cache `s` if it fits in `cache_mb`; False when it does not."""
        size = self._nbytes(s)
        if self._cached_bytes + size > self.cache_mb * 2**20:
            return False
        self._cache[i] = s
        self._cached_bytes += size
        return True

    def __getitem__(self, i: int) -> Sample:
        if i in self._cache:
            return self._cache[i]
        s = self._load(i)
        self._keep(i, s)
        return s

    def preload(self, workers: int = 8) -> int:
        """Decode every clip into the cache up front, `workers` at a time, when the whole set fits in `cache_mb`
        (judged from the first clip); returns how many clips are cached. Threads suffice: the decode runs in an
        ffmpeg subprocess and numpy, outside the GIL. Without it a step waits on one decode per uncached sample."""
        todo = [i for i in range(len(self)) if i not in self._cache]
        if not todo:
            return len(self._cache)
        first = self._load(todo[0])
        if self._cached_bytes + self._nbytes(first) * len(todo) > self.cache_mb * 2**20:
            return len(self._cache)
        self._keep(todo[0], first)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for i, s in zip(todo[1:], pool.map(self._load, todo[1:])):
                self._keep(i, s)
        return len(self._cache)


class FrozenInputs:
    """Every training clip's VAE latent z_0 and caption state, encoded once per run (`train.cache_frozen_inputs`).

    Both never change during a run (the posterior mean of the frozen VAE, the frozen text encoder), yet a step
    re-encoded its whole batch: 44% and 23% of an embedded step (benchmarks/stage2_step.md). Clips are encoded in
    index order in fixed chunks, so a resumed run reads the same values; a cached value equals the per-step one up
    to batch-composition rounding. Memory: one latent and one (L, D) caption state per clip, on the device.
    """

    def __init__(self, clips: Any, encode: Callable[[torch.Tensor], torch.Tensor],
                 text: Callable[[list[str]], torch.Tensor], chunk: int = 16) -> None:
        n = len(clips)
        with torch.no_grad():
            self.latents = torch.cat([  # (N, C, F', H', W')
                encode(torch.from_numpy(np.stack([clips[i].frames for i in range(a, min(a + chunk, n))])))
                for a in range(0, n, chunk)])
            self.states = torch.cat([  # (N, L, D)
                text([clips[i].caption for i in range(a, min(a + chunk, n))]) for a in range(0, n, chunk)])
            self.empty = text([""])[0]  # (L, D): the dropped caption (CFG)

    def batch(self, idx: list[int], drop: list[bool]) -> tuple[torch.Tensor, torch.Tensor]:
        """(z_0 (B, C, F', H', W'), caption states (B, L, D)) of clips `idx`, the empty caption where `drop`."""
        states = [self.empty if d else self.states[i] for i, d in zip(idx, drop)]
        return self.latents[idx], torch.stack(states)


def sample_seed(seed: int, position: int) -> int:
    """Seed of every random draw of one training sample (timestep, noise, caption dropout).

    `position` is the sample's place in the global sample stream, so the draws do not depend on when or whether
    the run was resumed, nor on how the global batch is split over ranks (2 ranks x 1 = 1 rank x 2).
    """
    return (seed * 1_000_003 + position * 7_919 + 12_345) % (2**63 - 1)


def stream_positions(step: int, rank: int, world: int, batch_size: int) -> list[int]:
    """Global sample-stream positions of one rank's micro-batch at `step`."""
    return [(step * world + rank) * batch_size + j for j in range(batch_size)]


def batch_indices(n: int, positions: list[int], seed: int) -> list[int]:
    """Clip index of each stream position: a fresh permutation of the clips per epoch."""
    out = []
    for g in positions:
        epoch, pos = divmod(g, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7 * epoch))
        out.append(int(perm[pos]))
    return out


def fg_on_grid(fg: torch.Tensor, frame_idx: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """FG masks (B, F, H, W) bool -> (B, T_s, H_s*W_s) bool on the V-JEPA grid.

    The encoder's frames are picked, each patch takes its FG fraction (area resampling), the two frames of a
    tubelet are averaged, and a token is FG when more than half of it is.
    """
    t, h, w = grid
    x = fg[:, frame_idx].float()  # (B, T, H, W)
    b, n = x.shape[:2]
    x = torch.nn.functional.adaptive_avg_pool2d(x.reshape(b * n, 1, *x.shape[-2:]), (h, w))  # (B*T, 1, h, w)
    x = x.reshape(b, t, n // t, h * w).mean(2)  # (B, T_s, N_s) tubelet average
    return x > 0.5


# ----------------------------------------------------------------------------------------------------------------
# The trained module
# ----------------------------------------------------------------------------------------------------------------


class Stage2Model(nn.Module):
    """Everything trainable in one module (DiT + the method's projector/heads), so DeepSpeed owns all of it."""

    def __init__(self, transformer: nn.Module, aux: AuxObjective, layer: int | None, lam: float) -> None:
        super().__init__()
        self.transformer = transformer
        self.aux = aux
        self.lam = lam
        self.hook = BlockFeatureHook(transformer, layer) if layer is not None else None

    def forward(self, zt: torch.Tensor, timestep: torch.Tensor, text: torch.Tensor, target: torch.Tensor, targets: AuxTargets) -> dict[str, torch.Tensor]:
        dtype = next(self.transformer.parameters()).dtype
        pred = self.transformer(zt.to(dtype), timestep, text.to(dtype), return_dict=False)[0]  # (B, C, F', H', W')
        terms = {"loss_diff": diffusion_loss(pred, target)}
        total = terms["loss_diff"]
        if self.hook is not None:
            h = self.hook.pop()  # (B, F'*H'*W'/patch, D) output of block trd.layer
            aux = self.aux(h, token_grid(self.transformer, zt.shape), targets)
            terms.update({f"loss_{k}": v.float() for k, v in aux.items()})
            total = total + self.lam * terms["loss_aux"]
        terms["loss"] = total
        return terms


# ----------------------------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------------------------


@dataclass
class Stage2Result:
    run: str
    steps: int
    start_step: int
    final: dict[str, float] = field(default_factory=dict)
    run_dir: Path | None = None


def _fault() -> tuple[str, int] | None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    kind, _, k = spec.partition("@")
    if kind not in ("kill", "term", "nan") or not k.isdigit():
        raise ValueError(f"{FAULT_ENV}={spec!r}: expected kill@<step>, term@<step> or nan@<step>")
    return kind, int(k)


@dataclass
class Stage2Setup:
    """Everything one Stage 2 run trains with, built once: models, frozen targets, data and the flow source."""

    run: Run
    dist: Any  # sara.train.engine.DistInfo
    base: Any  # sara.models.dit.DiTComponents: the trained DiT, its frozen VAE and text conditioner
    saliency: Any | None  # frozen Stage 1 aligner (sara only)
    vfm: Any | None  # the lab's frozen video encoder (every TRD method): its grid, and SARA's saliency input
    model: Stage2Model
    engine: Any  # sara.train.engine.TrainEngine
    dataset: Any
    flow_fn: Callable[..., np.ndarray] | None  # MoAlign's optical flow, (frames, truth) -> (F-1, H, W, 2)
    flow_cache: dict[str, torch.Tensor] = field(default_factory=dict)  # a clip's flow on the grid, computed once
    frozen: FrozenInputs | None = None  # cached z_0 and caption states (train.cache_frozen_inputs)
    target: TRDTarget | None = None  # the run's TRD target (Run.target), on the lab encoder's grid
    lab_tokens: EncoderTarget | None = None  # the lab encoder's V_y, what the aligner reads (sara runs)
    per_clip: dict[str, PerClip] = field(default_factory=dict)  # frozen targets kept per clip ("target", "w")

    @property
    def device(self) -> torch.device:
        return self.dist.device


def build_stage2(params: Params, run: Run, dataset: Any | None = None) -> Stage2Setup:
    """Initialise the ranks and build the run's models (base DiT, frozen targets, the method's trainable head),
    its engine and its data. Collective."""
    from sara.train.engine import TrainEngine, init_distributed  # local: deepspeed takes seconds to import

    spec = REGISTRY[run.method]
    if spec.needs_saliency or spec.needs_vfm:
        require_full_clip_view(params.vfm.frame_sampling, params.vfm.resize, f"Stage 2 run {run.name!r}")
    tp = params.train
    dist = init_distributed(params.project.device)
    dev = dist.device
    frozen_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(tp.seed + dist.rank)

    base = load_base(params.dit.base_dir, params.dit.kind, dev, frozen_dtype, with_low_noise=False)
    if tp.grad_checkpointing:
        base.transformer.enable_gradient_checkpointing()
    saliency = vfm = None
    if spec.needs_saliency:
        saliency = load_saliency_model(params.aligner.out_dir, params, dev)
        vfm = saliency.vfm  # V_y is shared by the aligner and the TRD target (as the paper states)
    elif spec.needs_vfm:
        vfm = build_vfm(params.vfm, dev)
    target = lab_tokens = None
    if vfm is not None:
        cache = params.vfm.cache_dir if tp.feature_cache else None
        target = build_target(run.target, vfm, params.vfm, cache)
        lab_tokens = target if run.target == "lab" else build_target("lab", vfm, params.vfm, cache)
    dit_dim = base.transformer.config.num_attention_heads * base.transformer.config.attention_head_dim
    aux = build_objective(run, params, dit_dim, target.dim if target is not None else 0)
    layer = params.trd.layer if spec.needs_vfm else None
    model = Stage2Model(base.transformer, aux, layer, params.trd.lam_trd)
    engine = TrainEngine(model, tp, dist)

    if dataset is None:
        dataset = ClipSet(params.data.out_dir, params.masks.out_dir if spec.needs_saliency else None,
                          entity_masks=run.target == "oracle" and spec.needs_vfm)
        dataset.preload(workers=min(16, os.cpu_count() or 1))
    flow_fn = None
    if spec.needs_flow:
        m = params.methods.moalign
        flow_fn = flow_source(m.flow, raft_dir=m.raft_dir, device=str(dev)) if m.flow == "raft" else flow_source(m.flow)
    frozen = None
    if tp.cache_frozen_inputs:
        frozen = FrozenInputs(dataset, lambda frames: clip_latents(base, params, frames, dev), base.text)
    per_clip = {k: PerClip(enabled=tp.cache_frozen_inputs) for k in ("target", "w")}
    return Stage2Setup(run, dist, base, saliency, vfm, model, engine, dataset, flow_fn, frozen=frozen, target=target,
                       lab_tokens=lab_tokens, per_clip=per_clip)


@dataclass
class Stage2Batch:
    """One step's inputs: the noised latents and their velocity target, the text, and the frozen aux targets."""

    samples: list[Sample]
    z0: torch.Tensor  # (B, 16, F', H', W') clean latents
    zt: torch.Tensor  # (B, 16, F', H', W') noised at sigma
    target: torch.Tensor  # flow-matching velocity target, like zt
    timestep: torch.Tensor  # (B,)
    sigma: torch.Tensor  # (B,) on the CPU
    text: torch.Tensor  # (B, L, D_text)
    targets: AuxTargets
    w: torch.Tensor | None  # (B, T_s, N_s) saliency of the sara runs


def clip_latents(base: Any, params: Params, frames: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Normalised VAE latents z_0 (B, 16, F', H', W') of uint8 clips (B, F, H, W, 3), at the DiT's frames and size."""
    pixels = frames_to_pixels(frames, params.dit.frames, (params.dit.height, params.dit.width))
    return encode_latents(base.vae, pixels.to(device))


def stage2_batch(setup: Stage2Setup, params: Params, step: int) -> Stage2Batch:
    """Draw step `step`'s batch on this rank (a pure function of the seed, the step and the rank) and compute its
    diffusion inputs and frozen targets."""
    tp, dist, dev, base = params.train, setup.dist, setup.device, setup.base
    positions = stream_positions(step, dist.rank, dist.world_size, tp.batch_size)
    gens = [torch.Generator().manual_seed(sample_seed(tp.seed, g)) for g in positions]
    torch.manual_seed(sample_seed(tp.seed, positions[0]))  # any module drawing from the global RNG

    idx = batch_indices(len(setup.dataset), positions, tp.seed)
    samples = [setup.dataset[i] for i in idx]
    frames = torch.from_numpy(np.stack([s.frames for s in samples]))  # (B, F, H, W, 3) uint8
    drop = [bool(torch.rand(1, generator=g) < tp.caption_dropout) for g in gens]  # CFG text dropout

    # latents, timesteps, noise
    if setup.frozen is not None:
        z0, text = setup.frozen.batch(idx, drop)  # (B, 16, F', H', W'), (B, L, D_text)
    else:
        with torch.no_grad():
            z0 = clip_latents(base, params, frames, dev)  # (B, 16, F', H', W')
            text = base.text(["" if d else s.caption for s, d in zip(samples, drop)])  # (B, L, D_text)
    band = dict(mean=tp.logit_mean, std=tp.logit_std, shift=tp.shift, t_min=tp.t_min, t_max=tp.t_max)
    sigma = torch.cat([sample_band_sigmas(1, g, **band) for g in gens])  # (B,)
    noise = torch.stack([torch.randn(z0.shape[1:], generator=g) for g in gens]).to(dev)  # (B, C, F', H', W')
    sigma_d = sigma.to(dev)
    zt = flow_match_xt(z0, noise, sigma_d)
    targets, w = frozen_targets(setup, params, samples, frames)
    return Stage2Batch(samples, z0, zt, flow_match_target(z0, noise), sigma_to_timestep(sigma_d), sigma, text, targets, w)


def frozen_targets(setup: Stage2Setup, params: Params, samples: list[Sample], frames: torch.Tensor) -> tuple[AuxTargets, torch.Tensor | None]:
    """The aux loss's frozen inputs for a batch: the run's TRD target tokens of the clean clips, the aligner's
    saliency w under the full caption from the lab encoder's tokens (sara, whatever the target) and the optical
    flow on the token grid (moalign). Each is a function of the clip alone: with `train.cache_frozen_inputs` it is
    computed the first time a clip is drawn and kept (setup.per_clip)."""
    vfm, dev, target = setup.vfm, setup.device, setup.target
    if vfm is None or target is None:
        return AuxTargets(), None
    ids = [s.clip_id for s in samples]

    def tokens(source: TRDTarget, at: list[int]) -> torch.Tensor:  # (M, T_s, N_s, D_v) of the clips at `at`
        return source.features([samples[i] for i in at], frames[at])

    w = None
    with torch.no_grad():
        vy = setup.per_clip["target"].get(ids, lambda at: tokens(target, at))  # (B, T_s, N_s, D_v)
        if setup.saliency is not None:
            lab = setup.lab_tokens
            w = setup.per_clip["w"].get(ids, lambda at: setup.saliency.saliency(  # full caption c, clean clip x_0
                vy[at] if lab is target else tokens(lab, at), [samples[i].caption for i in at]))
    flow = None
    if setup.flow_fn is not None:
        cache = setup.flow_cache
        for s in samples:  # a clip's flow is fixed: computed once per clip
            if s.clip_id not in cache:
                cache[s.clip_id] = flow_to_grid(torch.from_numpy(setup.flow_fn(s.frames, s.truth)), vfm.grid)[0]
        flow = torch.stack([cache[s.clip_id] for s in samples]).to(dev)  # (B, T_s-1, H_s, W_s, 2)
    return AuxTargets(vy=vy.to(dev), w=None if w is None else w.to(dev), flow=flow, vfm_grid=target.grid), w


def _resume(setup: Stage2Setup, params: Params, code_entry: str, resume: bool
            ) -> tuple[str, Path, int, list[tuple[int, dict[str, float]]]]:
    """(fingerprint, state dir, first step, logged history): the run's exact resume point when a checkpoint of the
    same fingerprint (code, inputs, params, world size) exists and its weights pass `health`, else step 0 in a fresh
    state dir. Collective."""
    run, dist, engine = setup.run, setup.dist, setup.engine
    inputs = ckpt.inputs_digests(code_entry, run.inputs(params))
    fp = ckpt.fingerprint(run.name, params_subset(params, run.params), dist.world_size, inputs)
    state_dir = Path(params.train.state_dir) / run.name
    if dist.is_main:
        ckpt.prepare_state_dir(state_dir, fp, resume=resume)
    engine.barrier()
    tag = ckpt.resumable_tag(state_dir, fp) if resume else None
    if tag is None:
        return fp, state_dir, 0, []
    client = engine.load(state_dir, tag)
    if client.get("fingerprint") != fp:
        raise RuntimeError(f"checkpoint {state_dir / tag} belongs to another configuration (fingerprint mismatch)")
    with engine.full_parameters() as m:
        health.check_weights(m, f"train_dit/{run.name}: checkpoint {state_dir / tag} not resumed (delete "
                                f"{state_dir} or rerun with --no-resume)")
    history = [(int(k), dict(v)) for k, v in client.get("history", [])]
    return fp, state_dir, int(client["step"]), history


def train_stage2(
    params: Params,
    run: Run,
    *,
    dataset: Any | None = None,
    log: Callable[[dict[str, float], int], None] | None = None,
    resume: bool = True,
    progress: bool = True,
    code_entry: str = "sara/train/stage2.py",
    validation_sink: ValidationSink | None = None,
) -> Stage2Result:
    """Train one Stage 2 run; returns the final metrics. Collective: every rank calls it (launcher or single).

    `code_entry` is the module whose import closure the resume fingerprint hashes (the stage passes its own).
    """
    from sara.train.engine import peak_memory_bytes  # local: deepspeed takes seconds to import

    setup = build_stage2(params, run, dataset)
    tp, dist, dev, engine = params.train, setup.dist, setup.device, setup.engine

    fp, state_dir, start, history = _resume(setup, params, code_entry, resume)
    validate = build_validator(params, setup, validation_sink)  # train.validation (sara.train.validation)
    if log is not None and dist.is_main:
        for k, rec in history:  # the resumed run shows the whole curve, not only the steps after `start`
            log(rec, k)
    fault = _fault()
    last: dict[str, float] = {}
    bar = None
    if progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=tp.steps, initial=start, desc=f"train_dit/{run}", unit="step")
    for step in range(start, tp.steps):
        t0 = time.perf_counter()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        batch = stage2_batch(setup, params, step)
        terms = engine(batch.zt, batch.timestep, batch.text, batch.target, batch.targets)
        loss = terms["loss"]
        if fault == ("nan", step + 1):
            loss = loss * float("nan")

        stop_if_non_finite(engine, loss, terms, run.name, step + 1, state_dir)
        engine.backward(loss)
        engine.step()
        done = step + 1
        dt = time.perf_counter() - t0
        tokens = batch.z0.shape[0] * math.prod(token_grid(setup.base.transformer, batch.z0.shape)) * dist.world_size
        last = {k: float(v.detach()) for k, v in terms.items()}
        last.update(
            lr=engine.lr(),
            grad_norm=engine.grad_norm(),
            step_time_s=dt,
            tokens_per_s=tokens / dt,
            peak_mem_gb=peak_memory_bytes(dev) / 2**30,
            sigma_mean=float(batch.sigma.mean()),
        )
        if batch.w is not None and run.op is not None:
            last.update(_budget(batch.w, run.op, batch.samples, setup.vfm))
        if done % tp.log_every == 0 or done == tp.steps:
            history.append((done, dict(last)))  # (step, metrics) of every logged step, kept in checkpoints
            if log is not None and dist.is_main:
                log(last, done)
        health.check_grad_norm(last["grad_norm"], _unhealthy(run.name, done, state_dir))
        if done % tp.checkpoint_every == 0 or done == tp.steps:
            with engine.full_parameters() as m:
                health.check_weights(m, _unhealthy(run.name, done, state_dir))
            engine.save(state_dir, ckpt.tag_for(done), {"step": done, "fingerprint": fp, "run": run.name,
                                                          "history": [[k, v] for k, v in history]})
            engine.barrier()
            if dist.is_main:
                ckpt.prune_checkpoints(state_dir, tp.keep_checkpoints)
        validate(done)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}")
        if fault == ("kill", done):
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: a hard crash, nothing gets cleaned up
        if fault == ("term", done):
            os.kill(os.getpid(), signal.SIGTERM)  # test hook: what a cancelled sweep sends
    if bar is not None:
        bar.close()

    # -- final export (the DVC output) -------------------------------------------------------------------------
    run_dir = Path(tp.out_dir) / run.name
    final = {"run": run.name, "method": run.method, "op": run.op, "target": run.target, "steps": tp.steps, "resumed_from": start,
             "fingerprint": fp, "world_size": dist.world_size, "precision": engine.precision,
             "scale": params.project.scale, **last}
    with engine.full_parameters() as m:
        if dist.is_main:
            ckpt.export_final(run_dir, m.transformer, m.aux, final)
    engine.barrier()
    if dist.is_main:
        ckpt.discard_state(state_dir)  # exported: a later run with changed code or data can never resume it
    if setup.model.hook is not None:
        setup.model.hook.remove()
    return Stage2Result(run.name, tp.steps, start, last, run_dir)


def stop_if_non_finite(engine: Any, loss: torch.Tensor, terms: dict[str, torch.Tensor], run: str, step: int,
                       state_dir: Path) -> None:
    """Stop on a non-finite loss on any rank, before anything is updated (collective)."""
    bad = engine.all_reduce_max(0.0 if math.isfinite(float(loss.detach())) else 1.0)
    if bad > 0:
        good = ckpt.latest_tag(state_dir)
        where = f"{state_dir / good}" if good else "none (no checkpoint was written yet)"
        values = {k: float(v.detach()) for k, v in terms.items()}
        raise NonFiniteLossError(
            f"train_dit/{run}: non-finite loss at step {step} ({values}); stopped before the optimizer step. "
            f"Last good checkpoint: {where}"
        )


def _unhealthy(run: str, step: int, state_dir: Path) -> str:
    """Start of the error when step `step` diverged: no checkpoint is written, the last good one is named."""
    good = ckpt.latest_tag(state_dir)
    where = f"{state_dir / good}" if good else "none (no checkpoint was written yet)"
    return f"train_dit/{run}: step {step} diverged, no checkpoint written (last good checkpoint: {where})"


def _budget(w: torch.Tensor, op: str, samples: list[Sample], vfm: Any) -> dict[str, float]:
    """Pair-budget shares (FG-FG / FG-BG / BG-BG) of the active operator under w; FG from masks when known."""
    fg = None
    if all(s.fg is not None for s in samples):
        masks = torch.from_numpy(np.stack([s.fg for s in samples]))  # (B, F, H, W)
        fg = fg_on_grid(masks, vfm.frame_indices(masks.shape[1]), vfm.grid).to(w.device)
    shares = pair_budget_shares(w.float().clamp(0, 1), op, fg=fg)
    return {f"budget_{k}": v for k, v in shares.items()}
