"""docs/lab/base.json from a lab base run's outputs (the results folder of scripts/lab_run.sh, unpacked).

    python scripts/lab_base_report.py RESULTS --machine "1x NVIDIA H100" --commit abc1234 --out docs/lab/base.json

Reads the VAE, encoder and base DiT metrics the pretraining stages write, the base's rubric records (grounded
judge; 95% bootstrap over prompts, the comparison's scheme), Stage 1's held-out evaluation, `repro_times.json`
(per-stage wall times of `sara repro`) and `gpu_util.csv` (scripts/gpu_busy.py), and writes every field the lab
issues ask for. The previous base.json is kept under `previous_run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))


def read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"{path}: missing (did the stage run?)") from None


def rubric_summary(rubric_dir: Path, level: float = 0.95, n_boot: int = 2000, prefix: str = "") -> dict:
    """TA / MQ means with bootstrap intervals over prompts, and each TA dimension's mean, of the base run; with
    `prefix`, only the prompts whose id starts with it (`syn_`: the 18 qualitative prompts, which every lab base
    run has sampled, so two runs compare on the same prompts)."""
    from dataclasses import replace

    from evaluation.comparison.records import load_run
    from evaluation.rubric.dimensions import ALL_DIMS, MQ_DIMS, TA_DIMS
    from evaluation.statistics import bootstrap_weights, run_interval

    scores, _ = load_run("base", {0: rubric_dir}, "grounded")
    keep = [i for i, (prompt, _) in enumerate(scores.units) if prompt.startswith(prefix)]
    scores = replace(scores, units=tuple(scores.units[i] for i in keep), values=scores.values[:, keep])
    weights = bootstrap_weights(scores.units, n_boot, seed=0, scheme="prompt")
    out = {"videos": len(scores.units)}
    for name, dims in (("ta", TA_DIMS), ("mq", MQ_DIMS)):
        iv = run_interval(scores, [ALL_DIMS.index(d) for d in dims], weights, scores.units, level)
        out[f"{name}_mean"], out[f"{name}_ci95"] = round(iv.estimate, 4), [round(iv.lo, 4), round(iv.hi, 4)]
    per_dim = np.nanmean(scores.values[0], axis=0)  # (D,) over videos
    out["ta_dims"] = {d: round(float(per_dim[ALL_DIMS.index(d)]), 4) for d in TA_DIMS}
    out["mq_dims"] = {d: round(float(per_dim[ALL_DIMS.index(d)]), 4) for d in MQ_DIMS}
    return out


def probe_view(res: dict) -> dict:
    return {"shape": res["shape"]["accuracy"], "motion": res["motion"]["accuracy"], "pair_auroc": res["pair_auroc"]}


def main() -> None:
    from gpu_busy import summary as busy_summary

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--machine", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--command", default="bash scripts/lab_run.sh <minilm copy> init_dit pretrain_vfm eval_aligner "
                                          "rubric-base (cp configs/lab.yaml params.yaml; sara repro --jobs 8)")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "lab" / "base.json")
    args = ap.parse_args()
    r = args.results
    vae, vfm, dit = read(r / "models/vae/metrics.json"), read(r / "models/vfm/metrics.json"), read(r / "models/base/pretrain_metrics.json")
    times = read(r / "repro_times.json")
    base_stages = ("corpus", "pretrain_vae", "pretrain_vfm", "init_dit", "data", "masks", "features", "train_aligner",
                   "eval_aligner")
    stage_seconds = {s["stage"]: round(s["seconds"], 1) for s in times["stages"]}
    # the base models are ready when the pretraining stages end, the base is scored when its rubric ends (a run
    # of the whole DAG goes on with the comparison, and may start Stage 2 before it samples the base)
    ends = {s["stage"]: s["start_s"] + s["seconds"] for s in times["stages"]}
    models_end = max(ends[s] for s in ("corpus", "pretrain_vae", "pretrain_vfm", "init_dit") if s in ends)
    base_end = max(ends[s] for s in (*base_stages, "sample-base", "rubric-base") if s in ends)
    rubric = rubric_summary(r / "outputs/rubric/base")
    result = {
        "machine": args.machine, "gpu_kind": args.machine, "commit": args.commit, "config": "configs/lab.yaml",
        "command": args.command,
        "gpu_minutes": round(models_end / 60.0, 2),  # to the base models; sampling and scoring them: stage_seconds
        "base_wall_seconds": round(base_end, 1),
        "base_models_ready_seconds": round(models_end, 1),
        "dag_wall_seconds": round(times["wall_s"], 1),
        "stage_seconds": stage_seconds,
        "base_stage_seconds": {k: v for k, v in stage_seconds.items() if k in base_stages},
        "gpu_busy": busy_summary(r / "gpu_util.csv", until_s=models_end),  # while the base models were trained
        "gpu_busy_whole_dag": busy_summary(r / "gpu_util.csv"),
        "vae_psnr_db": vae["psnr_db"], "vae_psnr_gate_db": vae["min_psnr_db"], "vae_steps": vae["steps_done"],
        "vae_train_seconds": vae["train_seconds"],
        "vfm_probe": {"pretrained": probe_view(vfm["probe"]["pretrained"]),
                      "random_init": probe_view(vfm["probe"]["random_init"]), "gates": vfm.get("gates"),
                      "gate_met": vfm["gate_met"], "entities": vfm["probe"]["pretrained"]["entities"],
                      "curve": vfm.get("curve", [])},
        "vfm_steps": vfm["steps_done"], "vfm_train_seconds": vfm["train_seconds"],
        "base_ta_mean": rubric["ta_mean"], "base_ta_ci95": rubric["ta_ci95"],
        "base_mq_mean": rubric["mq_mean"], "base_mq_ci95": rubric["mq_ci95"],
        "base_ta_dims": rubric["ta_dims"], "base_mq_dims": rubric["mq_dims"], "base_videos": rubric["videos"],
        "base_on_qualitative_prompts": rubric_summary(r / "outputs/rubric/base", prefix="syn_"),
        "dit_mfu": dit.get("mfu"), "dit_steps": dit.get("steps_done"),
        "dit_seconds_per_step": dit.get("seconds_per_step"),
        "dit_first_step_seconds": dit.get("first_step_seconds"),
        "random_ta_mean": 1.6111, "random_mq_mean": 2.2619,
        "random_source": "embedded DAG base row (random-init tiny models; outputs/metrics/base/rubric.json)",
    }
    result["gpu_busy_fraction"] = result["gpu_busy"]["gpu_busy_fraction"]
    curve = r / "models/base/curve.json"  # the DiT's learning curve on the qualitative prompts
    if curve.is_file():
        result["dit_curve"] = [{k: p[k] for k in ("step", "TA", "MQ")} for p in read(curve)["points"]]
    aligner = r / "outputs/aligner/metrics.json"
    if aligner.is_file():
        result["stage1_lab_encoder"] = read(aligner)
    if args.out.is_file():
        prev = json.loads(args.out.read_text())
        prev.pop("previous_run", None)
        result["previous_run"] = prev
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("vae_psnr_db", "base_ta_mean", "base_mq_mean", "dit_mfu",
                                             "gpu_busy_fraction", "gpu_minutes")}))


if __name__ == "__main__":
    main()
