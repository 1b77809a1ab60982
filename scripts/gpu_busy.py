"""GPU busy fraction of a run: sample `nvidia-smi` utilisation while a command runs, then summarise.

    python scripts/gpu_busy.py record util.csv -- sara repro --jobs 8 init_dit      # samples every 0.5 s
    python scripts/gpu_busy.py summary util.csv

`utilization.gpu` is the share of each sample period in which a kernel ran, so its mean over the run is the share
of the run's wall time the GPU was busy (docs/lab/base.md reports it beside the DiT's MFU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path


def record(csv: Path, command: list[str], period_ms: int = 500) -> int:
    """Run `command` while nvidia-smi appends `epoch_ms,utilization` rows to `csv`; return the command's status.
    Without nvidia-smi the command runs unsampled (one line on stderr)."""
    if shutil.which("nvidia-smi") is None:
        print("gpu_busy: no nvidia-smi on PATH: the command runs, no GPU samples", file=sys.stderr)
        csv.write_text("")
        return subprocess.call(command)
    with csv.open("w") as fh:
        smi = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                f"-lms={period_ms}"], stdout=fh, stderr=subprocess.DEVNULL)
        try:
            return subprocess.call(command)
        finally:
            smi.terminate()
            smi.wait()


def summary(csv: Path, until_s: float | None = None, period_s: float = 0.5) -> dict[str, float]:
    """Mean utilisation (busy fraction), the share of samples at >= 50%, and the number of samples; with
    `until_s`, of the first `until_s` seconds only (the samples are `period_s` apart from the command's start)."""
    vals = [float(line) for line in csv.read_text().split() if line.strip().replace(".", "", 1).isdigit()]
    if until_s is not None:
        vals = vals[: int(until_s / period_s)]
    if not vals:
        raise SystemExit(f"{csv}: no utilisation samples (was nvidia-smi available?)")
    return {"gpu_busy_fraction": round(sum(vals) / len(vals) / 100.0, 4),
            "share_samples_at_least_50pct": round(sum(v >= 50 for v in vals) / len(vals), 4), "samples": len(vals)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="verb", required=True)
    rec = sub.add_parser("record")
    rec.add_argument("csv", type=Path)
    rec.add_argument("command", nargs=argparse.REMAINDER)
    summ = sub.add_parser("summary")
    summ.add_argument("csv", type=Path)
    args = ap.parse_args()
    if args.verb == "record":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        sys.exit(record(args.csv, command))
    print(json.dumps(summary(args.csv)))


if __name__ == "__main__":
    main()
