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
  6. backward, clip, AdamW step, lr schedule (`train.engine`: DeepSpeed, or one process in plain torch); log; checkpoint every k steps and at the end, each one
     only after the gradient norm and every weight passed `sara.train.health` (a resumed state is checked too).
The logged metrics travel inside each checkpoint, so a resumed run logs the whole curve again from step 1.

Exact resume: the data order and every random draw (timesteps, noise, caption dropout) come from generators
seeded by (train.seed, the sample's position in the global sample stream), so nothing but the DeepSpeed state
and the step number must be restored, and 2 ranks x batch 1 draw exactly what 1 rank x batch 2 draws.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from sara.config import Params
from sara.data.clipset import ClipSet, FrozenInputs, Sample, step_loader
from sara.data.flow import flow_source
from sara.io import exclusive
from sara.losses.budget import pair_budget_shares
from sara.losses.diffusion import diffusion_loss, flow_match_target, flow_match_xt, sample_band_sigmas, sigma_to_timestep
from sara.losses.moalign import flow_to_grid
from sara.methods import REGISTRY, AuxObjective, AuxTargets, build_objective, params_subset
from sara.models.aligner import load_saliency_model
from sara.models.dit import BlockFeatureHook, encode_latents, frames_to_pixels, load_base, token_grid
from sara.models.encoders import build_vfm
from sara.models.targets import EncoderTarget, PerClip, TRDTarget, build_target
from sara.models.video_view import require_full_clip_view
from sara.runs import Run
from sara.train import checkpoint as ckpt
from sara.train import health
from sara.train.callbacks import INSTALLED, Stage2Callback
from sara.train.validation import ValidationSink, build_validator


class NonFiniteLossError(RuntimeError):
    """A NaN/inf loss: the run stops before the optimizer step, so the last checkpoint stays the last good one."""


# ----------------------------------------------------------------------------------------------------------------
# Data order (the clips themselves: sara.data.clipset)
# ----------------------------------------------------------------------------------------------------------------


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


def step_indices(n: int, seed: int, rank: int, world: int, batch_size: int, step: int) -> list[int]:
    """Clip indices of one rank's micro-batch at `step` (a pure function of these arguments)."""
    return batch_indices(n, stream_positions(step, rank, world, batch_size), seed)


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


@dataclass
class Stage2Setup:
    """Everything one Stage 2 run trains with, built once: models, frozen targets, data and the flow source."""

    run: Run
    dist: Any  # sara.train.engine.DistInfo
    base: Any  # sara.models.dit.DiTComponents: the trained DiT, its frozen VAE and text conditioner
    saliency: Any | None  # frozen Stage 1 aligner (sara only)
    vfm: Any | None  # the lab's frozen video encoder (every TRD method): its grid, and SARA's saliency input
    model: Stage2Model
    engine: Any  # sara.train.engine.TrainEngine or sara.train.single_engine.SingleProcessEngine (`train.engine`)
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


def compile_transformer(transformer: nn.Module, backend: str = "inductor") -> nn.Module:
    """torch.compile the DiT's forward in place (`train.compile`).

    `nn.Module.compile` keeps the module and its parameter names, so DeepSpeed, the checkpoints and the export see
    the same model; the TRD hook on block `trd.layer` (BlockFeatureHook) is traced into the compiled forward and
    still hands its tensor, with its graph, to the aux loss.
    """
    transformer.compile(backend=backend)
    return transformer


def maybe_compile(transformer: nn.Module, tp: Any, device: torch.device) -> None:
    """`train.compile` on CUDA only: on CPU (CI, the embedded DAG) compiling costs minutes and saves nothing."""
    if tp.compile and device.type == "cuda":
        compile_transformer(transformer)


def start_ranks(tp: Any, device: str) -> Any:
    """This process's rank and device: DeepSpeed's world (a launcher's or one rank), or one process (torch)."""
    if tp.engine == "torch":
        from sara.train.single_engine import single_process

        return single_process(device)
    from sara.train.engine import init_distributed  # local: deepspeed takes seconds to import

    return init_distributed(device)


def make_engine(model: nn.Module, tp: Any, dist: Any) -> Any:
    """The `train.engine` that owns every trainable parameter of `model` (same interface, same numerics)."""
    if tp.engine == "torch":
        from sara.train.single_engine import SingleProcessEngine

        return SingleProcessEngine(model, tp, dist)
    from sara.train.engine import TrainEngine  # local: deepspeed takes seconds to import

    return TrainEngine(model, tp, dist)


def build_stage2(params: Params, run: Run, dataset: Any | None = None) -> Stage2Setup:
    """Initialise the ranks and build the run's models (base DiT, frozen targets, the method's trainable head),
    its engine and its data. Collective."""
    spec = REGISTRY[run.method]
    if spec.needs_saliency or spec.needs_vfm:
        require_full_clip_view(params.vfm.frame_sampling, params.vfm.resize, f"Stage 2 run {run.name!r}")
    tp = params.train
    dist = start_ranks(tp, params.project.device)
    dev = dist.device
    frozen_dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    torch.manual_seed(tp.seed + dist.rank)

    base = load_base(params.dit.base_dir, params.dit.kind, dev, frozen_dtype, with_low_noise=False)
    if tp.grad_checkpointing:
        base.transformer.enable_gradient_checkpointing()
    maybe_compile(base.transformer, tp, dev)
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
    engine = make_engine(model, tp, dist)

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


def stage2_batch(setup: Stage2Setup, params: Params, step: int,
                 read: tuple[list[int], list[Sample]] | None = None) -> Stage2Batch:
    """Draw step `step`'s batch on this rank (a pure function of the seed, the step and the rank) and compute its
    diffusion inputs and frozen targets. `read`: the step's (clip indices, samples) from `step_loader`; None
    reads them here."""
    tp, dist, dev, base = params.train, setup.dist, setup.device, setup.base
    positions = stream_positions(step, dist.rank, dist.world_size, tp.batch_size)
    gens = [torch.Generator().manual_seed(sample_seed(tp.seed, g)) for g in positions]
    torch.manual_seed(sample_seed(tp.seed, positions[0]))  # any module drawing from the global RNG

    if read is None:
        idx = batch_indices(len(setup.dataset), positions, tp.seed)
        read = idx, [setup.dataset[i] for i in idx]
    idx, samples = read
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


# Per-step measurements of the machine, not of the model: logged to MLflow and the run's timings file, never
# exported with the model (they differ between two runs that train bit-identical weights).
TIMINGS = ("step_time_s", "tokens_per_s", "peak_mem_gb")


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
    callbacks: Sequence[Stage2Callback] = (),
) -> Stage2Result:
    """Train one Stage 2 run; returns the final metrics. Collective: every rank calls it (launcher or single).

    `code_entry` is the module whose import closure the resume fingerprint hashes (the stage passes its own).
    `callbacks` (and those `sara.train.callbacks.install`ed) see every step (tests inject faults this way).
    Rank 0 holds the run-state lock (`sara.io.exclusive`) for the whole run: a second trainer of the same run
    state is refused at once.
    """
    is_main = int(os.environ.get("RANK", "0")) == 0  # before init: refuse a second trainer before any model loads
    state_lock = exclusive(Path(params.train.state_dir) / run.name, f"train_dit/{run}") if is_main else nullcontext()
    with state_lock:
        return _train(params, run, dataset, log, resume, progress, code_entry, validation_sink,
                      [*INSTALLED, *callbacks])


