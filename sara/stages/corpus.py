"""`sara corpus`: the lab pretraining corpus (sara.data.corpus) under `pretrain.corpus.out_dir`.

Lab scale: renders `pretrain.corpus.n_train` + `n_heldout` synthetic clips on every core. Other scales pretrain
nothing here: the folder holds only a manifest saying so (the embedded default's models are random init, the
paper's come from local weights).
"""

from __future__ import annotations

from pathlib import Path

from sara.config import Params

SECTIONS = ["project", "pretrain.corpus"]


def build_output(params: Params, out: Path, log=print) -> dict:
    """Write the corpus (lab) or the 'not used' manifest (other scales) into `out`."""
    from sara.data.corpus import write_corpus
    from sara.io import write_json

    if params.project.scale != "lab":
        out.mkdir(parents=True, exist_ok=True)
        manifest = {"scale": params.project.scale, "used": False,
                    "reason": "only the lab scale pretrains its base models on a corpus"}
        write_json(out / "manifest.json", manifest)
        return manifest
    return write_corpus(params.pretrain.corpus, out, log=log)


def run(params: Params) -> Path:
    from sara.io import atomic_dir
    from sara.tracking import log_metrics, stage_run

    out = Path(params.pretrain.corpus.out_dir)
    with stage_run("corpus", params, SECTIONS):
        with atomic_dir(out) as tmp:
            manifest = build_output(params, tmp)
        if manifest.get("render_seconds") is not None:
            log_metrics({"render_seconds": manifest["render_seconds"], "clips_per_second": manifest["clips_per_second"]})
    return out
