"""Official VBench score formulas, checked against the paper's Table 7 -> Table 2 and Table 8 -> Table 2 numbers."""

from __future__ import annotations

import pytest

from evaluation.vbench.scores import VB2_CATEGORIES, normalize_vb1, vb1_scores, vb2_scores
from evaluation.vbench.weights import QUALITY_DIMS, SEMANTIC_DIMS

# Table 7: raw Semantic per task (scene, overall_consistency, appearance_style, object_class,
# spatial_relationship, human_action, temporal_style, color, multiple_objects) -> Semantic (Avg.)
TABLE7 = {
    "Pretrained Wan2.2": ([0.3401, 0.2524, 0.2101, 0.8560, 0.7631, 0.8800, 0.2315, 0.9012, 0.6677], 0.7274),
    "SFT": ([0.3481, 0.2436, 0.2048, 0.8449, 0.8074, 0.8100, 0.2187, 0.9100, 0.7134], 0.7217),
    "VideoREPA": ([0.2943, 0.2511, 0.2125, 0.8829, 0.7699, 0.8900, 0.2319, 0.8957, 0.7027], 0.7299),
    "MoAlign": ([0.3583, 0.2476, 0.2105, 0.8275, 0.8108, 0.8500, 0.2232, 0.8870, 0.7248], 0.7295),
    "SARA": ([0.3583, 0.2487, 0.2071, 0.8758, 0.7710, 0.8400, 0.2298, 0.9313, 0.7576], 0.7389),
}
T7_ORDER = ["scene", "overall_consistency", "appearance_style", "object_class", "spatial_relationship",
            "human_action", "temporal_style", "color", "multiple_objects"]

# Table 8 (%) in VB2_CATEGORIES order per category -> Table 2 (Creativity, Commonsense, Controllability,
# Human Fidelity, Physics, Final)
TABLE8 = {
    "Pretrained Wan2.2": {
        "Composition": 45.69, "Diversity": 59.43, "Instance_Preservation": 86.55, "Motion_Rationality": 30.46,
        "Human_Anatomy": 90.56, "Human_Clothes": 86.67, "Human_Identity": 80.88, "Camera_Motion": 15.79,
        "Complex_Landscape": 18.44, "Complex_Plot": 11.56, "Dynamic_Attribute": 38.46,
        "Dynamic_Spatial_Relationship": 41.55, "Human_Interaction": 63.67, "Motion_Order_Understanding": 27.36,
        "Material": 43.24, "Mechanics": 53.54, "Multi-View_Consistency": 38.99, "Thermotics": 51.80,
    },
    "SARA": {
        "Composition": 50.81, "Diversity": 59.95, "Instance_Preservation": 88.89, "Motion_Rationality": 33.33,
        "Human_Anatomy": 89.05, "Human_Clothes": 85.78, "Human_Identity": 80.38, "Camera_Motion": 19.14,
        "Complex_Landscape": 15.78, "Complex_Plot": 11.07, "Dynamic_Attribute": 46.89,
        "Dynamic_Spatial_Relationship": 37.20, "Human_Interaction": 59.67, "Motion_Order_Understanding": 26.60,
        "Material": 47.89, "Mechanics": 48.51, "Multi-View_Consistency": 44.17, "Thermotics": 53.44,
    },
}
TABLE2_VB2 = {
    "Pretrained Wan2.2": {"Creativity": 52.56, "Commonsense": 58.50, "Controllability": 30.98, "Human Fidelity": 86.04, "Physics": 46.89, "Final": 55.00},
    "SARA": {"Creativity": 55.38, "Commonsense": 61.11, "Controllability": 30.91, "Human Fidelity": 85.07, "Physics": 48.50, "Final": 56.19},
}


@pytest.mark.parametrize("method", list(TABLE7))
def test_vb1_semantic_reproduces_table7(method):
    raw, semantic = TABLE7[method]
    out = vb1_scores(dict(zip(T7_ORDER, raw)))
    assert out["Semantic"]["score"] == pytest.approx(semantic, abs=1e-4)
    assert out["Semantic"]["partial"] is False and out["Semantic"]["n_dims"] == 9
    # the quality dims are absent: Quality and Total have no number, and say so
    assert out["Quality"] == {"score": None, "partial": True, "n_dims": 0, "missing": list(QUALITY_DIMS)}
    assert out["Total"]["score"] is None and out["Total"]["partial"] is True


