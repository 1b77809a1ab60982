"""The committed lab results (docs/lab/) carry the fields the lab issues ask for, and their figures exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

LAB = Path(__file__).resolve().parents[1] / "docs" / "lab"


def test_base_json_has_every_required_field():
    base = json.loads((LAB / "base.json").read_text())
    for key in ("vae_psnr_db", "vfm_probe", "base_ta_mean", "base_mq_mean", "random_ta_mean", "gpu_minutes"):
        assert base.get(key) is not None, key
    assert {"pretrained", "random_init"} <= set(base["vfm_probe"])
    assert base["stage_seconds"] and all(v > 0 for v in base["stage_seconds"].values())


def test_comparison_json_has_means_intervals_videos_seeds_and_differences():
    cmp_ = json.loads((LAB / "comparison.json").read_text())
    assert {"sft", "videorepa", "base"} <= set(cmp_["runs"])
    for run, r in cmp_["runs"].items():
        for metric in ("TA", "MQ"):
            m = r["metrics"][metric]
            assert m["lo"] <= m["estimate"] <= m["hi"], (run, metric)
        assert r["n_videos"] > 0
    assert cmp_["runs"]["sft"]["train_seeds"]
    assert cmp_["differences"]


def test_every_figure_the_lab_pages_link_exists():
    for page in ("base.md", "comparison.md"):
        for link in re.findall(r"\]\(([^)]+\.(?:png|json))\)", (LAB / page).read_text()):
            assert (LAB / link).exists(), f"{page} links {link}"
