"""`sara train-aligner`: train the Stage 1 saliency aligner (the paper's Stage 1; docs/aligner.md) on the train split.

1. builds the frozen encoders (`vfm`, `text`) and reads the V-JEPA features of every clip from
   `vfm.cache_dir/<encoder_tag>/` (written by the `features` stage; computed here only when missing);
2. builds the K+2 supervision units per training clip from its MTSS caption and `masks.out_dir`;
3. trains Phi_CA + Phi_sal + Phi_proj (sara.train.stage1), logging per-step losses to MLflow; a resumable train
   state lives in `aligner.work_dir` (picked up automatically by a rerun with the same params and clips unless
   `--fresh`);
4. writes `aligner.out_dir/aligner.pt` (+ the tiny V-JEPA weights when `vfm.kind` is tiny) and
   `aligner.out_dir/train_metrics.json`, built in a temp folder and renamed at the end. The model folder holds
   only what determines the model: the run's TIMINGS go to MLflow and `timings_path(params)` (uncached metrics),
   so a rerun that trains the same weights leaves every downstream stage current.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "data", "masks", "vfm", "text", "aligner"]  # data / masks: where clips and masks are read
TIMINGS = ("train_seconds", "resumed_from_step")  # of this run, not of the model it trained


def timings_path(params: Params) -> Path:
    """`<aligner.eval_dir>/train_timings.json`: the training run's timings (uncached DVC metrics)."""
    return Path(params.aligner.eval_dir) / "train_timings.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fresh", action="store_true", help="ignore a train state left by an interrupted run")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")


def run(params: Params, fresh: bool = False, progress: bool = True) -> Path:
    import torch

    from sara.data.clips import list_clips
    from sara.io import atomic_dir, exclusive, write_json
    from sara.models.aligner import CHECKPOINT_NAME, save_aligner
    from sara.env import resolve_device
    from sara.models.encoders import build_text_model, build_vfm, cached_features
    from sara.tracking import log_artifact, log_metrics, stage_run
    from sara.data.supervision import build_examples
    from sara.train.stage1 import TRAIN_STATE, run_fingerprint, train_aligner

    p = params.aligner
    out = Path(p.out_dir)
    # one trainer per train state (aligner.work_dir): a second one is refused before it opens an MLflow run
    with exclusive(Path(p.work_dir), "train_aligner"), stage_run("train_aligner", params, SECTIONS,
                                                                 tags={"sara.aligner.ablation": ablation_name(params)}):
        torch.manual_seed(params.project.seed)
        device = resolve_device(params.project.device)
        vfm = build_vfm(params.vfm, device)
        text = build_text_model(params.text, device)
        records = list_clips(params.data.out_dir)
        train_records = [r for r in records if r.split == "train"]
        # 1. features of every clip, cached once per (clip, encoder) by the features stage; a no-op read here
        from sara.data.clips import load_clip

        for rec in records:
            if rec.split != "train":
                cached_features(vfm, load_clip(rec.folder(params.data.out_dir)), params.vfm.cache_dir)
        # 2. supervision units of the training clips
        examples = build_examples(train_records, params, vfm, progress=progress)
        # 3. train
        fingerprint = run_fingerprint(params, [r.clip_id for r in train_records], vfm.tag)
        work = Path(p.work_dir)
        if fresh and (work / TRAIN_STATE).exists():
            (work / TRAIN_STATE).unlink()
        result = train_aligner(examples, text, vfm.dim, vfm.grid, params, work, device=device,
                               fingerprint=fingerprint, log_fn=lambda rec, step: log_metrics(rec, step=step),
                               progress=progress, resume=not fresh)
        # 4. outputs, atomically
        tail = result.history[-min(20, len(result.history)) :]
        summary = {
            "steps": p.steps,
            "resumed_from_step": result.resumed_from,
            "train_seconds": result.seconds,
            "train_clips": len(examples),
            "forwards_per_step": sum(h["forwards"] for h in result.history) / max(1, len(result.history)),
            "final_loss_total": sum(h["loss/total"] for h in tail) / len(tail),
            "final_loss_bce": sum(h["loss/bce"] for h in tail) / len(tail),
            "first_loss_bce": result.history[0]["loss/bce"],
            "grid": list(vfm.grid),
            "vfm_tag": vfm.tag,
            "device": str(device),
            "torch_threads": torch.get_num_threads(),
            "scale": params.project.scale,
        }
        if "loss/nce" in tail[0]:
            summary["final_loss_nce"] = sum(h["loss/nce"] for h in tail) / len(tail)
            summary["first_loss_nce"] = result.history[0]["loss/nce"]
            summary["final_nce_acc"] = sum(h["nce_acc"] for h in tail) / len(tail)
        timings = {k: summary.pop(k) for k in TIMINGS}
        with atomic_dir(out) as tmp:
            extra = {"vfm_tag": vfm.tag, "grid": list(vfm.grid), "text_kind": text.kind,
                     "vfm_state": {k: v.cpu() for k, v in vfm.model.state_dict().items()} if vfm.kind == "tiny" else None,
                     "train_summary": summary}
            save_aligner(tmp / CHECKPOINT_NAME, result.aligner, params, extra)
            write_json(tmp / "train_metrics.json", summary)
        if (work / TRAIN_STATE).exists():
            (work / TRAIN_STATE).unlink()  # finished: nothing left to resume
        write_json(timings_path(params), {"train_aligner": timings})
        log_metrics({f"train/{k}": v for k, v in {**summary, **timings}.items() if isinstance(v, (int, float))})
        log_artifact(out / "train_metrics.json")
    return out


def ablation_name(params: Params) -> str:
    """full | wo_nce | wo_entity | wo_nce_wo_entity (Table 4 columns)."""
    a = params.aligner
    parts = [s for s, on in (("wo_nce", not a.use_infonce or a.lam_nce == 0), ("wo_entity", not a.entity_separated))
             if on]
    return "_".join(parts) or "full"