def test_semantic_is_the_mean_of_the_normalised_scores_not_of_the_raw_ones(monkeypatch):
    """vb1_scores normalises every dimension first: without that step the same code misses Table 7 by > 0.1."""
    from evaluation.vbench import scores

    raw, semantic = TABLE7["Pretrained Wan2.2"]
    by_dim = dict(zip(T7_ORDER, raw))
    out = vb1_scores(by_dim)
    assert out["Semantic"]["score"] == pytest.approx(sum(out["normalized"][d] for d in T7_ORDER) / 9, abs=1e-9)
    assert out["normalized"]["scene"] == pytest.approx(by_dim["scene"] / 0.8222)  # (raw - 0) / (0.8222 - 0)
    monkeypatch.setattr(scores, "normalize_vb1", lambda dim, value: value)  # skip the normalisation
    unnormalised = vb1_scores(by_dim)["Semantic"]["score"]
    assert unnormalised == pytest.approx(sum(raw) / 9) and abs(unnormalised - semantic) > 0.1


@pytest.mark.parametrize("method", list(TABLE8))
def test_vb2_categories_and_final_reproduce_table2(method):
    out = vb2_scores(TABLE8[method])
    for cat in VB2_CATEGORIES:
        assert out["categories"][cat]["score"] == pytest.approx(TABLE2_VB2[method][cat], abs=0.006)
    # Table 8 entries are rounded to 0.01, so the recomputed Final can differ by up to ~0.01
    assert out["Final"]["score"] == pytest.approx(TABLE2_VB2[method]["Final"], abs=0.01)
    assert out["Final"]["partial"] is False


def test_vb1_total_matches_the_official_formula_on_a_full_set():
    raw = {d: 0.5 + 0.02 * i for i, d in enumerate(QUALITY_DIMS + SEMANTIC_DIMS)}
    raw["temporal_flickering"] = 0.97
    raw["motion_smoothness"] = 0.98
    out = vb1_scores(raw)
    lo_hi = {"subject_consistency": (0.1462, 1), "background_consistency": (0.2615, 1), "temporal_flickering": (0.6293, 1),
             "motion_smoothness": (0.706, 0.9975), "scene": (0, 0.8222), "appearance_style": (0.0009, 0.2855),
             "temporal_style": (0, 0.364), "overall_consistency": (0, 0.364)}
    norm = {d: (v - lo_hi.get(d, (0, 1))[0]) / (lo_hi.get(d, (0, 1))[1] - lo_hi.get(d, (0, 1))[0]) for d, v in raw.items()}
    quality = (sum(norm[d] for d in QUALITY_DIMS if d != "dynamic_degree") + 0.5 * norm["dynamic_degree"]) / 6.5
    semantic = sum(norm[d] for d in SEMANTIC_DIMS) / 9
    assert out["Quality"]["score"] == pytest.approx(quality)
    assert out["Semantic"]["score"] == pytest.approx(semantic)
    assert out["Total"]["score"] == pytest.approx((4 * quality + semantic) / 5)
    assert out["Total"]["partial"] is False


def test_partial_results_are_marked_and_never_zero_filled():
    out = vb1_scores({"temporal_flickering": 0.98, "subject_consistency": None})
    assert out["Quality"]["score"] == pytest.approx(normalize_vb1("temporal_flickering", 0.98))
    assert out["Quality"]["partial"] is True and out["Quality"]["n_dims"] == 1
    assert "subject_consistency" in out["Quality"]["missing"]
    zero_filled = normalize_vb1("temporal_flickering", 0.98) / 6.5
    assert out["Quality"]["score"] != pytest.approx(zero_filled)
    v2 = vb2_scores({"Human_Anatomy": 90.0})
    assert v2["categories"]["Human Fidelity"] == {"score": 90.0, "partial": True, "n_dims": 1, "missing": ["Human_Clothes", "Human_Identity"]}
    assert v2["Final"]["score"] == 90.0 and v2["Final"]["partial"] is True and "Physics" in v2["Final"]["missing"]


def test_unknown_dimensions_are_refused():
    with pytest.raises(KeyError, match="unknown VBench-1.0 dimension"):
        vb1_scores({"flicker": 0.9})
    with pytest.raises(KeyError, match="unknown VBench-2.0 dimension"):
        vb2_scores({"Physics": 0.9})
