"""Stage 1 diagnostics: the seven metrics of the paper's Table 4, IoU / AUROC of the saliency against the
ground-truth mask, entity-separation measures, and the evaluation loop over held-out clips.

Each Table 4 metric is defined per (clip, frame) on tensors and averaged by `evaluate_aligner`:
  saliency mean / max / coverage / entropy   from M_p (T_s, N_s)
  ca-focus mean        1 - H(head-averaged CA row) / log(L+1), over patches; the aligner's last CA block, whose
                       L+1 keys are the L caption tokens plus the learned null key
  delta self-attn entropy   H̄(A_post) - H̄(A_vj), H̄(A) = mean over heads and rows of H(row) / log(N_v):
                       A_vj is V-JEPA's last encoder layer, A_post the aligner's last self-attention block
  PCA delta var. ratio r_3(V'_y) - r_3(V_y), r_3 = top-3 share of the centred token matrix's variance, per frame
Entropies use natural logs. Everything here is plain torch / numpy (scikit-learn for AUROC).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch



# ---------------------------------------------------------------------------------------------- Table 4 metrics


def bernoulli_entropy(q: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """H_2(q) = -q log q - (1-q) log(1-q), elementwise, in nats (0 at q in {0, 1})."""
    q = q.double()
    return -(q * torch.log(q.clamp_min(eps)) + (1 - q) * torch.log((1 - q).clamp_min(eps)))


def saliency_calibration(sal: torch.Tensor) -> dict[str, float]:
    """Saliency mean / max / coverage(>0.5) / entropy of one clip, sal (T_s, N_s): per frame, then frame-mean."""
    s = sal.double()
    return {
        "saliency_mean": float(s.mean(1).mean()),
        "saliency_max": float(s.max(1).values.mean()),
        "saliency_coverage": float((s > 0.5).double().mean(1).mean()),
        "saliency_entropy": float(bernoulli_entropy(s).mean(1).mean()),
    }


def row_entropy(p: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Shannon entropy (nats) of each distribution along the last dim."""
    p = p.double()
    return -(p * torch.log(p.clamp_min(eps))).sum(-1)


def ca_focus(cross_attn: torch.Tensor, num_text_tokens: int) -> float:
    """ca-focus mean: (1/N_v) sum_n (1 - H(mean_h A(n, .)) / log(L+1)).

    cross_attn (heads, N_v, L+1) over the null key and the L valid caption tokens (padding already dropped)."""
    a = cross_attn.double().mean(0)  # (N_v, L+1)
    return float((1.0 - row_entropy(a) / math.log(num_text_tokens + 1)).mean())


def attention_entropy(attn: torch.Tensor) -> float:
    """H̄(A) = (1/(N_h N_v)) sum_{h,n} H(A^h_{n,.}) / log N_k for attn (heads, N_v, N_k)."""
    return float((row_entropy(attn) / math.log(attn.shape[-1])).mean())


def top3_variance_ratio(tokens: torch.Tensor) -> float:
    """r_3(V) = sum_{i<3} sigma_i^2 / sum_i sigma_i^2 of the centred token matrix tokens (N, D)."""
    x = tokens.double()
    x = x - x.mean(0, keepdim=True)
    s2 = torch.linalg.svdvals(x) ** 2
    total = float(s2.sum())
    return float(s2[:3].sum()) / total if total > 0 else 0.0


def pca_delta_variance_ratio(v_post: torch.Tensor, v_pre: torch.Tensor) -> float:
    """PCA Δ var. ratio r_3(V'_y) - r_3(V_y), per frame then averaged; inputs (T_s, N_s, D)."""
    return float(np.mean([top3_variance_ratio(a) - top3_variance_ratio(b) for a, b in zip(v_post, v_pre)]))


# ---------------------------------------------------------------------------------------------- mask agreement


