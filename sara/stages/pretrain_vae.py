"""`sara pretrain-vae`: the Wan VAE under `pretrain.vae.out_dir`, one behaviour per scale.

- lab: AutoencoderKLWan trained on the corpus (sara.train.pretrain_vae); writes the model (save_pretrained),
  `metrics.json` (held-out PSNR gate) and `reconstruction.png` (held-out clips, original above reconstruction).
- paper (`dit.kind: local`): a manifest pointing at `dit.vae_path` (nothing copied).
- embedded / gpu: the seeded random-init tiny VAE (seed `dit.init_seed + 2`, the one `init_dit` has always built).
init_dit puts this VAE into `models/base`, so sampling decodes with it.
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

# dit.kind picks the behaviour, dit.init_seed seeds the random-init VAE, dit.vae_path is the paper-scale VAE
SECTIONS = ["project", "pretrain.corpus.out_dir", "pretrain.vae", "dit.kind", "dit.init_seed", "dit.vae_path"]


def build_output(params: Params, out: Path, log=print) -> dict:
    import numpy as np

    from sara.io import write_json
    from sara.env import resolve_device
    from sara.train.pretrain_vae import build_vae, train_vae

    if params.dit.kind == "local":
        from sara.models.dit import check_model_dir

        manifest = {"kind": "local", "vae": check_model_dir("dit.vae_path", params.dit.vae_path,
                                                            "the Wan AutoencoderKLWan in diffusers format")}
        write_json(out / "manifest.json", manifest)
        return manifest
    if params.project.scale != "lab":
        build_vae(params.pretrain.vae, params.dit.init_seed + 2).save_pretrained(out)
        manifest = {"kind": "random-init", "seed": params.dit.init_seed + 2}
        write_json(out / "manifest.json", manifest)
        return manifest
    from sara.data.video_io import contact_sheet, save_png
    from sara.data.corpus import load_corpus

    c = params.pretrain.corpus.out_dir
    train, held = load_corpus(c, "train"), load_corpus(c, "heldout")
    result = train_vae(params.pretrain.vae, train.frames, held.frames, resolve_device(params.project.device), log=log)
    result.vae.save_pretrained(out)
    rows = [np.concatenate([o, r], axis=1) for o, r in zip(result.originals, result.reconstructions)]  # (F, 2H, W, 3)
    sheet = np.concatenate([contact_sheet(r, label=f"held-out {i}: original (top) / reconstruction") for i, r in enumerate(rows)], 0)
    save_png(out / "reconstruction.png", sheet)
    manifest = {"kind": "pretrained", **result.metrics}
    write_json(out / "manifest.json", manifest)
    write_json(out / "metrics.json", {**result.metrics, "history": result.history})
    log(f"[pretrain_vae] held-out PSNR {result.metrics['psnr_db']} dB (gate >= {params.pretrain.vae.min_psnr_db}) -> {out}")
    return manifest


def run(params: Params) -> Path:
    from sara.io import atomic_dir
    from sara.tracking import log_artifact, log_metrics, stage_run

    out = Path(params.pretrain.vae.out_dir)
    with stage_run("pretrain_vae", params, SECTIONS):
        with atomic_dir(out) as tmp:
            manifest = build_output(params, tmp)
        log_metrics({k: float(v) for k, v in manifest.items() if isinstance(v, (int, float)) and not isinstance(v, bool)})
        log_artifact(out / "manifest.json")
    return out
