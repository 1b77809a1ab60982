"""`sara init-dit`: write `models/base/`, the starting point of every Stage 2 method and the "pretrained" row.

kind tiny: seeded random-init high-noise and low-noise WanTransformer3DModel, a tiny AutoencoderKLWan and the
text-conditioning description (MiniLM), all with save_pretrained. kind local: only a manifest pointing at the
local Wan2.2 directories (`dit.path`, `dit.low_noise_path`, `dit.vae_path`, `dit.text_encoder_path`), each
checked to exist; 14B weights are never copied. Lab scale (`project.scale: lab`): the base DiT is pretrained here
on the corpus with the lab VAE (sara.stages.pretrain_dit).
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

# dit.init_seed seeds the tiny init; lab: the corpus and VAE folders, pretrain.dit, and how the learning curve
# samples as the DAG does (shift, clip size, fps, negative prompt); sample.boundary_ratio: one expert or two.
# Not all of `sample`: another sampling seed, step count or prompt set must not rerun the base (tests/test_pretrain_params.py)
SECTIONS = ["project", "dit", "pretrain.corpus.out_dir", "pretrain.vae.out_dir", "pretrain.dit", "sample.shift",
            "sample.frames", "sample.height", "sample.width", "sample.fps", "sample.negative_prompt",
            "sample.boundary_ratio"]


def run(params: Params) -> Path:
    from sara.io import atomic_dir
    from sara.models.dit import local_manifest, save_base
    from sara.tracking import log_artifact, stage_run

    out = Path(params.dit.base_dir)
    if params.dit.kind == "local":
        local_manifest(params)  # every weights directory exists and holds a config.json, before a run is opened
    with stage_run("init_dit", params, SECTIONS):
        with atomic_dir(out) as tmp:
            if params.project.scale == "lab":  # pretrain the base DiT here (docs/lab/base.md)
                from sara.stages.pretrain_dit import pretrain_base  # torch/diffusers: imported only when used

                manifest = pretrain_base(params, tmp)
            else:
                manifest = save_base(params, tmp)
        log_artifact(out / "manifest.json")
        print(f"[init_dit] {manifest['kind']} base model -> {out}")
    return out
