"""Paper-style tables and plots from our own runs: Tables 1, 2, 3, 5 and 6, as markdown and CSV, plus PNG plots.

Inputs: `rubric.out_dir/summary.json` (per protocol: the grounded judge and/or the VLM judges) and
`vbench.out_dir/summary.json`. Every table states which judges (or benchmark dimensions) and which scale
produced it; rubric tables are written once per protocol and never mix them. Missing numbers are shown as
"-" (and VBench aggregates over fewer dimensions than the full set are marked "partial"), never as 0.

Rows follow the paper: Real video (oracle), Pretrained Wan2.2 (`base`), SFT, VideoREPA, MoAlign, SARA
(`report.main_run`, the OR operator by default); Table 3 compares the routing operators.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from evaluation.rubric.dimensions import MQ_DIMS, SHORT, TA_DIMS
from evaluation.vbench.scores import VB2_CATEGORIES
from sara.runs import ALL_RUNS, BASE, DAG_RUNS, DEFAULT_TARGET, METHODS, ORACLE, ROUTING_OPS, ROW_LABEL, Run

RUN_LABEL = ROW_LABEL  # Real video (oracle), Pretrained Wan2.2, SFT, ..., SARA (AND): the run vocabulary's labels
# method x routing-operator grid of the heatmap: "no TRD" (no auxiliary loss), "none" (constant weights)
OPERATORS = ["no TRD", *ROUTING_OPS]
# the paper's heatmap is on the default TRD target: a run on another target would land in the same cell
METHOD_OP = {BASE: ("Pretrained", "no TRD"), **{r.name: r.report_cell for r in ALL_RUNS if r.target == DEFAULT_TARGET}}
HEATMAP_ROWS = ["Pretrained", *(m.label for m in METHODS.values())]


def label(run: str, main_run: str) -> str:
    return "SARA" if run == main_run else RUN_LABEL.get(run, run)


def fmt(x: float | None, nd: int = 4) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


class Table:
    """A titled table with a provenance note; renders to markdown and CSV."""

    def __init__(self, name: str, title: str, note: str, header: list[str], rows: list[list[str]]) -> None:
        self.name, self.title, self.note, self.header, self.rows = name, title, note, header, rows

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", f"_{self.note}_", "", "| " + " | ".join(self.header) + " |",
                 "|" + "|".join("---" for _ in self.header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(self.header)
        w.writerows(self.rows)
        return buf.getvalue()


def main_rows(runs: list[str], main_run: str) -> list[str]:
    """Table 1/2/5/6 rows in paper order: oracle, base, each DAG run without routing (sft, videorepa, moalign),
    the main SARA run."""
    order = [ORACLE, BASE, *(r.name for r in DAG_RUNS if not r.uses_saliency), main_run]
    return [r for r in order if r in runs]


def operator_rows(runs: list[str], main_run: str) -> list[str]:
    """The SARA runs beside the main one, in Table 3's order (XOR, AND, none beside the OR run: the paper's)."""
    order = [r.name for r in reversed(ALL_RUNS) if r.uses_saliency and r.target == DEFAULT_TARGET]
    return [r for r in order if r in runs and r != main_run]


def table3_rows(runs: list[str], main_run: str) -> list[str]:
    """Table 3: the main SARA run, the other operators, then the motion-subspace method (MoAlign)."""
    flow = [r.name for r in DAG_RUNS if r.spec.flow]
    return [r for r in dict.fromkeys([main_run, *operator_rows(runs, main_run), *flow]) if r in runs]


def rubric_tables(proto: str, block: dict, main_run: str, scale_note: str) -> list[Table]:
    runs = block["runs"]
    note = f"{block['note']}. {scale_note}"
    rows = []
    for r in main_rows(list(runs), main_run):
        res = runs[r]
        rows.append([label(r, main_run), fmt(res["TA"]["mean"]), fmt(res["TA"]["vote"]), fmt(res["MQ"]["mean"]),
                     fmt(res["MQ"]["vote"]), str(res["n_videos"]), str(res["TA"]["n_valid"] + res["MQ"]["n_valid"])])
    t1 = Table(f"table1_rubric_{proto}", f"Table 1 ({proto}): rubric TA / MQ, mean and vote", note,
               ["Method", "TA mean", "TA vote", "MQ mean", "MQ vote", "videos", "n_valid"], rows)
    rows3 = []
    for r in table3_rows(list(runs), main_run):
        res = runs[r]
        name = {main_run: "SARA (full, OR)" if main_run == "sara-or" else f"SARA (full, {main_run})"}.get(r, RUN_LABEL.get(r, r))
        rows3.append([name, fmt(res["TA"]["mean"]), fmt(res["TA"]["vote"]), fmt(res["MQ"]["mean"]), fmt(res["MQ"]["vote"])])
    t3 = Table(f"table3_operators_{proto}", f"Table 3 ({proto}): pair-routing operator ablation", note,
               ["Variant", "TA mean", "TA vote", "MQ mean", "MQ vote"], rows3)
    out = [t1, t3]
    for num, group, dims in ((5, "TA", TA_DIMS), (6, "MQ", MQ_DIMS)):
        rows_d = []
        for r in main_rows(list(runs), main_run) + operator_rows(list(runs), main_run):
            res = runs[r]
            rows_d.append([label(r, main_run)] + [fmt(res["dims"][d]["mean"], 3) for d in dims] + [fmt(res[group]["mean"], 3)])
        out.append(Table(f"table{num}_{group.lower()}_dims_{proto}", f"Table {num} ({proto}): per-dimension {group} (mean over judges)",
                         note, ["Method"] + [SHORT[d] for d in dims] + ["Avg"], rows_d))
    return out


def vbench_table(summary: dict, main_run: str, scale_note: str) -> Table | None:
    if not summary or not summary.get("enabled") or not summary.get("runs"):
        return None
    runs = summary["runs"]
    dims1 = sorted({d for r in runs.values() for d in r["vbench1"]["raw"]} | {d for r in runs.values() for d in r["vbench1"]["missing"]})
    have2 = any("vbench2" in r for r in runs.values())
    header = ["Method", "mode"] + [f"V1 {d} (raw)" for d in dims1] + ["V1 Quality", "V1 Semantic", "V1 Total"]
    if have2:
        header += [f"V2 {c}" for c in VB2_CATEGORIES] + ["V2 Final"]
    rows = []
    missing_notes = set()
    for r in main_rows(list(runs), main_run) + operator_rows(list(runs), main_run):
        v1 = runs[r]["vbench1"]
        row = [label(r, main_run), runs[r]["mode"]] + [fmt(v1["raw"].get(d)) for d in dims1]
        for agg in ("Quality", "Semantic", "Total"):
            a = v1["scores"][agg]
            cell = fmt(None if a["score"] is None else 100 * a["score"], 2)
            if a["score"] is not None and a["partial"]:
                n_all = {"Quality": 7, "Semantic": 9}.get(agg)
                cell += f" (partial {a.get('n_dims', '?')}/{n_all})" if n_all else " (partial)"
            row.append(cell)
        for d, reasons in v1["missing"].items():
            missing_notes.add(f"{d}: {reasons[0][:160]}")
        if have2:
            v2 = runs[r].get("vbench2")
            for c in VB2_CATEGORIES:
                x = v2["scores"]["categories"][c] if v2 else None
                row.append("-" if not x or x["score"] is None else fmt(100 * x["score"] if x["score"] <= 1 else x["score"], 2) + (" (partial)" if x["partial"] else ""))
            f = v2["scores"]["Final"] if v2 else None
            row.append("-" if not f or f["score"] is None else fmt(100 * f["score"] if f["score"] <= 1 else f["score"], 2) + (" (partial)" if f["partial"] else ""))
        rows.append(row)
    note = ("VBench-1.0 (vbench 0.1.5, official normalisation; Quality/Semantic/Total in %, computed over the "
            "dimensions that ran and marked partial otherwise, never zero-filled); VBench-2.0: "
            f"{summary.get('vbench2', 'off')}. Missing: " + ("; ".join(sorted(missing_notes)) or "none") + f". {scale_note}")
    return Table("table2_vbench", "Table 2: VBench", note, header, rows)


def _plot_dims(block: dict, main_run: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    named_ops = [r for r in operator_rows(list(block["runs"]), main_run) if Run.parse(r).op != "none"]
    runs = main_rows(list(block["runs"]), main_run) + named_ops
    dims = list(TA_DIMS) + list(MQ_DIMS)
    x = np.arange(len(dims))
    width = 0.8 / max(1, len(runs))
    fig, ax = plt.subplots(figsize=(14, 4.5))
    for i, r in enumerate(runs):
        vals = [block["runs"][r]["dims"][d]["mean"] for d in dims]
        ax.bar(x + i * width - 0.4 + width / 2, [np.nan if v is None else v for v in vals], width, label=label(r, main_run))
    finish_dim_bars(plt, fig, ax, dims, path, title, ymax=5.2)


def finish_dim_bars(plt, fig, ax, dims: list[str], path: Path, title: str, ymax: float) -> None:
    """Label, divide (TA dimensions | MQ dimensions) and save a per-dimension bar chart (report and comparison).
    The y axis starts at 0, so a dimension scored 1 still shows a bar."""
    ax.set_xticks(range(len(dims)), [SHORT[d] for d in dims])
    ax.axvline(len(TA_DIMS) - 0.5, color="grey", lw=0.8)
    ax.set_ylim(0, ymax)
    ax.set_ylabel("score (1-5)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_heatmap(block: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = HEATMAP_ROWS
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, group in zip(axes, ("TA", "MQ")):
        grid = np.full((len(methods), len(OPERATORS)), np.nan)
        for run, (m, op) in METHOD_OP.items():
            res = block["runs"].get(run)
            if res and res[group]["mean"] is not None:
                grid[methods.index(m), OPERATORS.index(op)] = res[group]["mean"]
        im = ax.imshow(grid, cmap="viridis", vmin=1, vmax=5)
        ax.set_xticks(range(len(OPERATORS)), OPERATORS)
        ax.set_yticks(range(len(methods)), methods)
        for i in range(len(methods)):
            for j in range(len(OPERATORS)):
                if not np.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", color="white", fontsize=8)
        ax.set_title(f"{group} mean", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    fig.suptitle(title, fontsize=9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def build_report(rubric: dict, vbench: dict, main_run: str, scale_note: str, out: Path, plots_dir: Path) -> dict[str, Any]:
    """Write report.md, one CSV per table, and the PNG plots; return the flat metrics dict."""
    out.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    tables: list[Table] = []
    metrics: dict[str, float] = {}
    for proto, block in rubric.get("protocols", {}).items():
        tables += rubric_tables(proto, block, main_run, scale_note)
        _plot_dims(block, main_run, plots_dir / f"rubric_dims_{proto}.png", f"Per-dimension rubric scores ({block['note'][:110]}...)")
        _plot_heatmap(block, plots_dir / f"operator_heatmap_{proto}.png", f"Method x routing operator ({proto} judge)")
        for run, res in block["runs"].items():
            for g in ("TA", "MQ"):
                for k in ("mean", "vote"):
                    if res[g][k] is not None:
                        metrics[f"rubric.{proto}.{run}.{g}_{k}"] = round(res[g][k], 4)
    vt = vbench_table(vbench, main_run, scale_note)
    if vt is not None:
        tables.insert(1, vt)
        for run, res in vbench["runs"].items():
            for agg in ("Quality", "Semantic", "Total"):
                a = res["vbench1"]["scores"][agg]
                if a["score"] is not None:
                    metrics[f"vbench1.{run}.{agg}{'_partial' if a['partial'] else ''}"] = round(a["score"], 6)
    md = ["# Evaluation report", "", f"_{scale_note}_", ""]
    for t in tables:
        md.append(t.markdown())
        (out / f"{t.name}.csv").write_text(t.csv())
    md.append("Plots: " + ", ".join(sorted(p.name for p in plots_dir.glob("*.png"))))
    (out / "report.md").write_text("\n".join(md) + "\n")
    return metrics
