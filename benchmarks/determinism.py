"""Does the same command give the same model? Stage 2 of one run, trained twice per setting, each time in a fresh
process, with `project.deterministic` off and then on; per setting, whether the two exported models are bit for
bit the same, the largest weight difference, and each run's wall time.

    python benchmarks/determinism.py [--params params.yaml] [--run sft] [--steps 50] [--out tmp/determinism]
                                     [--settings false,true]

Reads the DAG's outputs the run needs (the clips, models/base, the encoder or aligner of a TRD run: `sara repro
train_dit-<run>` builds them) and writes only under --out: each training's model and state, and determinism.md.
Why: two lab runs of one command on an H100 moved a row by 0.07 TA (docs/lab/replicates.md). On a CPU both
settings are expected to give identical models; on a GPU, without deterministic kernels, not.
"""

from __future__ import annotations

import argparse
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def worker(params_path: Path, run_name: str) -> None:
    """One training, in this (fresh) process: the stage's determinism setting, then the real Stage 2 loop."""
    from sara.config import load_params
    from sara.env import deterministic_kernels
    from sara.runs import run_argument
    from sara.train.stage2 import train_stage2

    params = load_params(params_path)
    deterministic_kernels(params.project.deterministic)  # as `sara.cli` does before every stage
    train_stage2(params, run_argument(run_name), resume=False, progress=False)


def train(params_path: Path, run: str, steps: int, deterministic: bool, out: Path) -> float:
    """Train `run` for `steps` steps into `out` in a fresh process; its wall time in seconds. The process's output
    goes to `out/train.log`: torch names there the ops that have no deterministic kernel (`kernel_warnings`)."""
    raw = yaml.safe_load(params_path.read_text())
    raw["project"]["deterministic"] = deterministic
    raw["train"].update(steps=steps, checkpoint_every=steps, out_dir=str(out / "dit"), state_dir=str(out / "state"))
    out.mkdir(parents=True, exist_ok=True)
    copy = out / "params.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--worker", str(copy), "--run", run], cwd=params_path.parent,
                          capture_output=True, text=True)
    (out / "train.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"training {run} into {out} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - t0


# torch's words for a kernel that is not deterministic: the generic alert ("<op> does not have a deterministic
# implementation, but you set 'torch.use_deterministic_algorithms(True...") and attention's backwards ("Flash
# Attention defaults to a non-deterministic algorithm. ...").
_KERNEL_WARNING = re.compile(r"(?:Warning|Error): (.+?) (?:does not have a deterministic implementation|defaults to a "
                             r"non-deterministic algorithm)")


def kernel_warnings(log: str) -> list[str]:
    """The ops a training's log names as not deterministic, each once, in the order they first appear."""
    return list(dict.fromkeys(m.group(1).strip() for m in _KERNEL_WARNING.finditer(log)))


def model_difference(a: Path, b: Path) -> dict[str, float | int | bool]:
    """Two exported Stage 2 run folders: identical (every tensor bit for bit), the largest |a - b| over all
    weights, and how many tensors differ; the transformer and the auxiliary heads (aux.pt, a flat state dict) both."""
    import torch
    from safetensors.torch import load_file

    from sara.io import load_tensors

    def tensors(run_dir: Path) -> dict[str, torch.Tensor]:
        out = {f"transformer.{k}": v for k, v in load_file(run_dir / "transformer" / "diffusion_pytorch_model.safetensors").items()}
        aux = run_dir / "aux.pt"
        if aux.is_file():
            out.update({f"aux.{k}": v for k, v in load_tensors(aux, f"train {run_dir.name} again").items()})
        return out

    ta, tb = tensors(a), tensors(b)
    if ta.keys() != tb.keys():
        raise ValueError(f"{a} and {b} hold different tensors: not two trainings of one run")
    differ = [k for k in ta if not torch.equal(ta[k], tb[k])]
    largest = max((float((ta[k].double() - tb[k].double()).abs().max()) for k in differ), default=0.0)
    return {"identical": not differ, "max_abs_diff": largest, "tensors": len(ta), "differ": len(differ)}


def machine() -> str:
    import torch

    from sara.env import resolve_device

    if resolve_device("auto").type == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    return f"{platform.machine()} CPU, torch {torch.__version__}"


def _settings(text: str) -> list[bool]:
    """`--settings false,true` -> [False, True]; anything else is one argparse error naming it."""
    values = {"false": False, "true": True}
    out = []
    for v in (v.strip() for v in text.split(",")):
        if v not in values:
            raise argparse.ArgumentTypeError(f"{v!r} is not true or false")
        out.append(values[v])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--run", default="sft")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", type=Path, default=Path("tmp/determinism"))
    ap.add_argument("--settings", type=_settings, default="false,true",
                    help="the project.deterministic values to try, in order")
    ap.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one training (the params copy), in this process
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.worker, args.run)
        return 0
    params = args.params.resolve()
    rows = []
    for deterministic in args.settings:
        setting = args.out.resolve() / f"deterministic_{str(deterministic).lower()}"
        trainings = [setting / f"training{i}" for i in (1, 2)]
        try:
            walls = [train(params, args.run, args.steps, deterministic, t) for t in trainings]
        except RuntimeError as err:  # strict mode: an op with no deterministic kernel stops the training, naming it
            last = str(err).strip().splitlines()[-1]
            rows.append((deterministic, None, None, [last]))
            print(f"[determinism] deterministic={deterministic}: a training stopped: {last}")
            continue
        diff = model_difference(*(t / "dit" / args.run for t in trainings))
        warned = kernel_warnings("".join((t / "train.log").read_text() for t in trainings))
        rows.append((deterministic, walls, diff, warned))
        print(f"[determinism] deterministic={deterministic}: identical {diff['identical']}, "
              f"largest difference {diff['max_abs_diff']:.3g}, {diff['differ']} of {diff['tensors']} tensors differ; "
              f"not deterministic by torch's word: {', '.join(warned) or 'none'}")
    lines = [f"{args.run}, {args.steps} steps, {args.params}, {machine()}", "",
             "| project.deterministic | two trainings identical | largest weight difference | tensors that differ "
             "| wall per training | kernels torch names as not deterministic |",
             "|---|---|---|---|---|---|"]
    for deterministic, walls, d, warned in rows:
        if d is None:
            lines.append(f"| {str(deterministic).lower()} | stopped | - | - | - | {warned[0]} |")
            continue
        lines.append(f"| {str(deterministic).lower()} | {'yes' if d['identical'] else '**no**'} | {d['max_abs_diff']:.3g} | "
                     f"{d['differ']} of {d['tensors']} | {walls[0]:.1f} s, {walls[1]:.1f} s | {'; '.join(warned) or 'none'} |")
    table = "\n".join(lines) + "\n"
    (args.out / "determinism.md").write_text(table)
    print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
