"""Official VBench score formulas, with missing dimensions reported as missing (never zero-filled).

VBench-1.0 (the official `cal_final_score` script): each dimension is min-max normalised with the constants
below and multiplied by its weight (1, except dynamic_degree 0.5);
    Quality  = sum_quality(norm * weight) / sum_quality(weight)   (= / 6.5 with all 7 dimensions)
    Semantic = sum_semantic(norm * weight) / sum_semantic(weight) (= mean of the 9 semantic dimensions)
    Total    = (4 * Quality + 1 * Semantic) / 5
VBench-2.0: each of the 5 categories is the mean of its dimensions; Final = mean of the 5 categories.

The official scripts count a missing dimension as 0. Here an aggregate over fewer dimensions than its full set
is computed over the present ones only and marked `partial` with the missing names, so a partial number can
never be mistaken for a full one.
"""

from __future__ import annotations

from collections.abc import Mapping

from evaluation.vbench.weights import QUALITY_DIMS, SEMANTIC_DIMS

# (min, max) of each VBench-1.0 dimension's raw score, from the official normalisation table
NORMALIZE: dict[str, tuple[float, float]] = {
    "subject_consistency": (0.1462, 1.0),
    "background_consistency": (0.2615, 1.0),
    "temporal_flickering": (0.6293, 1.0),
    "motion_smoothness": (0.706, 0.9975),
    "dynamic_degree": (0.0, 1.0),
    "aesthetic_quality": (0.0, 1.0),
    "imaging_quality": (0.0, 1.0),
    "object_class": (0.0, 1.0),
    "multiple_objects": (0.0, 1.0),
    "human_action": (0.0, 1.0),
    "color": (0.0, 1.0),
    "spatial_relationship": (0.0, 1.0),
    "scene": (0.0, 0.8222),
    "appearance_style": (0.0009, 0.2855),
    "temporal_style": (0.0, 0.364),
    "overall_consistency": (0.0, 0.364),
}
WEIGHT: dict[str, float] = {d: (0.5 if d == "dynamic_degree" else 1.0) for d in NORMALIZE}
QUALITY_WEIGHT, SEMANTIC_WEIGHT = 4.0, 1.0

VB2_CATEGORIES: dict[str, tuple[str, ...]] = {
    "Creativity": ("Composition", "Diversity"),
    "Commonsense": ("Instance_Preservation", "Motion_Rationality"),
    "Controllability": (
        "Camera_Motion",
        "Complex_Landscape",
        "Complex_Plot",
        "Dynamic_Attribute",
        "Dynamic_Spatial_Relationship",
        "Human_Interaction",
        "Motion_Order_Understanding",
    ),
    "Human Fidelity": ("Human_Anatomy", "Human_Clothes", "Human_Identity"),
    "Physics": ("Material", "Mechanics", "Multi-View_Consistency", "Thermotics"),
}
VB2_DIMS: tuple[str, ...] = tuple(d for dims in VB2_CATEGORIES.values() for d in dims)


def normalize_vb1(dim: str, raw: float) -> float:
    """(raw - min) / (max - min) * weight: the official per-dimension VBench-1.0 normalisation."""
    lo, hi = NORMALIZE[dim]
    return (float(raw) - lo) / (hi - lo) * WEIGHT[dim]


def _weighted(raw: Mapping[str, float], dims: tuple[str, ...]) -> dict:
    present = [d for d in dims if raw.get(d) is not None]
    missing = [d for d in dims if raw.get(d) is None]
    if not present:
        return {"score": None, "partial": True, "n_dims": 0, "missing": missing}
    num = sum(normalize_vb1(d, raw[d]) for d in present)
    den = sum(WEIGHT[d] for d in present)
    return {"score": num / den, "partial": bool(missing), "n_dims": len(present), "missing": missing}


def vb1_scores(raw: Mapping[str, float | None]) -> dict:
    """VBench-1.0 Quality / Semantic / Total from raw per-dimension scores (None or absent = missing)."""
    unknown = [d for d in raw if d not in NORMALIZE]
    if unknown:
        raise KeyError(f"unknown VBench-1.0 dimension(s): {unknown}")
    quality = _weighted(raw, QUALITY_DIMS)
    semantic = _weighted(raw, SEMANTIC_DIMS)
    if quality["score"] is None or semantic["score"] is None:
        total = {"score": None, "partial": True, "missing": quality["missing"] + semantic["missing"]}
    else:
        score = (QUALITY_WEIGHT * quality["score"] + SEMANTIC_WEIGHT * semantic["score"]) / (QUALITY_WEIGHT + SEMANTIC_WEIGHT)
        total = {"score": score, "partial": quality["partial"] or semantic["partial"], "missing": quality["missing"] + semantic["missing"]}
    normalized = {d: normalize_vb1(d, v) for d, v in raw.items() if v is not None}
    return {"normalized": normalized, "Quality": quality, "Semantic": semantic, "Total": total}


def vb2_scores(raw: Mapping[str, float | None]) -> dict:
    """VBench-2.0 category means and Final (mean of the 5 categories) from per-dimension scores."""
    unknown = [d for d in raw if d not in VB2_DIMS]
    if unknown:
        raise KeyError(f"unknown VBench-2.0 dimension(s): {unknown}; known: {', '.join(VB2_DIMS)}")
    cats: dict[str, dict] = {}
    for cat, dims in VB2_CATEGORIES.items():
        present = [d for d in dims if raw.get(d) is not None]
        missing = [d for d in dims if raw.get(d) is None]
        score = sum(float(raw[d]) for d in present) / len(present) if present else None
        cats[cat] = {"score": score, "partial": bool(missing), "n_dims": len(present), "missing": missing}
    present_cats = [c for c, v in cats.items() if v["score"] is not None]
    final_missing = [c for c, v in cats.items() if v["partial"]]
    final = {
        "score": sum(cats[c]["score"] for c in present_cats) / len(present_cats) if present_cats else None,
        "partial": bool(final_missing),
        "missing": final_missing,
    }
    return {"categories": cats, "Final": final}
