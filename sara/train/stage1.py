"""Stage 1 training: batching that keeps a clip's forwards together (the K+2 supervision units per clip:
sara.data.supervision), the loss step and the loop (AdamW, warmup + cosine to min lr, grad clipping, bf16 autocast on GPU, optional gradient
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sara.config import AlignerParams, Params
from sara.data.supervision import ClipExample
from sara.io import load_tensors, save_tensors
from sara.losses.aligner import info_nce, same_caption_matrix, saliency_bce
from sara.models.aligner import SaliencyAligner, pool_visual_tokens
from sara.train.schedules import warmup_cosine
from sara.train import health

TRAIN_STATE = "train_state.pt"


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
        state = load_tensors(state_path, f"delete {work_dir} to start afresh")  # tensors and plain containers only
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
    save_tensors({"aligner": aligner.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                  "step": step, "history": history, "fingerprint": fingerprint}, tmp)
    os.replace(tmp, path)