def saliency_iou(sal: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> float | None:
    """IoU of {sal > threshold} with {target >= 0.5}; None when the target is empty on the grid (not scored)."""
    pred = sal > threshold
    gt = target >= 0.5
    if not bool(gt.any()):
        return None
    return float((pred & gt).sum()) / float((pred | gt).sum())


def saliency_auroc(sal: torch.Tensor, target: torch.Tensor) -> float | None:
    """AUROC of the saliency as a score for {target >= 0.5}; None when the target has a single class."""
    from sklearn.metrics import roc_auc_score

    gt = (target.flatten() >= 0.5).cpu().numpy()
    if gt.all() or not gt.any():
        return None
    return float(roc_auc_score(gt, sal.flatten().double().cpu().numpy()))


def best_constant_iou(target: torch.Tensor) -> float | None:
    """IoU of the best constant prediction for a non-empty target map: all foreground (IoU = its area share);
    None when the target is empty on the grid (as for `saliency_iou`)."""
    gt = target >= 0.5
    return float(gt.double().mean()) if bool(gt.any()) else None


# ---------------------------------------------------------------------------------------------- evaluation loop


def _mean(xs: Sequence[float | None]) -> float:
    vals = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.mean(vals)) if vals else float("nan")


@torch.no_grad()
def evaluate_aligner(aligner: Any, text: Any, examples: Sequence[Any], grid: tuple[int, int, int],
                     vjepa_attn: dict[str, torch.Tensor] | None = None,
                     prior_maps: dict[str, torch.Tensor] | None = None) -> tuple[dict[str, float], list[dict]]:
    """Run every supervision unit (entity / combined / background) and the full caption of each held-out clip.

    Returns (metrics, per-forward records). Metric keys: `<kind>/<metric>` for kind in entity, combined,
    background, full; `all/<metric>` averaged over the training-type queries (entity, combined, background);
    `baseline/<kind>/{iou,auroc}` for the constant prior (best constant IoU, AUROC 0.5) and, when `prior_maps`
    (kind -> mean training target (T_s, N_s)) is given, `prior_map/<kind>/{iou,auroc}` for the positional prior;
    `entity_pairs/*` for how differently two entity queries of one clip respond.
    `vjepa_attn` maps clip_id -> V-JEPA last-layer attention (heads, N_v, N_v) for Δ self-attn entropy.
    """
    from sara.data.supervision import Unit

    dev = next(aligner.parameters()).device
    t, h, w = grid
    records: list[dict] = []
    pairs: list[dict[str, float]] = []
    for ex in examples:
        units = list(ex.units)
        if ex.full_caption and not any(u.kind == "full" for u in units):
            union = next((u.target for u in ex.units if u.kind == "combined"), None)
            if union is None:
                union = 1.0 - next(u.target for u in ex.units if u.kind == "background")
            units.append(Unit("full", ex.full_caption, union))
        tokens, mask = text.embed([u.caption for u in units])
        v = ex.features.flatten(0, 1)[None].expand(len(units), -1, -1).to(dev)  # (U, N_v, D_v)
        out = aligner(v, tokens.to(dev), mask.to(dev), return_attn=True)
        sal = out.saliency.float().cpu().reshape(len(units), t, h * w)  # (U, T_s, N_s)
        feats_post = out.features.float().cpu().reshape(len(units), t, h * w, -1)  # (U, T_s, N_s, D)
        h_pre = None
        if vjepa_attn is not None and ex.clip_id in vjepa_attn:
            h_pre = attention_entropy(vjepa_attn[ex.clip_id])
        for i, u in enumerate(units):
            n_text = int(mask[i].sum())
            rec: dict[str, Any] = {"clip_id": ex.clip_id, "kind": u.kind, "ref_id": u.ref_id}
            rec |= saliency_calibration(sal[i])
            if out.cross_attn:
                ca = out.cross_attn[-1][i, :, :, : n_text + 1].float().cpu()  # (heads, N_v, L+1): null + words
                rec["ca_focus"] = ca_focus(ca, n_text)
            if out.self_attn:
                rec["self_attn_entropy"] = attention_entropy(out.self_attn[-1][i].float().cpu())
                if h_pre is not None:
                    rec["vjepa_attn_entropy"] = h_pre
                    rec["delta_self_attn_entropy"] = rec["self_attn_entropy"] - h_pre
            rec["pca_delta_var_ratio"] = pca_delta_variance_ratio(feats_post[i], ex.features.float())
            rec["iou"] = saliency_iou(sal[i], u.target)
            rec["auroc"] = saliency_auroc(sal[i], u.target)
            rec["baseline_iou"] = best_constant_iou(u.target)
            rec["fg_fraction"] = float((u.target >= 0.5).double().mean())
            if prior_maps is not None and u.kind in prior_maps:
                rec["prior_map_iou"] = saliency_iou(prior_maps[u.kind], u.target)
                rec["prior_map_auroc"] = saliency_auroc(prior_maps[u.kind], u.target)
            records.append(rec)
        # entity separation: two entity queries of one clip should select different tokens
        ent = [i for i, u in enumerate(units) if u.kind == "entity"]
        for a_i, a in enumerate(ent):
            for b in ent[a_i + 1 :]:
                sa, sb = sal[a], sal[b]
                ta, tb = units[a].target, units[b].target
                pa, pb = sa > 0.5, sb > 0.5
                union = (pa | pb).sum()
                pairs.append({
                    "l1": float((sa - sb).abs().mean()),
                    "pred_iou": 1.0 if int(union) == 0 else float((pa & pb).sum()) / float(union),
                    "self_auroc": _mean([saliency_auroc(sa, ta), saliency_auroc(sb, tb)]),
                    "cross_auroc": _mean([saliency_auroc(sa, tb), saliency_auroc(sb, ta)]),
                    "top_token_differs": float(sa.flatten().argmax() != sb.flatten().argmax()),
                })
    return summarise(records, pairs), records


