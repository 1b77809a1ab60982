"""The rubric's per-run summaries side by side: which runs have one (in the paper's row order) and the merged view
the report reads. Light on purpose (json and the run vocabulary): `sara report` imports it, not the judges."""

from __future__ import annotations

import json
from pathlib import Path

from sara.runs import in_row_order


def merge_runs(summaries: list[dict]) -> dict:
    """Per-run summaries -> the report's view: `{"runs": [...], "protocols": {p: {"note", "judges", "runs": {run: result}}}}`."""
    protocols: dict[str, dict] = {}
    for one in summaries:
        for name, block in one["protocols"].items():
            merged = protocols.setdefault(name, {"note": block["note"], "judges": block["judges"], "runs": {}})
            merged["runs"][one["run"]] = block["result"]
    first = summaries[0] if summaries else {}
    return {"prompt_set": first.get("prompt_set"), "scale": first.get("scale"), "runs": [s["run"] for s in summaries],
            "protocols": protocols}


def read_run_summaries(rubric_dir: Path) -> list[dict]:
    """Every `<rubric_dir>/<run>/summary.json`, oracle first, then in the paper's row order."""
    runs = list_runs_with(rubric_dir, "summary.json")
    return [json.loads((rubric_dir / run / "summary.json").read_text()) for run in runs]


def list_runs_with(folder: Path, marker: str) -> list[str]:
    """Sub-folders of `folder` holding `marker`, oracle first, then in the paper's row order."""
    found = [p.name for p in folder.iterdir()  # `.<run>.tmp<pid>`: a stage still writing that run, not a run
             if (p / marker).is_file() and not p.name.startswith(".")] if folder.is_dir() else []
    return in_row_order(found)