def _train(params: Params, run: Run, dataset: Any | None, log: Callable[[dict[str, float], int], None] | None,
           resume: bool, progress: bool, code_entry: str, validation_sink: ValidationSink | None,
           hooks: list[Stage2Callback]) -> Stage2Result:
    setup = build_stage2(params, run, dataset)
    tp, dist, dev, engine = params.train, setup.dist, setup.device, setup.engine

    fp, state_dir, start, history = _resume(setup, params, code_entry, resume)
    validate = build_validator(params, setup, validation_sink)  # train.validation (sara.train.validation)
    if log is not None and dist.is_main:
        for k, rec in history:  # the resumed run shows the whole curve, not only the steps after `start`
            log(rec, k)
    last: dict[str, float] = {}
    bar = None
    if progress and dist.is_main:
        from tqdm import tqdm

        bar = tqdm(total=tp.steps, initial=start, desc=f"train_dit/{run}", unit="step")
    indices = functools.partial(step_indices, len(setup.dataset), tp.seed, dist.rank, dist.world_size, tp.batch_size)
    for step, read in zip(range(start, tp.steps), step_loader(setup.dataset, indices, start, tp.steps)):
        t0 = time.perf_counter()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        batch = stage2_batch(setup, params, step, read)
        terms = engine(batch.zt, batch.timestep, batch.text, batch.target, batch.targets)
        loss = terms["loss"]
        for hook in hooks:
            loss = hook.on_loss(step + 1, loss)

        stop_if_non_finite(engine, loss, terms, run.name, step + 1, state_dir)  # a host sync every step: the guard
        engine.backward(loss)
        engine.step()
        done = step + 1
        logged = done % tp.log_every == 0 or done == tp.steps
        if logged:  # host syncs of the logged values (and the pair budget) on log steps only
            last = _step_metrics(setup, engine, batch, terms, time.perf_counter() - t0)
            history.append((done, dict(last)))  # (step, metrics) of every logged step, kept in checkpoints
            if log is not None and dist.is_main:
                log(last, done)
        health.check_grad_norm(engine.grad_norm(), _unhealthy(run.name, done, state_dir))
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
            if logged:
                bar.set_postfix(loss=f"{last['loss']:.4f}")
        for hook in hooks:
            hook.on_step_end(done, state_dir)
    if bar is not None:
        bar.close()

    # -- final export (the DVC output): what determines the model, no timings --------------------------------------
    run_dir = Path(tp.out_dir) / run.name
    final = {"run": run.name, "method": run.method, "op": run.op, "target": run.target, "steps": tp.steps,
             "fingerprint": fp, "world_size": dist.world_size, "precision": engine.precision,
             "scale": params.project.scale, **{k: v for k, v in last.items() if k not in TIMINGS}}
    with engine.full_parameters() as m:
        if dist.is_main:
            ckpt.export_final(run_dir, m.transformer, m.aux, final)
    engine.barrier()
    if dist.is_main:
        ckpt.discard_state(state_dir)  # exported: a later run with changed code or data can never resume it
    if setup.model.hook is not None:
        setup.model.hook.remove()
    return Stage2Result(run.name, tp.steps, start, last, run_dir)


def _step_metrics(setup: Stage2Setup, engine: Any, batch: Stage2Batch, terms: dict[str, torch.Tensor],
                  seconds: float) -> dict[str, float]:
    """The logged values of one step: loss terms, lr, gradient norm, noise level, the pair-budget shares (sara
    runs) and the TIMINGS."""
    from sara.train.engine import peak_memory_bytes  # local: deepspeed takes seconds to import

    dev, world = setup.device, setup.dist.world_size
    tokens = batch.z0.shape[0] * math.prod(token_grid(setup.base.transformer, batch.z0.shape)) * world
    out = {k: float(v.detach()) for k, v in terms.items()}
    out.update(
        lr=engine.lr(),
        grad_norm=engine.grad_norm(),
        step_time_s=seconds,
        tokens_per_s=tokens / seconds,
        peak_mem_gb=peak_memory_bytes(dev) / 2**30,
        sigma_mean=float(batch.sigma.mean()),
    )
    if batch.w is not None and setup.run.op is not None:
        out.update(_budget(batch.w, setup.run.op, batch.samples, setup.vfm))
    return out


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
