"""Mechanism readout (evaluation/mechanism.py): relational error split by FG/BG pairs, checked against a brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from evaluation.mechanism import budget_readout, relational_error_sums, summarise
from stage2_testlib import save_random_aligner


def brute_force(feats: torch.Tensor, target: torch.Tensor, fg: torch.Tensor) -> dict:
    """Materialised Grams: mean |S_p - S_y| per (scope, part) over ordered pairs a != b."""
    T, N, _ = feats.shape
    xp = F.normalize(feats.double().reshape(T * N, -1), dim=-1)
    xy = F.normalize(target.double().reshape(T * N, -1), dim=-1)
    err = (xp @ xp.T - xy @ xy.T).abs()  # (T*N, T*N)
    frame = torch.arange(T).repeat_interleave(N)
    f = fg.reshape(-1)
    not_self = ~torch.eye(T * N, dtype=torch.bool)
    scopes = {"spatial": frame[:, None] == frame[None, :], "temporal": frame[:, None] != frame[None, :]}
    parts = {"total": torch.ones_like(err, dtype=torch.bool), "fg_fg": f[:, None] & f[None, :],
             "fg_bg": f[:, None] ^ f[None, :], "bg_bg": ~f[:, None] & ~f[None, :]}
    return {s: {p: (float(err[m & pm & not_self].sum()), float((m & pm & not_self).sum())) for p, pm in parts.items()}
            for s, m in scopes.items()}


def clip(seed: int, T: int = 3, N: int = 16, d_f: int = 24, d_y: int = 8):
    g = torch.Generator().manual_seed(seed)
    feats, target = torch.randn(T, N, d_f, generator=g), torch.randn(T, N, d_y, generator=g)
    fg = torch.rand(T, N, generator=g) < 0.3
    return feats, target, fg


def test_matches_the_materialised_grams_with_different_widths():
    feats, target, fg = clip(0)
    got, ref = relational_error_sums(feats, target, fg), brute_force(feats, target, fg)
    for scope in ("spatial", "temporal"):
        for part in ("total", "fg_fg", "fg_bg", "bg_bg"):
            assert got[scope][part][1] == ref[scope][part][1], (scope, part)  # pair counts exactly
            assert got[scope][part][0] == pytest.approx(ref[scope][part][0], rel=1e-9, abs=1e-9), (scope, part)


def test_parts_partition_the_total():
    feats, target, fg = clip(1)
    got = relational_error_sums(feats, target, fg)
    for scope in ("spatial", "temporal"):
        parts = [got[scope][p] for p in ("fg_fg", "fg_bg", "bg_bg")]
        assert sum(n for n, _ in parts) == pytest.approx(got[scope]["total"][0], rel=1e-12)
        assert sum(c for _, c in parts) == got[scope]["total"][1]
    s = summarise([got, relational_error_sums(*clip(2))], n_boot=200)
    for scope in ("all", "spatial", "temporal"):
        tot = s[scope]["total"]
        weighted = sum(s[scope][p]["estimate"] * s[scope][p]["pairs"] for p in ("fg_fg", "fg_bg", "bg_bg"))
        assert weighted / tot["pairs"] == pytest.approx(tot["estimate"], abs=1e-5)  # pair-count weighted mean
        assert tot["lo"] <= tot["estimate"] <= tot["hi"]


def test_features_equal_to_the_target_give_zero_error():
    _, target, fg = clip(3)
    got = summarise([relational_error_sums(target * 3.0, target, fg)], n_boot=100)  # scale does not matter
    for scope in got.values():
        for part in scope.values():
            assert part["estimate"] == pytest.approx(0.0, abs=1e-12)


def test_an_all_background_clip_has_no_fg_pairs():
    feats, target, _ = clip(4)
    got = relational_error_sums(feats, target, torch.zeros(feats.shape[:2], dtype=torch.bool))
    assert got["spatial"]["fg_fg"] == (0.0, 0.0) and got["temporal"]["fg_bg"] == (0.0, 0.0)
    s = summarise([got], n_boot=100)
    assert s["all"]["fg_fg"]["estimate"] is None and s["all"]["bg_bg"]["estimate"] == pytest.approx(s["all"]["total"]["estimate"])


def test_bad_mask_names_the_shapes():
    feats, target, fg = clip(5)
    with pytest.raises(ValueError, match="fg must be a bool"):
        relational_error_sums(feats, target, fg.float())


def test_budget_readout_on_binary_saliency():
    """w equal to the FG mask: AND spends everything on FG-FG, XOR on FG-BG, none gives p^2, 2p(1-p), (1-p)^2."""
    fg = torch.zeros(1, 2, 8, dtype=torch.bool)
    fg[..., :4] = True  # p = 1/2
    b = budget_readout(fg.float(), fg)
    assert b["and"]["shares"] == {"fg_fg": 1.0, "fg_bg": 0.0, "bg_bg": 0.0}
    assert b["xor"]["shares"] == {"fg_fg": 0.0, "fg_bg": 1.0, "bg_bg": 0.0}
    np.testing.assert_allclose([b["none"]["shares"][k] for k in ("fg_fg", "fg_bg", "bg_bg")], [0.25, 0.5, 0.25])
    assert b["or"]["coverage"]["bg_bg"] == 0.0


# ---------------------------------------------------------------------------------------------------------------
# the stage on tiny random models: base (before) and a run with a projector (after), same clips and noise
# ---------------------------------------------------------------------------------------------------------------


def _heldout_clips(root, n: int = 2) -> None:
    from sara.data.clips import write_clip, write_index
    from sara.data.synthetic import random_spec, render, spec_to_mtss

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        spec = random_spec(rng)
        frames, masks, truth = render(spec, 16, 64, 64, 8)
        caption = spec_to_mtss(spec, frames=16, height=64, width=64, fps=8)
        ids = [r.ref_id for r in caption.structured_caption.english.references if r.type != "scene"]
        records.append(write_clip(root, f"held{i:03d}", "heldout", frames, 8, caption, truth, masks, ids))
    write_index(root, records, "synthetic", "embedded")


@pytest.mark.slow  # the mechanism stage twice on a tiny DiT
def test_stage_reads_base_and_a_projected_run(tmp_path, tracking):
    import json
    from pathlib import Path

    import yaml

    from sara.cli import main
    from sara.config import load_params
    from sara.methods import build_objective
    from sara.models.dit import save_base

    repo = Path(__file__).resolve().parents[1]
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["data"]["out_dir"] = str(tmp_path / "clips")
    raw["dit"]["base_dir"] = str(tmp_path / "base")
    raw["train"]["out_dir"] = str(tmp_path / "dit")
    raw["aligner"]["out_dir"] = str(tmp_path / "aligner")
    raw["mechanism"] = {"clips": 2, "sigmas": [0.9], "n_boot": 100, "out_dir": str(tmp_path / "mech")}
    raw["project"]["device"] = "cpu"
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(raw))
    params = load_params(pfile)
    _heldout_clips(tmp_path / "clips")
    save_base(params, tmp_path / "base")
    # a "trained" videorepa run: the base transformer plus a random projector
    from diffusers import WanTransformer3DModel

    run_dir = tmp_path / "dit" / "videorepa"
    WanTransformer3DModel.from_pretrained(tmp_path / "base" / "transformer").save_pretrained(run_dir / "transformer")
    cfg = WanTransformer3DModel.load_config(tmp_path / "base" / "transformer")
    from sara.models.encoders import build_vfm

    from sara.runs import Run

    aux = build_objective(Run.parse("videorepa"), params, cfg["num_attention_heads"] * cfg["attention_head_dim"], build_vfm(params.vfm).dim)
    torch.save(aux.state_dict(), run_dir / "aux.pt")
    save_random_aligner(params, tmp_path / "aligner")  # the budget readout of every operator under its saliency

    assert main(["mechanism", "--params", str(pfile), "--run", "base"]) == 0
    assert main(["mechanism", "--params", str(pfile), "--run", "videorepa"]) == 0
    before = json.loads((tmp_path / "mech" / "base.json").read_text())
    after = json.loads((tmp_path / "mech" / "videorepa.json").read_text())
    assert before["clips"] == after["clips"] == ["held000", "held001"]
    assert "projected" not in before["features"] and "projected" in after["features"]
    # same transformer weights, same clips and noise: identical raw readout
    assert before["features"]["raw"] == after["features"]["raw"]
    # what the stage read, recomputed from the held-out clips: their FG masks on the encoder grid and the aligner's
    # saliency of each clean clip under its full caption
    from sara.losses.budget import pair_budget_shares
    from sara.models.aligner import load_saliency_model
    from sara.data.clipset import ClipSet
    from sara.train.stage2 import fg_on_grid

    model = load_saliency_model(tmp_path / "aligner", params)
    held = ClipSet(tmp_path / "clips", None, split="heldout")
    ws, fgs = [], []
    for i in range(2):
        frames = torch.from_numpy(held[i].frames[None])
        fg = torch.from_numpy(held[i].fg[None])  # (1, F, H, W)
        fgs.append(fg_on_grid(fg, model.vfm.frame_indices(fg.shape[1]), model.vfm.grid))
        ws.append(model.saliency(model.vfm.features(frames), [held[i].caption]))
    n_fg = torch.cat(fgs).flatten(1).sum(1)  # FG tokens per clip
    n = fgs[0][0].numel()  # T_s * N_s tokens per clip
    expected_pairs = {"fg_fg": n_fg * (n_fg - 1), "fg_bg": 2 * n_fg * (n - n_fg), "bg_bg": (n - n_fg) * (n - n_fg - 1),
                      "total": torch.full_like(n_fg, n * (n - 1))}  # ordered pairs a != b, one sigma
    for kind in ("raw", "projected"):
        for part, pairs in expected_pairs.items():
            assert after["features"][kind]["all"][part]["pairs"] == float(pairs.sum()), (kind, part)
    assert after["budget"] is None  # read once, by base: the shares depend on the aligner and clips, not the run
    assert set(before["budget"]) == {"none", "and", "or", "xor"}
    for op, b in before["budget"].items():
        assert b["shares"] == pytest.approx(pair_budget_shares(torch.cat(ws), op, fg=torch.cat(fgs)), rel=1e-5), op
    # a run with the oracle TRD target reads out against its target: the same weights give base's raw relations
    # against the oracle, which are not those against the lab encoder
    oracle_dir = tmp_path / "dit" / "videorepa@oracle"
    import shutil

    shutil.copytree(run_dir, oracle_dir)
    assert main(["mechanism", "--params", str(pfile), "--run", "videorepa@oracle"]) == 0
    oracle = json.loads((tmp_path / "mech" / "videorepa@oracle.json").read_text())
    assert (before["target"], after["target"], oracle["target"]) == ("lab", "lab", "oracle")
    assert set(before["raw_by_target"]) == {"lab", "oracle", "random"}
    assert before["raw_by_target"]["lab"] == before["features"]["raw"]
    assert oracle["features"]["raw"] == before["raw_by_target"]["oracle"] != before["features"]["raw"]
    assert oracle["features"]["projected"] != after["features"]["projected"]  # the projector against the oracle
    from evaluation.comparison.markdown import mechanism_markdown

    table = "\n".join(mechanism_markdown({"base": before, "videorepa@oracle": oracle}))
    assert "VideoREPA [oracle target] | raw |" in table and "+0.000 / +0.000 / +0.000" in table  # vs base, same target
