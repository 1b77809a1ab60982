"""The comparison's figures: per-dimension bars with intervals, the method x routing-operator heatmap, the
pre-registered claims' paired differences, the paired TA differences by number of subjects, and the qualitative grid (the methods side by side over time, one row per method, one PNG per prompt)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from evaluation.comparison.markdown import fmt_iv
from evaluation.report import HEATMAP_ROWS, METHOD_OP, OPERATORS, finish_dim_bars
from evaluation.rubric.dimensions import ALL_DIMS
from sara.runs import BASE, DEFAULT_TARGET, ORACLE, TARGETS, Run, parse_row, row_label


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _estimates_and_errors(intervals: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Estimates (N,) and matplotlib's error bars (2, N) of interval dicts; a missing number is NaN, its bar 0."""
    def col(key: str) -> np.ndarray:
        return np.array([np.nan if iv.get(key) is None else iv[key] for iv in intervals], dtype=float)

    est, lo, hi = col("estimate"), col("lo"), col("hi")
    return est, np.nan_to_num(np.stack([est - lo, hi - est]), nan=0.0)


def plot_dims(result: dict, path: Path, title: str) -> None:
    """Per-dimension bars per method with their intervals as error bars."""
    plt = _plt()
    runs = [r for r in result["runs"] if r != ORACLE]
    dims = list(ALL_DIMS)
    x = np.arange(len(dims))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(14, 4.5))
    for i, r in enumerate(runs):
        m = result["runs"][r]["metrics"]
        est, err = _estimates_and_errors([m[d] for d in dims])
        ax.bar(x + i * width - 0.4 + width / 2, est, width, yerr=err, capsize=1.5, label=row_label(r), error_kw={"lw": 0.7})
    finish_dim_bars(plt, fig, ax, dims, path, title, ymax=5.4)  # room above 5 for the error bars


