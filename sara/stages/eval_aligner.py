"""`sara eval-aligner`: held-out diagnostics and figures for the trained Stage 1 aligner.

Loads the aligner through `load_saliency_model` (the same path Stage 2 uses), runs every supervision forward
(entity / combined / background) and the full caption of each held-out clip, and writes
  `aligner.eval_dir/metrics.json`   flat metrics (DVC metrics): Table 4 diagnostics per query kind, IoU / AUROC
                                    against the ground-truth masks, the constant-prior and positional-prior
                                    baselines, entity-pair separation, and the training summary
  `aligner.eval_dir/figures/`       fig3_<clip>.png (four query types), fig4_<clip>.png (full caption),
                                    per_forward.csv (one row per held-out forward)
Both are built in temp paths and renamed; all of it is logged to MLflow.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "data", "masks", "vfm", "text", "aligner"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(params: Params, progress: bool = True) -> Path:
    import torch

    from sara.data.clips import list_clips
    from evaluation.aligner import evaluate_aligner, prior_target_maps
    from sara.io import atomic_dir, write_json
    from sara.models.aligner import load_saliency_model
    from sara.env import resolve_device
    from sara.stages.train_aligner import ablation_name
    from sara.tracking import log_artifact, log_metrics, stage_run
    from sara.data.supervision import build_examples

    p = params.aligner
    eval_dir = Path(p.eval_dir)
    with stage_run("eval_aligner", params, SECTIONS, tags={"sara.aligner.ablation": ablation_name(params)}):
        device = resolve_device(params.project.device)
        model = load_saliency_model(p.out_dir, params, device)
        vfm = model.vfm
        records = list_clips(params.data.out_dir)
        heldout = [r for r in records if r.split == "heldout"]
        if not heldout:
            raise ValueError(f"no held-out clips in {params.data.out_dir} (data.n_heldout)")
        # every variant (also "w/o entity-separated") is scored on the same K+2 queries plus the full caption
        train = build_examples([r for r in records if r.split == "train"], params, vfm, all_queries=True,
                               progress=progress)
        examples = build_examples(heldout, params, vfm, with_clip=True, all_queries=True, progress=progress)
        # A_vj: V-JEPA's last-layer self-attention of each held-out clip (Δ self-attention entropy)
        vjepa_attn = {}
        if hasattr(vfm.model, "set_attn_implementation"):
            vfm.model.set_attn_implementation("eager")
        for ex in examples:
            frames = torch.as_tensor(ex.extra["all_frames"])[None]  # (1, F, H, W, 3)
            _, attn = vfm.encode(vfm.preprocess(frames), output_attentions=True)
            vjepa_attn[ex.clip_id] = attn[0].cpu()  # (heads, N_v, N_v)
        metrics, per_forward = evaluate_aligner(model.aligner, model.text, examples, vfm.grid, vjepa_attn,
                                                prior_target_maps(train))
        summary = json.loads((Path(p.out_dir) / "train_metrics.json").read_text())
        for k in ("steps", "final_loss_bce", "final_loss_nce", "first_loss_bce", "first_loss_nce"):
            if k in summary:
                # `fit.*`, not `train.*`: in `dvc exp show` a metric `train.steps` would read as the params key
                metrics[f"fit/{k}"] = summary[k]
        metrics["heldout_clips"] = float(len(examples))

        # write outputs in temp paths, then rename
        fig_dir = eval_dir / "figures"
        with atomic_dir(fig_dir) as tmp:
            _write_csv(tmp / "per_forward.csv", per_forward)
            for ex in sorted(examples, key=lambda e: -e.extra["num_entities"])[: p.figure_clips]:
                draw_clip_figures(model, ex, tmp, params)
        metrics_file = eval_dir / "metrics.json"
        write_json(metrics_file, _nested(metrics), sort_keys=True)
        log_metrics({f"eval/{k}": v for k, v in metrics.items()})
        log_artifact(metrics_file)
        log_artifact(fig_dir, "figures")
        if progress:
            print(headline(metrics))
    return metrics_file


def draw_clip_figures(model, ex, out_dir: Path, params: Params) -> list[Path]:
    """Fig. 3 (entity 1, entity 2, combined, background) and Fig. 4 (full caption) for one held-out clip."""
    import torch

    from evaluation.figures import QueryRow, query_sweep_figure

    vfm = model.vfm
    t, h, w = vfm.grid
    ents = [u for u in ex.units if u.kind == "entity"][:2]
    others = [u for u in ex.units if u.kind in ("combined", "background")]
    fig3_units = ents + others
    captions = [u.caption for u in fig3_units] + [ex.full_caption]
    labels = [f"entity {u.ref_id}" for u in ents] + [u.kind for u in others] + ["full caption"]
    feats = ex.features[None].expand(len(captions), -1, -1, -1)  # (Q, T_s, N_s, D_v)
    tokens, mask = model.text.embed(captions)
    dev = next(model.aligner.parameters()).device
    with torch.no_grad():
        out = model.aligner(feats.to(dev), tokens.to(dev), mask.to(dev))
    sal = out.saliency.float().cpu().reshape(len(captions), t, h * w)  # (Q, T_s, N_s)
    fv = out.features.float().cpu().reshape(len(captions), t, h * w, -1)  # (Q, T_s, N_s, D_v)
    rows = [QueryRow(lb, c, s, f) for lb, c, s, f in zip(labels, captions, sal, fv)]
    frames, masks = ex.extra["frames"], ex.extra["masks"]
    tag = f"[{params.project.scale} scale: tiny random V-JEPA + MiniLM on synthetic clips]" \
        if params.project.scale == "embedded" else f"[{params.project.scale} scale]"
    return [
        query_sweep_figure(frames, masks, rows[:-1], vfm.grid, out_dir / f"fig3_{ex.clip_id}.png",
                           f"Fig. 3 style: query types on held-out clip {ex.clip_id} {tag}"),
        query_sweep_figure(frames, masks, rows[-1:], vfm.grid, out_dir / f"fig4_{ex.clip_id}.png",
                           f"Fig. 4 style: full MTSS caption (never seen in training), clip {ex.clip_id} {tag}"),
    ]


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)


def _nested(flat: dict[str, float]) -> dict:
    """`a/b/c` keys -> nested dicts (DVC shows nested metrics as a.b.c)."""
    out: dict = {}
    for key, value in flat.items():
        node = out
        parts = key.split("/")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def headline(m: dict[str, float]) -> str:
    """The numbers that show learning, one line each."""
    g = lambda k: m.get(k, float("nan"))  # noqa: E731
    return "\n".join([
        f"entity     IoU {g('entity/iou'):.3f} (constant prior {g('baseline/entity/iou'):.3f}, positional prior "
        f"{g('prior_map/entity/iou'):.3f})  AUROC {g('entity/auroc'):.3f} (positional prior "
        f"{g('prior_map/entity/auroc'):.3f})",
        f"combined   IoU {g('combined/iou'):.3f}  AUROC {g('combined/auroc'):.3f}",
        f"background IoU {g('background/iou'):.3f}  AUROC {g('background/auroc'):.3f}",
        f"full       IoU {g('full/iou'):.3f}  AUROC {g('full/auroc'):.3f}",
        f"entity pairs: own-mask AUROC {g('entity_pairs/self_auroc'):.3f} vs other-entity AUROC "
        f"{g('entity_pairs/cross_auroc'):.3f}; mean |w_a - w_b| {g('entity_pairs/l1'):.3f}",
    ])
