"""Encoder gates of a lab video encoder on the corpus' held-out clips, pretrained vs random init (CPU is enough).

Renders the held-out split of `pretrain.corpus` (deterministic, so it is the split the GPU run held out) when
`--corpus` has none, then runs sara.train.pretrain_vfm.encoder_probes on both encoders:

    python scripts/lab_probes.py --params configs/lab.yaml --vfm models/vfm --out probes.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

if __name__ == "__main__":
    import torch

    from sara.config import load_params
    from sara.data.corpus import load_corpus, render_split
    from sara.models.videomae import load_videomae
    from sara.train.pretrain_vfm import encoder_probes, encoder_view, gate_passed, random_init_encoder

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--params", default="configs/lab.yaml")
    ap.add_argument("--vfm", required=True, help="the pretrained encoder folder (VideoMAE save_pretrained)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = load_params(args.params)
    c, p = params.pretrain.corpus, params.pretrain.vfm
    root = Path(c.out_dir)
    if (root / "manifest.json").is_file():
        held = load_corpus(root, "heldout")
    else:
        import numpy as np

        from sara.data.corpus import MAX_ENTITIES, Corpus

        clips = render_split(c, "heldout", min(c.n_heldout, p.probe_clips))
        masks = np.zeros((len(clips), MAX_ENTITIES, c.frames, c.height, c.width), bool)
        for i, x in enumerate(clips):
            masks[i, : len(x["masks"])] = x["masks"]
        held = Corpus(np.stack([x["frames"] for x in clips]), [x["caption"] for x in clips], masks,
                      [x["labels"] for x in clips])
    dev = torch.device("cpu")
    pre = encoder_probes(encoder_view(load_videomae(args.vfm, torch.float32), params.vfm, dev), held, p.probe_clips)
    rand = encoder_probes(encoder_view(random_init_encoder(params.vfm, p, p.seed), params.vfm, dev), held, p.probe_clips)
    res = {"pretrained": pre, "random_init": rand, "gate_met": gate_passed(pre, rand)}
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