def plot_claims(result: dict, path: Path, title: str) -> bool:
    """The pre-registered family as a forest plot: each claim's paired difference (a - b) with its interval, the
    Holm-adjusted p and the verdict beside it. Claims not run are listed without a point. False (no file) when the
    params register no claims."""
    claims = result.get("primary_claims", {}).get("claims", [])
    if not claims:
        return False
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(claims) + 1.2))
    colours = {"holds": "tab:green", "not shown": "tab:gray"}
    for y, c in enumerate(reversed(claims)):  # the first claim on top
        d = c.get("difference")
        if d is None or c["verdict"] == "not run":
            ax.text(0, y, "not run", ha="center", va="center", fontsize=8, color="tab:gray")
            continue
        colour = colours.get(c["verdict"], "tab:gray")
        ax.plot([d["lo"], d["hi"]], [y, y], color=colour, lw=2)
        ax.plot([d["estimate"]], [y], "o", color=colour)
        ax.annotate(f"p(Holm) {c['p_holm']:.3f}, {c['verdict']}", (d["hi"], y), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=8, color=colour)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(range(len(claims)), [c["claim"] for c in reversed(claims)], fontsize=8)
    ax.set_ylim(-0.6, len(claims) - 0.4)
    ax.set_xlabel("paired difference (a - b), 95% interval")
    ends = [v for c in claims if c.get("difference") for v in (c["difference"]["lo"], c["difference"]["hi"])] + [0.0]
    span = max(ends) - min(ends) or 1.0
    ax.set_xlim(min(ends) - 0.1 * span, max(ends) + 0.9 * span)  # room for the annotations right of the intervals
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_subjects(result: dict, path: Path, title: str) -> bool:
    """Paired TA differences by how many subjects a prompt names (numbers.by_subjects): one panel per reference,
    one line per run with its intervals. False (no file) without the breakdown."""
    block = result.get("by_subjects")
    if not block or not block["differences"]:
        return False
    plt = _plt()
    refs = list(block["differences"])
    fig, axes = plt.subplots(1, len(refs), figsize=(max(7.0, 5 * len(refs)), 4.0), squeeze=False, sharey=True)
    groups = list(block["groups"])
    x = np.arange(len(groups))
    for ax, ref in zip(axes[0], refs):
        per_run = block["differences"][ref]
        step = 0.6 / max(1, len(per_run))
        for i, (name, per) in enumerate(per_run.items()):
            cells = [per.get(k, {}).get("TA") or {} for k in groups]
            est, err = _estimates_and_errors(cells)
            ax.errorbar(x - 0.3 + (i + 0.5) * step, est, yerr=err, fmt="o-", capsize=2, lw=1, ms=3, label=row_label(name))
        ax.axhline(0.0, color="black", lw=0.8)
        ax.set_xticks(x, [f"{k}\n({block['groups'][k]['n_prompts']} prompts)" for k in groups], fontsize=8)
        ax.set_xlabel("subjects the prompt names")
        ax.set_title(f"against {row_label(ref)}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("paired ΔTA, 95% interval")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def heatmap_targets(result: dict) -> list[str]:
    """The TRD targets of the compared runs, the default first: one method x operator heatmap each."""
    found = {r.target for r in (parse_row(n) for n in result["runs"]) if isinstance(r, Run) and r.spec.target}
    return [t for t in TARGETS if t in found or t == DEFAULT_TARGET]


def plot_operator_heatmap(result: dict, path: Path, title: str, target: str = DEFAULT_TARGET) -> None:
    """Method x routing operator, TA and MQ: the estimate and its interval in each cell, for the runs on one TRD
    target (base and SFT, which have none, in every map)."""
    plt = _plt()
    methods = HEATMAP_ROWS
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    im = None
    for ax, group in zip(axes, ("TA", "MQ")):
        grid = np.full((len(methods), len(OPERATORS)), np.nan)
        text: dict[tuple[int, int], str] = {}
        for run, r in result["runs"].items():
            row = parse_row(run)
            if not isinstance(row, Run) and row != BASE or isinstance(row, Run) and row.spec.target and row.target != target:
                continue  # the oracle row, or another target's run (its own map)
            method, op = METHOD_OP[BASE] if row == BASE else row.report_cell
            if r["metrics"][group]["estimate"] is not None:
                i, j = methods.index(method), OPERATORS.index(op)
                grid[i, j] = r["metrics"][group]["estimate"]
                text[(i, j)] = fmt_iv(r["metrics"][group]).replace(" [", "\n[")
        im = ax.imshow(grid, cmap="viridis", vmin=1, vmax=5)
        ax.set_xticks(range(len(OPERATORS)), OPERATORS)
        ax.set_yticks(range(len(methods)), methods)
        for (i, j), t in text.items():
            ax.text(j, i, t, ha="center", va="center", color="white", fontsize=6.5)
        ax.set_title(f"{group} mean [CI]", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def qualitative_grid(rows: list[tuple[str, np.ndarray]], n_frames: int, title: str, scale: int = 2) -> np.ndarray:
    """One image: a row per method (label on the left), `n_frames` frames spread uniformly over its video."""
    from PIL import Image, ImageDraw

    from sara.models.encoders import sample_frame_indices

    h, w = rows[0][1].shape[1:3]
    th, tw, gap, left, top = h * scale, w * scale, 2, 124, 28
    canvas = Image.new("RGB", (left + n_frames * (tw + gap), top + len(rows) * (th + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 2), title, fill=(0, 0, 0))
    for r, (name, frames) in enumerate(rows):
        y = top + r * (th + gap)
        draw.text((2, y + th // 2 - 5), name, fill=(0, 0, 0))
        idx = sample_frame_indices(len(frames), n_frames).tolist()
        for c, f in enumerate(idx):
            img = Image.fromarray(frames[f])
            if img.size != (w, h):
                img = img.resize((w, h), Image.BILINEAR)
            canvas.paste(img.resize((tw, th), Image.NEAREST), (left + c * (tw + gap), y))
            if r == 0:
                draw.text((left + c * (tw + gap) + 2, 15), f"frame {f}", fill=(90, 90, 90))
    return np.asarray(canvas)


def write_qualitative(videos: dict[str, dict[tuple[str, int], str]], out: Path, n_frames: int,
                      only: Iterable[str] | None = None) -> list[Path]:
    """A PNG per prompt (of `only`, when given): every run's video of the prompt's first sampling seed, side by
    side over time."""
    from sara.data.video_io import read_video, save_png

    out.mkdir(parents=True, exist_ok=True)
    prompts = sorted({p for vids in videos.values() for p, _ in vids})
    if only is not None:
        keep = set(only)
        prompts = [p for p in prompts if p in keep]
    written = []
    for prompt in prompts:
        rows = []
        for run, vids in videos.items():
            seeds = sorted(s for p, s in vids if p == prompt)
            if seeds:
                frames, _ = read_video(vids[(prompt, seeds[0])])
                rows.append((row_label(run)[:20], frames))
        if rows:
            path = out / f"{prompt}.png"
            save_png(path, qualitative_grid(rows, n_frames, f"{prompt} (sampling seed {min(s for v in videos.values() for p, s in v if p == prompt)})"))
            written.append(path)
    return written
