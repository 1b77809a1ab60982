"""Figures of a lab base model for docs/lab/: its learning curve and sample contact sheets.

Reads `<base_dir>/curve.json` (grounded TA / MQ against DiT steps, scored by `sara init-dit` or
`scripts/lab_score.py`) and `<base_dir>/curve/step_<n>.npz` (the curve's videos, one per held-out prompt):

    python scripts/lab_figures.py models/base docs/lab --tag run2 [--prompts syn_01 syn_05 syn_09 syn_13]

writes `<out>/base_curve_<tag>.png` and `<out>/base_samples_<tag>.png` (the last curve step, every other frame);
with `--vfm <encoder dir>`, also `<out>/encoder_curve_<tag>.png` (the encoder's probes against its steps, from its
metrics.json, against the gates).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def plot_curve(points: list[dict], out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=120)
    ax.plot(steps, [p["TA"] for p in points], "o-", label="TA (text alignment)")
    ax.plot(steps, [p["MQ"] for p in points], "s-", label="MQ (motion quality)")
    ax.axhline(3.0, color="grey", ls="--", lw=1, label="gate 3.0")
    ax.set(xlabel="DiT pretraining steps", ylabel="grounded judge (1-5)", ylim=(1, 5), title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def plot_encoder_curve(metrics: dict, out: Path, title: str) -> None:
    """Shape / motion probe accuracy and pair AUROC against encoder steps; random init and the gates dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pre, rand = metrics["probe"]["pretrained"], metrics["probe"]["random_init"]
    points = metrics.get("curve", []) + [{"step": metrics["steps_done"], "shape": pre["shape"],
                                          "motion": pre["motion"], "pair_auroc": pre["pair_auroc"]}]
    steps = [p["step"] for p in points]
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=120)
    for key, label, colour in (("shape", "shape probe", "C0"), ("motion", "motion probe", "C1")):
        ax.plot(steps, [p[key]["accuracy"] for p in points], "o-", color=colour, label=label)
        ax.axhline(rand[key]["accuracy"], color=colour, ls=":", lw=1, label=f"{label}, random init")
    ax.plot(steps, [p["pair_auroc"] for p in points], "s-", color="C2", label="same-entity pair AUROC")
    ax.axhline(0.95, color="C2", ls="--", lw=1, label="AUROC gate 0.95")
    ax.set(xlabel="encoder pretraining steps", ylabel="held-out accuracy / AUROC", ylim=(0, 1), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    from sara.data.video_io import contact_sheet, save_png

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("base_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--tag", required=True)
    ap.add_argument("--prompts", nargs="*", default=["syn_01", "syn_05", "syn_09", "syn_13"])
    ap.add_argument("--vfm", default=None, help="encoder folder (its metrics.json): plot its learning curve too")
    args = ap.parse_args()
    base, out = Path(args.base_dir), Path(args.out_dir)
    curve = json.loads((base / "curve.json").read_text())
    points = [p for p in curve["points"] if "TA" in p]
    if not points:
        raise SystemExit(f"{base / 'curve.json'} is not scored yet: run `python scripts/lab_score.py {base}` first")
    plot_curve(points, out / f"base_curve_{args.tag}.png", f"lab base DiT ({args.tag})")
    last = points[-1]
    videos = np.load(base / "curve" / last["videos"])
    sheets = [contact_sheet(videos[k][::2], label=f"{k} | step {last['step']}") for k in args.prompts if k in videos]
    save_png(out / f"base_samples_{args.tag}.png", np.concatenate(sheets, 0))
    print(f"wrote {out}/base_curve_{args.tag}.png and base_samples_{args.tag}.png (step {last['step']})")
    if args.vfm:
        metrics = json.loads((Path(args.vfm) / "metrics.json").read_text())
        plot_encoder_curve(metrics, out / f"encoder_curve_{args.tag}.png", f"lab encoder ({args.tag})")
        print(f"wrote {out}/encoder_curve_{args.tag}.png")


if __name__ == "__main__":
    main()
