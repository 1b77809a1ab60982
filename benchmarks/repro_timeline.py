"""When each stage of a `sara repro --jobs N --times T.json` run started and how long it took: a timeline figure
(one bar per stage, coloured by kind) and a markdown table, from the times file the run wrote.

    python benchmarks/repro_timeline.py outputs/repro_times.json --png timeline.png --title "lab DAG, H200" > table.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flows.dag import stage_base

# stage kind -> colour; a kind is the stage's base name (train_dit-sft -> train_dit)
COLOURS = {
    "corpus": "#8c564b", "data": "#8c564b", "masks": "#8c564b", "features": "#8c564b",
    "pretrain_vae": "#d62728", "pretrain_vfm": "#d62728", "init_dit": "#d62728",
    "train_aligner": "#9467bd", "eval_aligner": "#9467bd",
    "train_dit": "#1f77b4", "sample": "#2ca02c", "mechanism": "#17becf", "rubric": "#ff7f0e",
}


def table(times: dict) -> str:
    rows = sorted(times["stages"], key=lambda s: s["start_s"])
    lines = [f"`sara repro --jobs {times['jobs']}`: {len(rows)} stages in {times['wall_s']:.0f} s wall "
             f"({sum(s['seconds'] for s in rows):.0f} s of stage time).", "",
             "| stage | start (s) | seconds | attempts | status |", "|---|---|---|---|---|"]
    lines += [f"| {s['stage']} | {s['start_s']:.0f} | {s['seconds']:.0f} | {s['attempts']} | {s['status']} |" for s in rows]
    return "\n".join(lines)


def plot(times: dict, out: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(times["stages"], key=lambda s: s["start_s"])
    fig, ax = plt.subplots(figsize=(10, 0.22 * len(rows) + 1.2))
    for i, s in enumerate(rows):
        ax.barh(i, s["seconds"], left=s["start_s"], color=COLOURS.get(stage_base(s["stage"]), "#7f7f7f"),
                edgecolor="black" if s["status"] != "ran" else "none")
    ax.set_yticks(range(len(rows)), [s["stage"] for s in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("seconds from the start of the run")
    ax.set_title(f"{title}: {len(rows)} stages, {times['wall_s'] / 60:.1f} min wall, --jobs {times['jobs']}", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("times", type=Path, help="the JSON file `sara repro --times` wrote")
    ap.add_argument("--png", type=Path, default=None, help="write the timeline figure here")
    ap.add_argument("--title", default="sara repro")
    args = ap.parse_args()
    times = json.loads(args.times.read_text())
    if args.png:
        plot(times, args.png, args.title)
    print(table(times))


if __name__ == "__main__":
    main()
