"""`sara pretrain-vfm`: the frozen video encoder (the TRD target) under `pretrain.vfm.out_dir`, one behaviour per scale.

- lab: VideoMAE pretrained self-supervised on the corpus (sara.train.pretrain_vfm); writes the encoder
  (`VideoMAEModel.save_pretrained`, read by `vfm.kind: videomae` with `vfm.path` = this folder) and
  `metrics.json` with the gates: shape / motion linear probes and same-entity pair AUROC on frozen held-out
  features, pretrained against the same encoder at random init.
- paper (`vfm.kind: local` or a `vfm.path` outside this folder): a manifest pointing at `vfm.path`.
- embedded / gpu (`vfm.kind: tiny`): a manifest; the seeded random-init tiny V-JEPA is built from `vfm.seed`.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "pretrain.corpus.out_dir", "pretrain.vfm", "vfm"]
CURVE_CLIPS = 128  # held-out clips of each learning-curve probe (the final gates read `probe_clips`)


def build_output(params: Params, out: Path, log=print) -> dict:
    from sara.io import write_json

    v = params.vfm
    if params.project.scale != "lab":
        if v.kind == "tiny":
            manifest = {"kind": "tiny", "random_init_seed": v.seed}
        else:
            manifest = {"kind": v.kind, "path": str(Path(v.path).resolve()) if v.path else None}
        write_json(out / "manifest.json", manifest)
        return manifest
    if v.kind != "videomae" or Path(v.path or "").resolve() != Path(params.pretrain.vfm.out_dir).resolve():
        raise ValueError(f"lab scale: vfm.kind must be videomae and vfm.path = pretrain.vfm.out_dir "
                         f"({params.pretrain.vfm.out_dir!r}) so every stage reads the encoder pretrained here")
    from sara.data.corpus import load_corpus
    from sara.env import resolve_device
    from sara.train.pretrain_vfm import (encoder_probes, encoder_view, gate_checks, gate_passed, random_init_encoder,
                                         train_vfm)

    device = resolve_device(params.project.device)
    p, c = params.pretrain.vfm, params.pretrain.corpus.out_dir
    train, held = load_corpus(c, "train"), load_corpus(c, "heldout")
    curve_clips = min(CURVE_CLIPS, p.probe_clips)

    def on_eval(step: int, encoder) -> dict:
        res = encoder_probes(encoder_view(encoder, v, device), held, curve_clips)
        log(f"[pretrain_vfm] step {step}: shape {res['shape']['accuracy']} motion {res['motion']['accuracy']} "
            f"pair AUROC {res['pair_auroc']} ({curve_clips} held-out clips)")
        return {k: res[k] for k in ("shape", "motion", "pair_auroc")}

    result = train_vfm(p, v, train.frames, device, on_eval=on_eval, log=log)
    encoder = result.model.videomae
    encoder.save_pretrained(out)
    pre = encoder_probes(encoder_view(encoder, v, device), held, p.probe_clips)
    rand = encoder_probes(encoder_view(random_init_encoder(v, p, p.seed).to(device), v, device), held, p.probe_clips)
    metrics = {**result.metrics, "probe": {"pretrained": pre, "random_init": rand}, "gates": gate_checks(pre, rand),
               "gate_met": gate_passed(pre, rand)}
    write_json(out / "metrics.json", {**metrics, "history": result.history, "curve": result.curve})
    manifest = {"kind": "pretrained-videomae", "gate_met": metrics["gate_met"], "steps_done": metrics["steps_done"]}
    write_json(out / "manifest.json", manifest)
    log(f"[pretrain_vfm] shape probe {pre['shape']['accuracy']} vs random {rand['shape']['accuracy']}, motion "
        f"{pre['motion']['accuracy']} vs {rand['motion']['accuracy']}, pair AUROC {pre['pair_auroc']} vs "
        f"{rand['pair_auroc']} -> {out}")
    return metrics


def run(params: Params) -> Path:
    from sara.io import atomic_dir
    from sara.tracking import log_metrics, stage_run

    out = Path(params.pretrain.vfm.out_dir)
    with stage_run("pretrain_vfm", params, SECTIONS):
        with atomic_dir(out) as tmp:
            metrics = build_output(params, tmp)
        if "probe" in metrics:
            flat = {}
            for which, res in metrics["probe"].items():
                flat[f"{which}.shape_acc"] = res["shape"]["accuracy"]
                flat[f"{which}.motion_acc"] = res["motion"]["accuracy"]
                flat[f"{which}.pair_auroc"] = res["pair_auroc"]
            log_metrics(flat)
    return out
