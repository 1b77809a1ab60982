"""The controlled comparison: the paper's Tables 1, 3, 5 and 6 with bootstrap intervals, training-seed spread and
paired differences against the reference runs, the orderings the paper claims, and the figures.

Input: the per-video rubric records `<rubric_dir>/<run>/<prompt>_s<seed>.json` (written by `sara rubric`). A run
trained with several training seeds keeps one folder per seed: `<run>/` holds the seed `train.seed` of the
params, `<run>.seed<k>/` the training seed k (same layout). `video_scores` is the only function that knows the
record format. Statistics: evaluation/statistics.py (the interval, the resampling unit and the pairing are
documented there).

Outputs (`comparison.out_dir`): `comparison.md` (docs-ready tables), `comparison.json` (every number of the
tables: per-run means, intervals, n_videos, training seeds, spread, paired differences, orderings; per training
seed of a run its own TA/MQ intervals and paired differences), and
`figures/`: `dims_<protocol>.png` (per-dimension bars with intervals), `operator_heatmap_<protocol>.png`, and
`qualitative/<prompt>.png` (the methods side by side over time, one row per method).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from evaluation.report import METHOD_OP, OPERATORS, finish_dim_bars, table3_rows
from evaluation.rubric.dimensions import ALL_DIMS, GROUPS, MQ_DIMS, SHORT, TA_DIMS
from evaluation.statistics import (
    Interval,
    RunScores,
    bootstrap_weights,
    paired_difference,
    run_interval,
    seed_spread,
    verdict,
)
from sara.runs import BASE, MAIN_RUN, ORACLE, row_label, row_rank

METRICS: dict[str, tuple[str, ...]] = {"TA": TA_DIMS, "MQ": MQ_DIMS, **{d: (d,) for d in ALL_DIMS}}
SEED_DIR = re.compile(r"^(?P<run>[a-z0-9-]+)\.seed(?P<seed>\d+)$")
NOT_RECORDS = {"summary.json", "index.json"}
# The paper's orderings (Tables 1 and 3): (a, relation, b, metric)
CLAIMS: list[tuple[str, str, str, str]] = [
    ("sara-or", ">", "videorepa", "TA"),
    ("videorepa", ">=", "sft", "TA"),
    ("sara-or", ">", "sft", "TA"),
    ("sara-or", ">", "sara-and", "TA"),
    ("sara-and", ">", "sara-xor", "TA"),
    ("sara-or", ">", "sara-and", "MQ"),
    ("sara-and", ">", "sara-xor", "MQ"),
    ("sara-or", ">", "sft", "MQ"),
    ("sara-or", ">", "videorepa", "MQ"),
]


label = row_label


# --------------------------------------------------------------------------------------------------------------
# reading the rubric records
# --------------------------------------------------------------------------------------------------------------


def video_scores(rec: dict, protocol: str) -> dict[str, float | None]:
    """{dimension: score or None} of one per-video rubric record. The one place that knows the record format.

    grounded: `rec["grounded"][dim]["score"]` (None = not applicable). vlm: the mean over the judges that gave a
    valid score (`rec["judges"][judge][group]["scores"][dim]["score"]`), as the rubric's mean aggregation does.
    """
    if protocol == "grounded":
        g = rec.get("grounded")
        if g is None:
            raise KeyError("grounded")
        return {d: (None if g.get(d, {}).get("score") is None else float(g[d]["score"])) for d in ALL_DIMS}
    judges = rec.get("judges")
    if not judges:
        raise KeyError("judges")
    out: dict[str, float | None] = {}
    for d in ALL_DIMS:
        vals = [float(j[grp]["scores"][d]["score"]) for j in judges.values() for grp in j if d in j[grp].get("scores", {})]
        out[d] = sum(vals) / len(vals) if vals else None
    return out


def discover_runs(rubric_dir: Path, default_seed: int) -> dict[str, dict[int, Path]]:
    """{run: {training seed: folder}} for every folder of per-video records under `rubric_dir`, in row order."""
    found: dict[str, dict[int, Path]] = {}
    if not rubric_dir.is_dir():
        raise FileNotFoundError(f"rubric directory {rubric_dir} not found: run `sara rubric` first")
    for folder in sorted(p for p in rubric_dir.iterdir() if p.is_dir()):
        if not any(f.name not in NOT_RECORDS for f in folder.glob("*.json")):
            continue
        m = SEED_DIR.match(folder.name)
        run, seed = (m["run"], int(m["seed"])) if m else (folder.name, default_seed)
        seeds = found.setdefault(run, {})
        if seed in seeds:
            raise ValueError(f"{folder}: training seed {seed} of {run} is also in {seeds[seed]}")
        seeds[seed] = folder
    return dict(sorted(found.items(), key=lambda kv: row_rank(kv[0])))


def read_records(folder: Path) -> list[dict]:
    recs = []
    for f in sorted(folder.glob("*.json")):
        if f.name in NOT_RECORDS:
            continue
        try:
            rec = json.loads(f.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{f}: not valid JSON ({err.msg} at line {err.lineno})") from None
        if "prompt_id" not in rec or "seed" not in rec:
            raise ValueError(f"{f}: a rubric record needs prompt_id and seed")
        recs.append({**rec, "_file": str(f), "_folder": str(folder)})
    return recs


def load_run(run: str, seed_dirs: dict[int, Path], protocol: str) -> tuple[RunScores, dict[tuple[str, int], str]]:
    """RunScores of one run over its training seeds, and the video file of each (prompt, seed) (first seed)."""
    per_seed: dict[int, dict[tuple[str, int], dict]] = {}
    videos: dict[tuple[str, int], str] = {}
    for tseed, folder in sorted(seed_dirs.items()):
        rows: dict[tuple[str, int], dict] = {}
        for rec in read_records(folder):
            try:
                rows[(str(rec["prompt_id"]), int(rec["seed"]))] = video_scores(rec, protocol)
            except KeyError:
                raise ValueError(f"{rec['_file']}: no {protocol!r} scores (set comparison.protocol or rerun the rubric)") from None
            if not videos or tseed == min(seed_dirs):
                videos.setdefault((str(rec["prompt_id"]), int(rec["seed"])), _video_path(rec))
        per_seed[tseed] = rows
    seeds = sorted(per_seed)
    units = sorted(per_seed[seeds[0]])
    for s in seeds[1:]:
        if sorted(per_seed[s]) != units:
            extra = sorted(set(per_seed[s]) ^ set(units))[0]
            raise ValueError(f"run {run}: training seeds {seeds[0]} and {s} scored different videos "
                             f"(e.g. {extra[0]}_s{extra[1]}): {seed_dirs[s]}")
    values = np.array([[[np.nan if per_seed[s][u][d] is None else per_seed[s][u][d] for d in ALL_DIMS] for u in units]
                       for s in seeds], dtype=np.float64)  # (S, V, D)
    return RunScores(run, tuple(units), ALL_DIMS, tuple(seeds), values), videos


def _video_path(rec: dict) -> str:
    """The scored video: the record's path when it exists, else relative to the record's folder (the oracle)."""
    v = Path(str(rec.get("video", "")))
    return str(v if v.is_file() else Path(rec["_folder"]) / v.name)


# --------------------------------------------------------------------------------------------------------------
# the numbers
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StatsConfig:
    n_boot: int = 2000
    level: float = 0.95
    scheme: str = "prompt"
    seed: int = 0


def _dim_idx(metric: str) -> list[int]:
    return [ALL_DIMS.index(d) for d in METRICS[metric]]


def claim_verdict(relation: str, diff: Interval) -> str:
    if diff.estimate is None or diff.lo is None or diff.hi is None:
        return "cannot tell (no scores)"
    if diff.lo > 0:
        return "holds"
    if diff.hi < 0:
        return "does not hold (reversed)"
    return "no difference (consistent with >=)" if relation == ">=" else "cannot tell at this size"


def prompts_needed(diff: Interval, n_prompts: int) -> int | None:
    """Rough number of prompts at which an interval of this width (shrinking as 1/sqrt(prompts)) would exclude
    zero, if the estimated difference held: n * (half-width / |difference|)^2. None when it already does or is 0."""
    if diff.estimate is None or diff.lo is None or diff.hi is None or not diff.includes_zero() or diff.estimate == 0:
        return None
    half = (diff.hi - diff.lo) / 2.0
    return int(math.ceil(n_prompts * (half / abs(diff.estimate)) ** 2))


SUMMARY = ("TA", "MQ")  # the metrics given per training seed (and logged per child run in MLflow)


def one_seed(r: RunScores, k: int) -> RunScores:
    """Training seed k (the k-th of `r.train_seeds`) of a run, alone."""
    return RunScores(r.run, r.units, r.dims, (r.train_seeds[k],), r.values[k : k + 1])  # (1, V, D)


def per_train_seed(r: RunScores, runs: dict[str, RunScores], references: Iterable[str], weights: np.ndarray,
                   units: list, level: float) -> dict[str, Any]:
    """TA/MQ of one training seed of a run with intervals, and its paired differences against each reference run
    (the reference over all its training seeds, as in the tables), on the same resamples as the tables."""
    out: dict[str, Any] = {"metrics": {m: run_interval(r, _dim_idx(m), weights, units, level).to_dict() for m in SUMMARY},
                           "differences": {}}
    for ref in references:
        if ref in runs and ref != r.run:
            out["differences"][ref] = {}
            for m in SUMMARY:
                iv, n = paired_difference(r, runs[ref], _dim_idx(m), weights, units, level)
                out["differences"][ref][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": n}
    return out


def compare(runs: dict[str, RunScores], references: Iterable[str], cfg: StatsConfig) -> dict[str, Any]:
    """Every number of the comparison (the body of comparison.json)."""
    references = list(references)  # read once per run
    if not runs:
        raise ValueError("no runs to compare")
    units = sorted(set().union(*(r.units for r in runs.values())))
    weights = bootstrap_weights(units, cfg.n_boot, cfg.seed, cfg.scheme)  # (B, V): one draw shared by every run
    out_runs: dict[str, Any] = {}
    for name, r in runs.items():
        metrics = {}
        for m in METRICS:
            iv = run_interval(r, _dim_idx(m), weights, units, cfg.level)
            metrics[m] = {**iv.to_dict(), "spread": seed_spread(r, _dim_idx(m))}
        trained = name not in (ORACLE, BASE)
        out_runs[name] = {
            "label": label(name),
            "train_seeds": list(r.train_seeds) if trained else [],
            "n_videos": len(r.units),
            "n_prompts": len({p for p, _ in r.units}),
            "sampling_seeds": sorted({s for _, s in r.units}),
            "metrics": metrics,
        }
        if trained:
            out_runs[name]["per_train_seed"] = {
                str(seed): per_train_seed(one_seed(r, k), runs, references, weights, units, cfg.level)
                for k, seed in enumerate(r.train_seeds)}
    diffs: dict[str, Any] = {}
    for ref in references:
        if ref not in runs:
            continue
        diffs[ref] = {}
        for name, r in runs.items():
            if name in (ref, ORACLE):
                continue
            diffs[ref][name] = {}
            for m in METRICS:
                iv, n = paired_difference(r, runs[ref], _dim_idx(m), weights, units, cfg.level)
                diffs[ref][name][m] = {**iv.to_dict(), "verdict": verdict(iv), "n_paired": n}
    claims = []
    for a, rel, b, m in CLAIMS:
        entry: dict[str, Any] = {"claim": f"{label(a)} {rel} {label(b)} on {m}", "a": a, "b": b, "relation": rel, "metric": m}
        if a not in runs or b not in runs:
            entry.update(verdict="not run", missing=[x for x in (a, b) if x not in runs])
        else:
            iv, n = paired_difference(runs[a], runs[b], _dim_idx(m), weights, units, cfg.level)
            n_prompts = len({p for p, _ in set(runs[a].units) & set(runs[b].units)})
            entry.update(difference=iv.to_dict(), n_paired=n, verdict=claim_verdict(rel, iv),
                         prompts_needed=prompts_needed(iv, n_prompts))
        claims.append(entry)
    return {
        "statistics": {"n_boot": cfg.n_boot, "level": cfg.level, "scheme": cfg.scheme, "seed": cfg.seed,
                       "n_units": len(units), "n_prompts": len({p for p, _ in units})},
        "runs": out_runs,
        "differences": diffs,
        "claims": claims,
    }


# --------------------------------------------------------------------------------------------------------------
# markdown
# --------------------------------------------------------------------------------------------------------------


def fmt_iv(d: dict | None, nd: int = 2) -> str:
    if not d or d.get("estimate") is None:
        return "-"
    if d.get("lo") is None:
        return f"{d['estimate']:.{nd}f}"
    return f"{d['estimate']:.{nd}f} [{d['lo']:.{nd}f}, {d['hi']:.{nd}f}]"


def fmt_spread(sp: dict) -> str:
    if sp.get("std") is None:
        return "-"
    return f"sd {sp['std']:.2f} ({sp['min']:.2f}-{sp['max']:.2f})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|", *("| " + " | ".join(r) + " |" for r in rows)]


def render_markdown(result: dict, protocol: str, note: str, mechanism: dict[str, dict] | None = None) -> str:
    runs, st = result["runs"], result["statistics"]
    pct = int(round(100 * st["level"]))
    how = (f"{pct}% percentile bootstrap intervals, {st['n_boot']} replicates (seed {st['seed']}), resampling unit "
           f"`{st['scheme']}` over {st['n_prompts']} prompts / {st['n_units']} videos (evaluation/statistics.py); "
           "paired differences on the same resamples, by (prompt, sampling seed); an interval that includes zero "
           "is reported as no difference.")
    md = [f"# Controlled comparison ({protocol} judge)", "", f"_{note}_", "", f"_{how}_", ""]

    md += [f"## Table 1 ({protocol}): TA / MQ with {pct}% intervals", ""]
    rows = []
    for name, r in runs.items():
        m = r["metrics"]
        rows.append([r["label"], fmt_iv(m["TA"]), fmt_spread(m["TA"]["spread"]), fmt_iv(m["MQ"]),
                     fmt_spread(m["MQ"]["spread"]), str(r["n_videos"]), ", ".join(map(str, r["train_seeds"])) or "-"])
    md += _table(["Method", "TA mean [CI]", "TA train-seed spread", "MQ mean [CI]", "MQ train-seed spread", "videos",
                  "training seeds"], rows) + [""]

    ops = table3_rows(list(runs), MAIN_RUN.name)
    if ops:
        md += [f"## Table 3 ({protocol}): pair-routing operator ablation", ""]
        md += _table(["Variant", "TA mean [CI]", "MQ mean [CI]"],
                     [[runs[x]["label"], fmt_iv(runs[x]["metrics"]["TA"]), fmt_iv(runs[x]["metrics"]["MQ"])] for x in ops]) + [""]

    for num, group, dims in ((5, "TA", TA_DIMS), (6, "MQ", MQ_DIMS)):
        md += [f"## Table {num} ({protocol}): per-dimension {group} with {pct}% intervals", ""]
        md += _table(["Method"] + [SHORT[d] for d in dims] + ["Avg"],
                     [[r["label"]] + [fmt_iv(r["metrics"][d]) for d in dims] + [fmt_iv(r["metrics"][group])] for r in runs.values()]) + [""]

    for ref, per_run in result["differences"].items():
        md += [f"## Paired differences against {label(ref)}", ""]
        rows = []
        for name, d in per_run.items():
            rows.append([label(name), fmt_iv(d["TA"]), d["TA"]["verdict"], fmt_iv(d["MQ"]), d["MQ"]["verdict"], str(d["TA"]["n_paired"])])
        md += _table(["Method", "ΔTA [CI]", "TA", "ΔMQ [CI]", "MQ", "paired videos"], rows) + [""]

    md += ["## The paper's orderings at this scale", ""]
    rows = []
    for c in result["claims"]:
        if c["verdict"] == "not run":
            rows.append([c["claim"], "-", "not run (" + ", ".join(c["missing"]) + ")", "-"])
        else:
            need = "" if c["prompts_needed"] is None else f"~{c['prompts_needed']} prompts"
            rows.append([c["claim"], fmt_iv(c["difference"]), c["verdict"], need or "-"])
    md += _table(["Claim", "difference [CI]", "verdict", "needed to tell (if the difference held)"], rows) + [""]

    if mechanism:
        md += mechanism_markdown(mechanism)
    return "\n".join(md) + "\n"


def mechanism_markdown(mechanism: dict[str, dict]) -> list[str]:
    """Tables of the mechanism readouts (evaluation/mechanism.py), one row per run and feature kind."""
    md = ["## Mechanism: relational error |S_p - S_y| of the hook-layer tokens on held-out clips", ""]
    first = next(iter(mechanism.values()))
    md += [f"_{first.get('note', '')}_", ""]
    before = mechanism.get(BASE, {}).get("features", {}).get("raw", {}).get("all")  # the untrained DiT
    rows = []
    for run, m in mechanism.items():
        for kind, f in m["features"].items():
            a = f["all"]
            moved = "-"
            if kind == "raw" and before is not None and run != BASE:
                moved = " / ".join("-" if a[p]["estimate"] is None or before[p]["estimate"] is None
                                   else f"{a[p]['estimate'] - before[p]['estimate']:+.3f}" for p in ("fg_fg", "fg_bg", "bg_bg"))
            rows.append([label(run), kind, fmt_iv(a["total"], 3), fmt_iv(a["fg_fg"], 3), fmt_iv(a["fg_bg"], 3), fmt_iv(a["bg_bg"], 3),
                         fmt_iv(f["spatial"]["total"], 3), fmt_iv(f["temporal"]["total"], 3), moved])
    md += _table(["Run", "features", "all pairs", "FG-FG", "FG-BG", "BG-BG", "within-frame", "cross-frame",
                  "raw change vs base (FG-FG / FG-BG / BG-BG)"], rows) + [""]
    budget = next((m["budget"] for m in mechanism.values() if m.get("budget")), None)
    if budget:
        md += ["Pair-budget shares each operator assigns under the aligner's saliency on the same clips "
               "(share of the summed pair weight; FG from the ground-truth masks):", ""]
        md += _table(["operator", "FG-FG", "FG-BG", "BG-BG"],
                     [[op, *(f"{b['shares'][k]:.3f}" for k in ("fg_fg", "fg_bg", "bg_bg"))] for op, b in budget.items()]) + [""]
    return md


# --------------------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------------------


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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
        est = np.array([np.nan if m[d]["estimate"] is None else m[d]["estimate"] for d in dims])
        lo = np.array([np.nan if m[d]["lo"] is None else m[d]["lo"] for d in dims])
        hi = np.array([np.nan if m[d]["hi"] is None else m[d]["hi"] for d in dims])
        err = np.nan_to_num(np.stack([est - lo, hi - est]), nan=0.0)
        ax.bar(x + i * width - 0.4 + width / 2, est, width, yerr=err, capsize=1.5, label=label(r), error_kw={"lw": 0.7})
    finish_dim_bars(plt, fig, ax, dims, path, title, ymax=5.4)  # room above 5 for the error bars


def plot_operator_heatmap(result: dict, path: Path, title: str) -> None:
    """Method x routing operator, TA and MQ: the estimate and its interval in each cell."""
    plt = _plt()
    methods = ["Pretrained", "SFT", "VideoREPA", "MoAlign", "SARA"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    im = None
    for ax, group in zip(axes, ("TA", "MQ")):
        grid = np.full((len(methods), len(OPERATORS)), np.nan)
        text: dict[tuple[int, int], str] = {}
        for run, (method, op) in METHOD_OP.items():
            r = result["runs"].get(run)
            if r and r["metrics"][group]["estimate"] is not None:
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


def write_qualitative(videos: dict[str, dict[tuple[str, int], str]], out: Path, n_frames: int) -> list[Path]:
    """A PNG per prompt: every run's video of the prompt's first sampling seed, side by side over time."""
    from sara.data.video_io import read_video, save_png

    out.mkdir(parents=True, exist_ok=True)
    prompts = sorted({p for vids in videos.values() for p, _ in vids})
    written = []
    for prompt in prompts:
        rows = []
        for run, vids in videos.items():
            seeds = sorted(s for p, s in vids if p == prompt)
            if seeds:
                frames, _ = read_video(vids[(prompt, seeds[0])])
                rows.append((label(run)[:20], frames))
        if rows:
            path = out / f"{prompt}.png"
            save_png(path, qualitative_grid(rows, n_frames, f"{prompt} (sampling seed {min(s for v in videos.values() for p, s in v if p == prompt)})"))
            written.append(path)
    return written


# --------------------------------------------------------------------------------------------------------------
# everything
# --------------------------------------------------------------------------------------------------------------


def read_mechanism(mechanism_dir: Path, runs: Iterable[str]) -> dict[str, dict]:
    """The mechanism readouts `<dir>/<run>.json` of the compared runs that have one."""
    out = {}
    for run in runs:
        f = mechanism_dir / f"{run}.json"
        if f.is_file():
            out[run] = json.loads(f.read_text())
    return out


def build_comparison(
    rubric_dir: Path,
    out: Path,
    *,
    runs: list[str] | None,
    references: list[str],
    protocol: str,
    cfg: StatsConfig,
    default_train_seed: int,
    note: str,
    grid_frames: int = 8,
    mechanism_dir: Path | None = None,
    log=print,
) -> dict[str, Any]:
    """Read the rubric records, compute the comparison and write comparison.md, comparison.json and figures/."""
    found = discover_runs(rubric_dir, default_train_seed)
    if runs is not None:
        missing = [r for r in runs if r not in found]
        if missing:
            raise FileNotFoundError(f"comparison.runs: no rubric records for {', '.join(missing)} under {rubric_dir}")
        found = {r: found[r] for r in runs}
    scores, videos = {}, {}
    for run, seed_dirs in found.items():
        scores[run], videos[run] = load_run(run, seed_dirs, protocol)
        log(f"[compare] {run:10s} training seeds {list(seed_dirs)} videos {len(scores[run].units)}")
    result = compare(scores, references, cfg)
    result.update(protocol=protocol, note=note, rubric_dir=str(rubric_dir))
    mech = read_mechanism(mechanism_dir, found) if mechanism_dir is not None else {}
    if mech:
        result["mechanism"] = mech
    out.mkdir(parents=True, exist_ok=True)
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    plot_dims(result, figs / f"dims_{protocol}.png", f"Per-dimension {protocol} rubric scores with {int(100 * cfg.level)}% intervals")
    plot_operator_heatmap(result, figs / f"operator_heatmap_{protocol}.png", f"Method x routing operator ({protocol} judge)")
    write_qualitative(videos, figs / "qualitative", grid_frames)
    (out / "comparison.json").write_text(json.dumps(result, indent=2))
    (out / "comparison.md").write_text(render_markdown(result, protocol, note, mech))
    return result
