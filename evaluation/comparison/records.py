"""Reading the comparison's inputs: the per-video rubric records of each run (and training seed), the mechanism
readouts, and how many subjects each prompt names. `video_scores` is the only function that knows the record format.

A run trained with several training seeds keeps one folder per seed: `<run>/` holds the seed `train.seed` of the
params, `<run>.seed<k>/` the training seed k (same layout).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from evaluation.rubric.dimensions import ALL_DIMS
from evaluation.statistics import RunScores
from sara.runs import row_rank

SEED_DIR = re.compile(r"^(?P<run>[a-z0-9@-]+)\.seed(?P<seed>\d+)$")
NOT_RECORDS = {"summary.json", "index.json"}


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


def subject_counts(prompts: Iterable) -> dict[str, int]:
    """{prompt id: how many subjects its caption names}: its person and object references (the scene is none), the
    paper's multi-subject axis, for the comparison's breakdown by subjects (numbers.by_subjects)."""
    return {p.id: sum(r.is_foreground for r in p.caption.structured_caption.english.references) for p in prompts}


def discover_runs(rubric_dir: Path, default_seed: int) -> dict[str, dict[int, Path]]:
    """{run: {training seed: folder}} for every folder of per-video records under `rubric_dir`, in row order."""
    found: dict[str, dict[int, Path]] = {}
    if not rubric_dir.is_dir():
        raise FileNotFoundError(f"rubric directory {rubric_dir} not found: run `sara rubric` first")
    # `.<run>.tmp<pid>`: a rubric stage still writing that run (sara.io.atomic_dir), not a run
    for folder in sorted(p for p in rubric_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
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


def read_mechanism(mechanism_dir: Path, runs: Iterable[str]) -> dict[str, dict]:
    """The mechanism readouts `<dir>/<run>.json` of the compared runs that have one."""
    out = {}
    for run in runs:
        f = mechanism_dir / f"{run}.json"
        if f.is_file():
            out[run] = json.loads(f.read_text())
    return out
