"""Stage 1 training: the K+2 supervision units per clip, batching that keeps a clip's forwards together, the loss
step and the loop (AdamW, warmup + cosine to min lr, grad clipping, bf16 autocast on GPU, optional gradient
checkpointing, checkpoint / resume, progress bar, per-step metrics through a callback).

Orchestration (MLflow, DVC) stays in `sara.stages.train_aligner`; this module is plain PyTorch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sara.config import AlignerParams, Params
from sara.data import mtss
from sara.data.clips import load_clip
from sara.losses.aligner import info_nce, masks_to_grid, same_caption_matrix, saliency_bce
from sara.masks.store import load_masks
from sara.models.aligner import SaliencyAligner, pool_visual_tokens
from sara.models.encoders import cached_features
from sara.train.schedules import warmup_cosine
from sara.train import health

TRAIN_STATE = "train_state.pt"


@dataclass
class Unit:
    """One supervision forward: a caption and its target on the encoder grid (the paper's K + 2 forwards per video)."""

    kind: str  # entity | combined | background | full
    caption: str
    target: torch.Tensor  # M_y (T_s, N_s) in [0, 1]
    ref_id: str | None = None


@dataclass
class ClipExample:
    """A clip's cached V-JEPA features and its supervision units."""

    clip_id: str
    features: torch.Tensor  # V_y (T_s, N_s, D_v)
    units: list[Unit]
    full_caption: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def supervision_units(
    entity_texts: Sequence[tuple[str, str]],
    foreground_text: str,
    background_text: str,
    full_text: str,
    ref_ids: Sequence[str],
    entity_masks: torch.Tensor,
    frame_idx: torch.Tensor,
    grid: tuple[int, int, int],
    *,
    entity_separated: bool = True,
    threshold: float | None = None,
    seen: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> list[Unit]:
    """The K+2 forwards of one clip: (c_k, M_k) for k = 1..K, (c_fg, M_fg = union), (c_bg, M_bg = 1 - M_fg).

    `entity_masks` (K, F, H, W) bool is ordered as `ref_ids`; captions are matched to masks by ref_id. With
    `entity_separated=False` (the "w/o entity-separated" ablation) the clip gives one forward: the full caption c
    with the union mask. A clip with K = 0 gives only the background forward (M_bg = 1 everywhere).
    `seen` (the encoder's `masks_seen`) maps a clip mask (F, H, W) to what the encoder saw of it, its frames
    through its resize and crop (`vfm.resize`); None = the sampled frames `frame_idx` of the full frame.
    """
    masks = torch.as_tensor(entity_masks).bool()  # (K, F, H, W)
    if masks.ndim != 4 or masks.shape[0] != len(ref_ids):
        raise ValueError(f"entity masks must be (K, F, H, W) with K = len(ref_ids) = {len(ref_ids)}, "
                         f"got {tuple(masks.shape)}")
    union = masks.any(0)  # (F, H, W)
    background = ~union

    def to_grid(m: torch.Tensor) -> torch.Tensor:  # (F, H, W) -> (T_s, N_s)
        if seen is None:
            return masks_to_grid(m, frame_idx, grid, threshold)
        view = seen(m)  # (T, S, S): the encoder's frames, resized and cropped as its pixels were
        return masks_to_grid(view, torch.arange(view.shape[-3]), grid, threshold)

    if not entity_separated:
        return [Unit("full", full_text, to_grid(union))]
    index = {r: i for i, r in enumerate(ref_ids)}
    units = []
    for ref_id, text in entity_texts:
        if ref_id not in index:
            raise ValueError(f"entity {ref_id} has a caption but no mask (mask ref_ids: {list(ref_ids)})")
        units.append(Unit("entity", text, to_grid(masks[index[ref_id]]), ref_id))
    if units:
        units.append(Unit("combined", foreground_text, to_grid(union)))
    units.append(Unit("background", background_text, to_grid(background)))
    return units


def clip_units(caption: Any, masks: Any, frame_idx: torch.Tensor, grid: tuple[int, int, int],
               p: AlignerParams, seen: Callable[[torch.Tensor], torch.Tensor] | None = None) -> list[Unit]:
    """`supervision_units` from an MTSS caption (`sara.data.mtss`) and stored masks (`sara.masks.store`)."""
    return supervision_units(
        mtss.entity_captions(caption), mtss.foreground_caption(caption), mtss.background_caption(caption),
        mtss.full_caption(caption), list(masks.ref_ids), torch.as_tensor(masks.entities), frame_idx, grid,
        entity_separated=p.entity_separated, threshold=p.mask_threshold, seen=seen)


def build_examples(records: Sequence[Any], params: Params, vfm: Any, *, with_clip: bool = False,
                   all_queries: bool = False, progress: bool = True) -> list[ClipExample]:
    """ClipExamples for clip records (`sara.data.clips.list_clips`): cached V-JEPA features (computed once per clip
    and encoder under `vfm.cache_dir`), masks from `masks.out_dir`, and the supervision units (K+2, or the single
    full-caption unit of the "w/o entity-separated" ablation; `all_queries` always gives the K+2 units, which is
    what evaluation scores every variant on). With `with_clip` the loaded frames (sampled, one per tubelet),
    masks and caption are kept in `extra` for figures."""
    from tqdm.auto import tqdm

    out = []
    for rec in tqdm(records, desc="features + targets", disable=not progress, unit="clip"):
        clip = load_clip(rec.folder(params.data.out_dir))
        masks = load_masks(params.masks.out_dir, rec.clip_id, clip.frames.shape)
        feats = cached_features(vfm, clip, params.vfm.cache_dir)  # (T_s, N_s, D_v)
        idx = vfm.frame_indices(clip.frames.shape[0])
        p = params.aligner.model_copy(update={"entity_separated": True}) if all_queries else params.aligner
        units = clip_units(clip.caption, masks, idx, vfm.grid, p, seen=vfm.masks_seen)
        extra: dict[str, Any] = {"num_entities": len(masks.ref_ids)}
        if with_clip:
            first = idx[:: vfm.tubelet_size]  # first sampled frame of each tubelet
            extra |= {"frames": clip.frames[first.numpy()], "masks": masks.entities[:, first.numpy()],
                      "ref_ids": list(masks.ref_ids), "all_frames": clip.frames}
        out.append(ClipExample(rec.clip_id, feats, units, mtss.full_caption(clip.caption), extra))
    return out


# ----------------------------------------------------------------------------------------------------------------
# batching


@dataclass
class Batch:
    """All forwards of a few whole clips (so a clip's other entities and background are in-batch negatives)."""

    features: torch.Tensor  # (U, N_v, D_v)
    targets: torch.Tensor  # (U, N_v)
    captions: list[str]
    kinds: list[str]
    clip_index: torch.Tensor  # (U,) which clip of the batch each forward belongs to


def make_batch(examples: Sequence[ClipExample], max_entities: int | None = None,
               generator: torch.Generator | None = None) -> Batch:
    """Stack the units of `examples`; a clip with more than `max_entities` entity units keeps a random subset
    (the combined and background units always stay)."""
    feats, targets, caps, kinds, owner = [], [], [], [], []
    for ci, ex in enumerate(examples):
        units = ex.units
        ent = [u for u in units if u.kind == "entity"]
        if max_entities is not None and len(ent) > max_entities:
            keep = torch.randperm(len(ent), generator=generator)[:max_entities].sort().values.tolist()
            kept = {id(ent[i]) for i in keep}
            units = [u for u in units if u.kind != "entity" or id(u) in kept]
        v = ex.features.flatten(0, 1)  # (N_v, D_v)
        for u in units:
            feats.append(v)
            targets.append(u.target.flatten())  # (N_v,)
            caps.append(u.caption)
            kinds.append(u.kind)
            owner.append(ci)
    return Batch(torch.stack(feats), torch.stack(targets), caps, kinds, torch.tensor(owner))


def batch_order(num_clips: int, clips_per_batch: int, step: int, seed: int) -> list[int]:
    """Clip indices of training step `step`: epochs are seeded permutations, so resuming needs only the step."""
    per = min(clips_per_batch, num_clips)
    start = step * per
    out = []
    while len(out) < per:
        epoch, pos = divmod(start + len(out), num_clips)
        perm = torch.randperm(num_clips, generator=torch.Generator().manual_seed(seed * 100003 + epoch)).tolist()
        out.append(perm[pos])
    return out


# ----------------------------------------------------------------------------------------------------------------
# loss step


@dataclass
class StepOutput:
    total: torch.Tensor
    bce: torch.Tensor
    nce: torch.Tensor | None
    nce_acc: float | None
    saliency_mean: float


def stage1_loss(aligner: SaliencyAligner, text: Any, batch: Batch, p: AlignerParams,
                grid: tuple[int, int, int], caption_states: dict[str, torch.Tensor] | None = None) -> StepOutput:
    """L_stage1 = lam_BCE * L_BCE + lam_InfoNCE * L_InfoNCE for one batch of forwards (the paper's Table 10).

    `caption_states` caches H_y per caption (the caption side is frozen and has no gradient)."""
    dev = next(aligner.parameters()).device
    tokens, mask = text.embed(batch.captions)  # E_emb: (U, L, D_t)
    out = aligner(batch.features.to(dev), tokens.to(dev), mask.to(dev))
    bce = saliency_bce(out.logits, batch.targets.to(dev))
    total = p.lam_bce * bce
    nce, acc = None, None
    if p.use_infonce and p.lam_nce > 0:
        z = pool_visual_tokens(aligner.project(out.features), grid, p.nce_pool)  # (U, N', D_t)
        h_p = text.encode_embeds(z)  # (U, D_t), gradients flow through the frozen E_lm
        h_y = caption_embeddings(text, batch.captions, caption_states).to(h_p.device)  # (U, D_t)
        nce = info_nce(h_p, h_y, p.tau_nce, same_caption_matrix(batch.captions))
        total = total + p.lam_nce * nce
        with torch.no_grad():
            sims = h_p.float() @ h_y.float().t()  # (U, U)
            same = same_caption_matrix(batch.captions).to(sims.device)
            acc = float(same[torch.arange(len(sims)), sims.argmax(1)].float().mean())
    return StepOutput(total, bce, nce, acc, float(out.saliency.detach().mean()))


@torch.no_grad()
def caption_embeddings(text: Any, captions: Sequence[str],
                       cache: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
    """H_y for each caption (B, D_t), computed once per distinct caption when a cache dict is given."""
    if cache is None:
        return text.encode_texts(list(captions)).float()
    missing = [c for c in dict.fromkeys(captions) if c not in cache]
    for i in range(0, len(missing), 32):
        chunk = missing[i : i + 32]
        for c, h in zip(chunk, text.encode_texts(chunk).float().cpu()):
            cache[c] = h
    return torch.stack([cache[c] for c in captions])


# ----------------------------------------------------------------------------------------------------------------
# the loop


def autocast_context(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (Table 10), fp32 on CPU unless asked."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if use_bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def run_fingerprint(params: Params, clip_ids: Sequence[str], vfm_tag: str) -> str:
    """Identifies a training run so a leftover train state is resumed only by the same run."""
    blob = json.dumps({"aligner": params.aligner.model_dump(mode="json"), "text": params.text.model_dump(mode="json"),
                       "vfm": vfm_tag, "clips": list(clip_ids)}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    aligner: SaliencyAligner
    history: list[dict[str, float]]
    seconds: float
    resumed_from: int


def train_aligner(
    examples: Sequence[ClipExample],
    text: Any,
    vfm_dim: int,
    grid: tuple[int, int, int],
    params: Params,
    work_dir: str | Path,
    *,
    device: torch.device,
    fingerprint: str = "",
    log_fn: Callable[[dict[str, float], int], None] | None = None,
    progress: bool = True,
    resume: bool = True,
) -> TrainResult:
    """Train Phi_CA + Phi_sal + Phi_proj on `examples` for `aligner.steps` steps.

    A train state (aligner, optimizer, scheduler, step) is written to `work_dir` every `aligner.checkpoint_every`
    steps; with `resume`, a state left there by an interrupted run with the same `fingerprint` is picked up.
    """
    from tqdm.auto import tqdm

    p = params.aligner
    if not examples:
        raise ValueError("no training clips: the train split is empty")
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(p.seed)
    aligner = SaliencyAligner(vfm_dim, text.dim, p).to(device)
    opt = torch.optim.AdamW(aligner.parameters(), lr=p.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=p.weight_decay)
    sched = warmup_cosine(opt, p.warmup_steps, p.steps, p.min_lr)
    if p.grad_checkpointing and hasattr(text.model, "gradient_checkpointing_enable"):
        text.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    start = 0
    state_path = work_dir / TRAIN_STATE
    if resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=True)  # tensors and plain containers only
        if state.get("fingerprint") == fingerprint:
            health.check_weights(state["aligner"], f"train_aligner: train state {state_path} not resumed (delete it "
                                                   "or rerun with --fresh)")
            aligner.load_state_dict(state["aligner"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            start = int(state["step"])
    history: list[dict[str, float]] = list(state["history"]) if start else []
    if log_fn is not None:
        for i, rec in enumerate(history):  # a resumed run shows the whole curve, not only the steps after `start`
            log_fn(rec, i)
    caption_states: dict[str, torch.Tensor] = {}
    amp = autocast_context(device, p.precision)
    t0 = time.perf_counter()
    aligner.train()
    bar = tqdm(range(start, p.steps), desc="train_aligner", disable=not progress, initial=start, total=p.steps)
    for step in bar:
        # 1. a batch of whole clips: all K+2 forwards of each
        clips = [examples[i] for i in batch_order(len(examples), p.clips_per_batch, step, p.seed)]
        batch = make_batch(clips, p.max_entities, torch.Generator().manual_seed(p.seed * 7919 + step))
        # 2. forward + losses
        with amp:
            out = stage1_loss(aligner, text, batch, p, grid, caption_states)
        # 3. backward, clip, update, schedule
        opt.zero_grad(set_to_none=True)
        out.total.backward()
        grad_norm = float(torch.nn.utils.clip_grad_norm_(aligner.parameters(), p.grad_clip))
        lr = opt.param_groups[0]["lr"]
        opt.step()
        sched.step()
        # 4. log
        rec = {"loss/total": float(out.total.detach()), "loss/bce": float(out.bce.detach()), "lr": lr, "grad_norm": grad_norm,
               "saliency_mean": out.saliency_mean, "forwards": float(len(batch.captions))}
        if out.nce is not None:
            rec["loss/nce"] = float(out.nce.detach())
            rec["nce_acc"] = float(out.nce_acc)
        history.append(rec)
        if log_fn is not None:
            log_fn(rec, step)
        bar.set_postfix(bce=f"{rec['loss/bce']:.3f}", nce=f"{rec.get('loss/nce', float('nan')):.3f}")
        # 5. train state for resume, only from a healthy step (sara.train.health)
        where = f"train_aligner: step {step + 1} diverged, no train state written"
        health.check_grad_norm(grad_norm, where)
        if (step + 1) % p.checkpoint_every == 0 and step + 1 < p.steps:
            health.check_weights(aligner, where)
            save_train_state(state_path, aligner, opt, sched, step + 1, history, fingerprint)
    health.check_weights(aligner, f"train_aligner: the trained aligner diverged (step {p.steps})")
    aligner.eval()
    return TrainResult(aligner, history, time.perf_counter() - t0, start)


def save_train_state(path: Path, aligner: SaliencyAligner, opt: torch.optim.Optimizer, sched: Any, step: int,
                     history: list[dict[str, float]], fingerprint: str) -> None:
    """Everything needed to continue exactly at `step` (batch order and entity subsets derive from the step)."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    torch.save({"aligner": aligner.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "step": step, "history": history, "fingerprint": fingerprint}, tmp)
    os.replace(tmp, path)
