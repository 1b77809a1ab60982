"""The method registry (sara/methods.py): what each run needs, and each auxiliary objective wired to its loss with
the params it names. Every setting is given a value away from its default, so a dropped or swapped argument shows.

The objectives are compared with the loss functions called directly on the same projected tokens; those losses
are checked against float64 references in test_trd_losses.py and test_trd_grid_motion.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from sara.config import Params
from sara.losses.moalign import moalign_losses
from sara.losses.trd import masked_trd, videorepa_trd
from sara.methods import (
    REGISTRY,
    AuxObjective,
    AuxTargets,
    MoAlignObjective,
    ProjectedTRD,
    build_objective,
    params_subset,
)
from sara.models.grid import align_tokens
from sara.runs import Run

DIT_DIM, VFM_DIM = 12, 10
DIT_GRID, VFM_GRID = (4, 4, 4), (3, 2, 2)  # (T, H, W): 64 DiT tokens, 12 V-JEPA tokens


def params(**sections) -> Params:
    raw = Params().model_dump(mode="json")
    raw["trd"].update(lam_tmp=0.3, eps=0.02, tau=1.7, mask_temporal=False, projector_hidden=8, grid_mode="area")
    raw["methods"]["videorepa"].update(margin=0.05)
    raw["methods"]["moalign"].update(dim=6, tau=2.5, flow_weight=0.4)
    for section, values in sections.items():
        for key, value in values.items():
            if isinstance(value, dict):
                raw[section][key].update(value)
            else:
                raw[section][key] = value
    return Params.model_validate(raw)


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(2, math.prod(DIT_GRID), DIT_DIM, generator=g)  # (B, F'*H'*W', D_dit)
    vy = torch.randn(2, VFM_GRID[0], VFM_GRID[1] * VFM_GRID[2], VFM_DIM, generator=g)
    w = torch.rand(2, VFM_GRID[0], VFM_GRID[1] * VFM_GRID[2], generator=g)
    flow = torch.randn(2, VFM_GRID[0] - 1, VFM_GRID[1], VFM_GRID[2], 2, generator=g)
    return h, AuxTargets(vy=vy, w=w, flow=flow, vfm_grid=VFM_GRID)


def test_the_registry_says_what_each_method_needs():
    needs = {name: (s.needs_vfm, s.needs_saliency, s.needs_flow) for name, s in REGISTRY.items()}
    assert needs == {"sft": (False, False, False), "videorepa": (True, False, False),
                     "moalign": (True, False, True), "sara": (True, True, False)}
    assert all(s.facts.name == name for name, s in REGISTRY.items())


def test_each_run_builds_its_own_objective():
    p = params()
    sft = build_objective(Run("sft"), p, DIT_DIM, VFM_DIM)
    assert type(sft) is AuxObjective and sft(*inputs()[:1], DIT_GRID, AuxTargets()) == {}
    repa = build_objective(Run("videorepa"), p, DIT_DIM, VFM_DIM)
    assert isinstance(repa, ProjectedTRD) and (repa.op, repa.form) == ("none", "eq2")
    hinge = build_objective(Run("videorepa"), params(methods={"videorepa": {"form": "hinge"}}), DIT_DIM, VFM_DIM)
    assert hinge.form == "hinge"
    for op in ("and", "or", "xor", "none"):
        sara = build_objective(Run("sara", op), p, DIT_DIM, VFM_DIM)
        assert isinstance(sara, ProjectedTRD) and (sara.op, sara.form, sara.tau) == (op, "eq2", 1.7)
    assert isinstance(build_objective(Run("moalign"), p, DIT_DIM, VFM_DIM), MoAlignObjective)
    with pytest.raises(ValueError, match="^sara needs a routing operator: run sara-<op>$"):
        REGISTRY["sara"].build(p, DIT_DIM, VFM_DIM, None)


def test_the_projector_maps_dit_tokens_to_the_vjepa_grid():
    p = params()
    aux = ProjectedTRD(p, DIT_DIM, VFM_DIM, "or")
    h, targets = inputs()
    vp = aux.project(h, DIT_GRID, VFM_GRID)
    assert vp.shape == targets.vy.shape
    torch.testing.assert_close(vp, align_tokens(aux.projector(h), DIT_GRID, VFM_GRID, "area"))
    assert not torch.allclose(vp, align_tokens(aux.projector(h), DIT_GRID, VFM_GRID, "trilinear"))
    assert aux.projector(h).shape[-1] == VFM_DIM and aux.projector.net[0].out_features == 8  # projector_hidden


@pytest.mark.parametrize("op", ["and", "or", "xor", "none"])
def test_projected_trd_is_masked_trd_with_the_runs_settings(op: str):
    p = params()
    aux = ProjectedTRD(p, DIT_DIM, VFM_DIM, op)
    h, targets = inputs()
    out = aux(h, DIT_GRID, targets)
    vp = aux.project(h, DIT_GRID, VFM_GRID)
    ref = masked_trd(vp, targets.vy, targets.w, op=op, tau=1.7, lam_tmp=0.3, eps=0.02, mask_temporal=False)
    assert set(out) == {"aux", "trd_spatial", "trd_temporal"}
    torch.testing.assert_close(out["aux"], ref.total)
    torch.testing.assert_close(out["trd_spatial"], ref.spatial)
    torch.testing.assert_close(out["trd_temporal"], ref.temporal)
    default = masked_trd(vp, targets.vy, targets.w, op=op)  # every setting at its default: a different number
    assert not torch.allclose(out["aux"], default.total)
    out["aux"].backward()
    assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in aux.projector.parameters())


def test_an_explicit_tau_overrides_trd_tau():
    aux = ProjectedTRD(params(), DIT_DIM, VFM_DIM, "or", tau=4.0)
    h, targets = inputs()
    vp = aux.project(h, DIT_GRID, VFM_GRID)
    ref = masked_trd(vp, targets.vy, targets.w, op="or", tau=4.0, lam_tmp=0.3, eps=0.02, mask_temporal=False)
    torch.testing.assert_close(aux(h, DIT_GRID, targets)["aux"], ref.total)


def test_videorepa_hinge_form_uses_its_margin():
    aux = ProjectedTRD(params(methods={"videorepa": {"form": "hinge"}}), DIT_DIM, VFM_DIM, "none", form="hinge")
    h, targets = inputs()
    vp = aux.project(h, DIT_GRID, VFM_GRID)
    out = aux(h, DIT_GRID, targets)
    ref = videorepa_trd(vp, targets.vy, margin=0.05)
    torch.testing.assert_close(out["aux"], ref.total)
    torch.testing.assert_close(out["trd_spatial"], ref.spatial)
    assert not torch.allclose(out["aux"], videorepa_trd(vp, targets.vy).total)  # not the default margin 0.1


def test_moalign_is_its_losses_on_the_motion_subspace_with_the_runs_settings():
    p = params()
    aux = MoAlignObjective(p, DIT_DIM, VFM_DIM)
    h, targets = inputs()
    out = aux(h, DIT_GRID, targets)
    vp = align_tokens(aux.projector(h), DIT_GRID, VFM_GRID, "area")
    assert vp.shape[-1] == 6  # methods.moalign.dim
    ref = moalign_losses(aux.head, vp, targets.vy, targets.flow, (2, 2), tau=2.5, lam_tmp=0.3, flow_weight=0.4,
                         eps=0.02)
    assert out.keys() == ref.keys()
    for k in ref:
        torch.testing.assert_close(out[k], ref[k], msg=k)
    default = moalign_losses(aux.head, vp, targets.vy, targets.flow, (2, 2))
    assert not torch.allclose(out["aux"], default["aux"])
    out["aux"].backward()
    for module in (aux.projector, aux.head):
        assert all(q.grad is not None and q.grad.abs().sum() > 0 for q in module.parameters())


def test_an_objective_without_its_targets_names_them():
    h, targets = inputs()
    for missing in ({"vy": None}, {"vfm_grid": None}):
        t = AuxTargets(**{**targets.__dict__, **missing})
        with pytest.raises(ValueError, match="^TRD needs the V-JEPA target vy and its grid$"):
            ProjectedTRD(params(), DIT_DIM, VFM_DIM, "or")(h, DIT_GRID, t)
    for missing in ({"vy": None}, {"vfm_grid": None}, {"flow": None}):
        t = AuxTargets(**{**targets.__dict__, **missing})
        with pytest.raises(ValueError, match="^MoAlign needs the V-JEPA target vy, its grid and the flow on that grid$"):
            MoAlignObjective(params(), DIT_DIM, VFM_DIM)(h, DIT_GRID, t)


def test_params_subset_reads_sections_and_dotted_keys():
    p = params()
    out = params_subset(p, ["trd", "methods.moalign", "train.seed"])
    assert out == {"trd": p.trd.model_dump(mode="json"), "methods.moalign": p.methods.moalign.model_dump(mode="json"),
                   "train.seed": p.train.seed}
    assert out["trd"]["tau"] == 1.7 and out["methods.moalign"]["tau"] == 2.5


def test_projected_trd_masks_the_temporal_term_when_trd_says_so():
    aux = ProjectedTRD(params(trd={"mask_temporal": True}), DIT_DIM, VFM_DIM, "and")
    h, targets = inputs()
    vp = aux.project(h, DIT_GRID, VFM_GRID)
    ref = masked_trd(vp, targets.vy, targets.w, op="and", tau=1.7, lam_tmp=0.3, eps=0.02, mask_temporal=True)
    torch.testing.assert_close(aux(h, DIT_GRID, targets)["trd_temporal"], ref.temporal)


def test_moalign_takes_float64_targets_into_its_float32_head():
    aux = MoAlignObjective(params(), DIT_DIM, VFM_DIM)
    assert aux.projector.net[0].out_features == 8  # trd.projector_hidden
    h, targets = inputs()
    t64 = AuxTargets(**{**targets.__dict__, "vy": targets.vy.double()})
    torch.testing.assert_close(aux(h, DIT_GRID, t64)["aux"], aux(h, DIT_GRID, targets)["aux"])


def test_projected_trd_casts_the_frozen_target_to_the_tokens_dtype():
    """Under bf16 training the objective's tokens are bf16 and the frozen V-JEPA target float32."""
    aux = ProjectedTRD(params(), DIT_DIM, VFM_DIM, "or").to(torch.bfloat16)
    h, targets = inputs()
    out = aux(h.bfloat16(), DIT_GRID, targets)
    assert torch.isfinite(out["aux"])  # (the loss itself is accumulated in float32)