def summarise(records: Sequence[dict], pairs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Average per-forward records per query kind (per clip first, so clips with many entities do not dominate)."""
    metric_keys = ["saliency_mean", "saliency_max", "saliency_coverage", "saliency_entropy", "ca_focus",
                   "delta_self_attn_entropy", "pca_delta_var_ratio", "iou", "auroc", "self_attn_entropy",
                   "vjepa_attn_entropy", "fg_fraction"]
    out: dict[str, float] = {}
    groups = {"entity": ["entity"], "combined": ["combined"], "background": ["background"], "full": ["full"],
              "all": ["entity", "combined", "background"]}
    for name, kinds in groups.items():
        recs = [r for r in records if r["kind"] in kinds]
        if not recs:
            continue
        by_clip: dict[str, list[dict]] = defaultdict(list)
        for r in recs:
            by_clip[r["clip_id"]].append(r)
        for k in metric_keys:
            vals = [_mean([r.get(k) for r in rs]) for rs in by_clip.values()]
            if not all(math.isnan(v) for v in vals):
                out[f"{name}/{k}"] = _mean(vals)
        out[f"{name}/forwards"] = float(len(recs))
        if name != "all":
            out[f"baseline/{name}/iou"] = _mean([_mean([r["baseline_iou"] for r in rs]) for rs in by_clip.values()])
            out[f"baseline/{name}/auroc"] = 0.5
            if any("prior_map_iou" in r for r in recs):
                out[f"prior_map/{name}/iou"] = _mean([_mean([r.get("prior_map_iou") for r in rs])
                                                      for rs in by_clip.values()])
                out[f"prior_map/{name}/auroc"] = _mean([_mean([r.get("prior_map_auroc") for r in rs])
                                                        for rs in by_clip.values()])
    if pairs:
        for k in pairs[0]:
            out[f"entity_pairs/{k}"] = _mean([p[k] for p in pairs])
        out["entity_pairs/count"] = float(len(pairs))
    return out


def prior_target_maps(examples: Sequence[Any]) -> dict[str, torch.Tensor]:
    """Mean training target per query kind (T_s, N_s): the positional-prior baseline a text-blind model can reach."""
    acc: dict[str, list[torch.Tensor]] = defaultdict(list)
    for ex in examples:
        for u in ex.units:
            acc[u.kind].append(u.target.float())
    maps = {k: torch.stack(v).mean(0) for k, v in acc.items()}
    if "combined" in maps:
        maps.setdefault("full", maps["combined"])
    return maps
