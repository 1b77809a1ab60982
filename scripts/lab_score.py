"""Score the learning curve of a lab base model (`<base_dir>/curve/step_<n>.npz`) with the grounded judge.

`sara init-dit` does this itself; this script is for a base model pretrained on a machine that could not (the
judge's reference needs an mp4 encoder):

    python scripts/lab_score.py models/base [--prompt-set synthetic] [--fps 8]
"""

from __future__ import annotations

import argparse
import json

from sara.stages.pretrain_dit import score_curve

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("base_dir")
    ap.add_argument("--prompt-set", default="synthetic")
    ap.add_argument("--fps", type=int, default=8)
    args = ap.parse_args()
    points = score_curve(args.base_dir, args.prompt_set, args.fps)
    print(json.dumps([{k: p[k] for k in ("step", "train_seconds", "TA", "MQ")} for p in points], indent=2))
