"""Lab scale: self-supervised VideoMAE pretraining of the frozen video encoder on the corpus, and its gates.

Training: `VideoMAEForPreTraining` with tube masking (`mask_ratio` of the spatial positions hidden in every
tubelet) and the normalised-pixel target; inputs go through the same preprocessing as the frozen encoder
downstream (`VideoEncoder.preprocess`: bin-centre frames, full-frame resize, ImageNet normalisation).

Gates (`encoder_probes`), on frozen held-out features, pretrained against the same config at random init:
- linear probes (logistic regression, clips split in two halves) for each entity's shape and net motion
  direction, from the entity's tokens (tokens whose tubelet/patch is over half covered by its mask): shape from
  their mean over the clip (D features: shape does not change over time), motion from their per-tubelet means
  concatenated over time (T_s * D: where the entity went);
- same-entity vs different-entity token-pair cosine similarity (AUROC over every entity-token pair of a clip).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from sara.config import VFMParams, VFMPretrainParams
from sara.data.corpus import MOTION_CLASSES, SHAPE_CLASSES, Corpus
from sara.models.encoders import VideoEncoder


def encoder_view(model: torch.nn.Module, vfm: VFMParams, device: torch.device, kind: str = "videomae") -> VideoEncoder:
    """A VideoEncoder around a VideoMAEModel (its preprocessing, grid and token readout), for training and probes."""
    cfg = model.config
    return VideoEncoder(model=model, frames=vfm.frames, image_size=vfm.image_size, patch_size=cfg.patch_size,
                        tubelet_size=cfg.tubelet_size, dim=cfg.hidden_size, tag=f"{kind}-pretrain", device=device,
                        kind="videomae")


@dataclass
class VFMResult:
    model: torch.nn.Module  # VideoMAEForPreTraining (its .videomae is the encoder)
    metrics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, Any]] = field(default_factory=list)  # probes every `eval_every` steps


def train_vfm(
    p: VFMPretrainParams,
    vfm: VFMParams,
    train_frames: np.ndarray,
    device: torch.device,
    *,
    on_eval: Callable[[int, torch.nn.Module], dict[str, Any]] | None = None,
    log: Callable[[str], None] = print,
) -> VFMResult:
    """Pretrain VideoMAE on uint8 clips (N, F, H, W, 3), all held on the device.

    `on_eval(step, encoder)` runs every `p.eval_every` steps (the encoder's learning curve) with the encoder in eval
    mode; its wall time is excluded from `train_seconds`.
    """
    from transformers import VideoMAEForPreTraining

    from sara.models.videomae import tube_mask, videomae_config
    from sara.train.schedules import budget_lr

    torch.manual_seed(p.seed)
    model = VideoMAEForPreTraining(videomae_config(vfm, p)).to(device).train()
    view = encoder_view(model.videomae, vfm, device)
    clips = torch.from_numpy(np.array(train_frames)).to(device)  # (N, F, H, W, 3) uint8
    opt = torch.optim.AdamW(model.parameters(), lr=p.lr, betas=(0.9, 0.95), weight_decay=0.05,
                            fused=device.type == "cuda")
    gen = torch.Generator(device="cpu").manual_seed(p.seed)
    warmup = min(200, p.steps // 10)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else torch.autocast("cpu", enabled=False)
    history: list[dict[str, float]] = []
    curve: list[dict[str, Any]] = []
    t0 = time.time()
    eval_seconds = 0.0
    step = 0
    for step in range(p.steps):
        if on_eval is not None and p.eval_every and step % p.eval_every == 0 and step > 0:
            t_eval = time.time()
            curve.append({"step": step, **on_eval(step, model.videomae.eval())})
            model.train()
            eval_seconds += time.time() - t_eval
        for g in opt.param_groups:
            g["lr"] = budget_lr(step, p.steps, p.lr, warmup)
        idx = torch.randint(0, len(clips), (p.batch_size,), generator=gen)
        pixels = view.preprocess(clips[idx.to(device)])  # (B, T, 3, S, S)
        mask = tube_mask(p.batch_size, view.grid, p.mask_ratio, gen).to(device)  # (B, N) bool
        with autocast:
            loss = model(pixel_values=pixels, bool_masked_pos=mask).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 50 == 0 or step == p.steps - 1:
            history.append({"step": step, "loss": float(loss.detach()), "seconds": time.time() - t0})
            log(f"[vfm] step {step}/{p.steps} loss {float(loss.detach()):.4f} ({time.time() - t0:.0f} s)")
    model.eval().requires_grad_(False)
    metrics = {"steps_done": step + 1, "train_seconds": round(time.time() - t0 - eval_seconds, 2),
               "final_loss": history[-1]["loss"], "params": sum(t.numel() for t in model.videomae.parameters())}
    return VFMResult(model, metrics, history, curve)


# ---------------------------------------------------------------------------------------------------- gates


def token_masks(masks: torch.Tensor, view: VideoEncoder) -> torch.Tensor:
    """Entity masks (B, K, F, H, W) bool -> coverage (B, K, T_s, H_s*W_s) of each token by each entity in [0, 1]."""
    b, k, f, h, w = masks.shape
    t, hs, ws = view.grid
    x = masks[:, :, view.frame_indices(f)].float()  # (B, K, frames, H, W) the frames the encoder sees
    x = x.reshape(b * k, view.frames, h, w)
    x = F.adaptive_avg_pool2d(x, (hs, ws))  # (B*K, frames, H_s, W_s) area coverage per patch
    x = x.reshape(b, k, t, view.tubelet_size, hs * ws).mean(3)  # (B, K, T_s, H_s*W_s) average over the tubelet
    return x


@torch.no_grad()
def entity_features(view: VideoEncoder, heldout: Corpus, n_clips: int, batch_size: int = 32) -> dict[str, Any]:
    """Per entity: mean token feature, shape and motion labels; per clip: entity tokens for the pair AUROC."""
    feats, feats_mean, shapes, motions, pair_scores, pair_same = [], [], [], [], [], []
    assert heldout.masks is not None and heldout.labels is not None
    n = min(n_clips, len(heldout))
    rng = np.random.default_rng(0)
    for i in range(0, n, batch_size):
        frames = torch.from_numpy(np.ascontiguousarray(heldout.frames[i : i + batch_size]))
        masks = torch.from_numpy(np.ascontiguousarray(heldout.masks[i : i + batch_size]))
        v = view.features(frames).float().cpu()  # (B, T_s, N_s, D)
        cover = token_masks(masks, view)  # (B, K, T_s, N_s)
        for j in range(len(frames)):
            labels = heldout.labels[i + j]
            owner = torch.full(v.shape[1:3], -1, dtype=torch.long)  # (T_s, N_s) entity owning the token
            best = cover[j, : len(labels)].max(0)  # over entities
            owner[best.values > 0.5] = best.indices[best.values > 0.5]
            tokens = v[j].reshape(-1, v.shape[-1])  # (T_s*N_s, D)
            own = owner.reshape(-1)
            for k, lab in enumerate(labels):
                sel = own == k
                if sel.any():
                    # per-tubelet means, concatenated (T_s * D): a clip-wide mean could not show where it went
                    per_t = [v[j, t][owner[t] == k].mean(0) if (owner[t] == k).any() else torch.zeros(v.shape[-1])
                             for t in range(v.shape[1])]
                    feats.append(torch.cat(per_t).numpy())
                    feats_mean.append(tokens[sel].mean(0).numpy())
                    shapes.append(SHAPE_CLASSES.index(lab["shape"]))
                    motions.append(MOTION_CLASSES.index(lab["motion"]))
            idx = torch.nonzero(own >= 0).flatten()
            if len(idx) > 256:  # cap the pairs per clip (uniform subsample of entity tokens)
                idx = idx[torch.from_numpy(rng.choice(len(idx), 256, replace=False))]
            if len(idx) >= 2 and len(set(own[idx].tolist())) >= 2:
                x = F.normalize(tokens[idx], dim=-1)
                sim = x @ x.T  # (n, n) cosine similarity
                same = own[idx][:, None] == own[idx][None, :]
                iu = torch.triu_indices(len(idx), len(idx), 1)
                pair_scores.append(sim[iu[0], iu[1]].numpy())
                pair_same.append(same[iu[0], iu[1]].numpy())
    return {"features": np.stack(feats) if feats else np.zeros((0, view.grid[0] * view.dim)),
            "features_mean": np.stack(feats_mean) if feats_mean else np.zeros((0, view.dim)), "shape": np.array(shapes),
            "motion": np.array(motions),
            "pair_scores": np.concatenate(pair_scores) if pair_scores else np.zeros(0),
            "pair_same": np.concatenate(pair_same) if pair_same else np.zeros(0, bool)}


def linear_probe(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Held-out accuracy of a logistic-regression probe (first half of the entities trains, second half tests)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    half = len(y) // 2
    if half < 2 or len(set(y[:half].tolist())) < 2:
        return {"accuracy": float("nan"), "chance": float("nan"), "n_test": int(len(y) - half)}
    scaler = StandardScaler().fit(x[:half])
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(x[:half]), y[:half])
    acc = float((clf.predict(scaler.transform(x[half:])) == y[half:]).mean())
    chance = float(np.bincount(y[half:]).max() / len(y[half:]))  # majority-class rate of the test half
    return {"accuracy": round(acc, 4), "chance": round(chance, 4), "n_test": int(len(y) - half)}


def pair_auroc(scores: np.ndarray, same: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    if len(set(same.tolist())) < 2:
        return float("nan")
    return round(float(roc_auc_score(same, scores)), 4)


def encoder_probes(view: VideoEncoder, heldout: Corpus, n_clips: int) -> dict[str, Any]:
    """Shape / motion probe accuracy and same-entity pair AUROC of one frozen encoder on held-out clips."""
    e = entity_features(view, heldout, n_clips)
    return {"shape": linear_probe(e["features_mean"], e["shape"]), "motion": linear_probe(e["features"], e["motion"]),
            "pair_auroc": pair_auroc(e["pair_scores"], e["pair_same"]), "entities": int(len(e["shape"])),
            "pairs": int(len(e["pair_same"]))}


def random_init_encoder(vfm: VFMParams, p: VFMPretrainParams, seed: int) -> torch.nn.Module:
    """The same VideoMAE encoder at random init (the gates' baseline)."""
    from transformers import VideoMAEModel

    from sara.models.videomae import videomae_config

    torch.manual_seed(seed)
    return VideoMAEModel(videomae_config(vfm, p)).eval().requires_grad_(False)


# "An encoder worth distilling" (docs/lab/base.md): on frozen held-out features, against the same encoder at random
# init, the shape probe gains at least 0.20 and the motion probe 0.10, and same-entity token pairs are told from
# different-entity pairs with AUROC >= 0.95 (the TRD target's Gram must say which tokens belong together).
SHAPE_MARGIN, MOTION_MARGIN, MIN_PAIR_AUROC = 0.20, 0.10, 0.95


def gate_checks(pre: dict[str, Any], rand: dict[str, Any]) -> dict[str, bool]:
    """Each encoder gate, met or not (a NaN never meets one)."""
    def at_least(a: float, b: float) -> bool:
        return not (math.isnan(a) or math.isnan(b)) and a >= b

    return {
        "shape": at_least(pre["shape"]["accuracy"], rand["shape"]["accuracy"] + SHAPE_MARGIN),
        "motion": at_least(pre["motion"]["accuracy"], rand["motion"]["accuracy"] + MOTION_MARGIN),
        "pair_auroc": at_least(pre["pair_auroc"], MIN_PAIR_AUROC),
    }


def gate_passed(pre: dict[str, Any], rand: dict[str, Any]) -> bool:
    """Whether the pretrained encoder meets every gate of `gate_checks`."""
    return all(gate_checks(pre, rand).values())
