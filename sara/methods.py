"""Method registry: run name -> auxiliary objective of Stage 2 (the paper's baselines), and the params each run reads.

Every method trains the same high-noise DiT with the same data and schedule; only the auxiliary loss changes:
    L = L_diff + lam_TRD * L_aux                                                           (the paper's Stage 2 loss)
- `sft`: no auxiliary loss.
- `videorepa`: TRD on the frozen V-JEPA target without routing (Eq. 2 as masked TRD with op `none`, or the
  original hinge form, `methods.videorepa.form`).
- `moalign`: TRD on a flow-supervised motion subspace of the V-JEPA target with temporal decay tau = 10.
- `sara`: masked TRD (Eqs. 9-11) with a routing operator (and | or | xor | none) on w from the frozen Stage 1
  aligner queried with the clean clip and the full caption.

Which runs exist, what each method needs (target, saliency, flow) and reads (params keys, upstream outputs) is the
run vocabulary, `sara.runs`; this module says what each method computes. The auxiliary module (projector, motion head) is an nn.Module so DeepSpeed
owns and checkpoints its parameters together with the DiT.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from sara.config import Params
from sara.losses.moalign import moalign_losses
from sara.losses.trd import masked_trd, videorepa_trd
from sara.models.grid import align_tokens
from sara.models.motion import MotionSubspaceHead
from sara.models.projector import TRDProjector
from sara.runs import METHODS, Method, Run

@dataclass
class AuxTargets:
    """Frozen per-batch inputs of an auxiliary loss (all without grad)."""

    vy: torch.Tensor | None = None  # V-JEPA tokens of the clean clip (B, T_s, N_s, D_v)
    w: torch.Tensor | None = None  # saliency on the V-JEPA grid (B, T_s, N_s) in [0, 1]
    flow: torch.Tensor | None = None  # optical flow for MoAlign (method-defined layout)
    vfm_grid: tuple[int, int, int] | None = None  # (T_s, H_s, W_s)


class AuxObjective(nn.Module):
    """Trainable part of an auxiliary loss. `forward` returns named scalar terms; `aux` is the weighted total."""

    def forward(self, h: torch.Tensor, dit_grid: tuple[int, int, int], targets: AuxTargets) -> dict[str, torch.Tensor]:
        return {}


class ProjectedTRD(AuxObjective):
    """REPA projector on the hooked DiT tokens, DiT grid -> V-JEPA grid, then (masked) TRD against V_y."""

    def __init__(self, params: Params, dit_dim: int, vfm_dim: int, op: str, *, form: str = "eq2", tau: float | None = None) -> None:
        super().__init__()

        self.trd = params.trd
        self.op, self.form = op, form
        self.tau = self.trd.tau if tau is None else tau
        self.margin = params.methods.videorepa.margin
        self.projector = TRDProjector(dit_dim, vfm_dim, self.trd.projector_hidden)

    def project(self, h: torch.Tensor, dit_grid: tuple[int, int, int], vfm_grid: tuple[int, int, int]) -> torch.Tensor:
        """(B, F'*H'*W', D_dit) -> V_p (B, T_s, N_s, D_v): project per token, then resample onto the V-JEPA grid."""
        vp = self.projector(h)  # (B, F'*H'*W', D_v)
        return align_tokens(vp, dit_grid, vfm_grid, self.trd.grid_mode)  # (B, T_s, H_s*W_s, D_v)

    def forward(self, h: torch.Tensor, dit_grid: tuple[int, int, int], targets: AuxTargets) -> dict[str, torch.Tensor]:
        if targets.vy is None or targets.vfm_grid is None:
            raise ValueError("TRD needs the V-JEPA target vy and its grid")
        vp = self.project(h, dit_grid, targets.vfm_grid)
        vy = targets.vy.to(vp.dtype)
        if self.form == "hinge":
            out = videorepa_trd(vp, vy, margin=self.margin)
        else:
            out = masked_trd(
                vp, vy, targets.w, op=self.op, tau=self.tau, lam_tmp=self.trd.lam_tmp, eps=self.trd.eps,
                mask_temporal=self.trd.mask_temporal,
            )
        return {"aux": out.total, "trd_spatial": out.spatial, "trd_temporal": out.temporal}


class MoAlignObjective(AuxObjective):
    """MoAlign: projector DiT -> D_m, TRD (op none, tau) against the motion subspace P_zeta(V_y), plus the flow L1
    that trains the motion head (sara.losses.moalign; the subspace is a detached target for the DiT)."""

    def __init__(self, params: Params, dit_dim: int, vfm_dim: int) -> None:
        super().__init__()

        self.trd, self.cfg = params.trd, params.methods.moalign
        self.head = MotionSubspaceHead(vfm_dim, self.cfg.dim)
        self.projector = TRDProjector(dit_dim, self.cfg.dim, self.trd.projector_hidden)

    def forward(self, h: torch.Tensor, dit_grid: tuple[int, int, int], targets: AuxTargets) -> dict[str, torch.Tensor]:
        if targets.vy is None or targets.vfm_grid is None or targets.flow is None:
            raise ValueError("MoAlign needs the V-JEPA target vy, its grid and the flow on that grid")
        vp = align_tokens(self.projector(h), dit_grid, targets.vfm_grid, self.trd.grid_mode)  # (B, T_s, N_s, D_m)
        _, hh, ww = targets.vfm_grid
        head_dtype = next(self.head.parameters()).dtype
        return moalign_losses(
            self.head, vp, targets.vy.to(head_dtype), targets.flow, (hh, ww), tau=self.cfg.tau,
            lam_tmp=self.trd.lam_tmp, flow_weight=self.cfg.flow_weight, eps=self.trd.eps,
        )


# ----------------------------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MethodSpec:
    """A method's facts (sara.runs.METHODS: what it needs and reads) and how its auxiliary module is built."""

    facts: Method
    build: Callable[[Params, int, int, str | None], AuxObjective]  # (params, dit_dim, vfm_dim, op)

    @property
    def needs_vfm(self) -> bool:  # frozen V-JEPA target
        return self.facts.target

    @property
    def needs_saliency(self) -> bool:  # frozen Stage 1 aligner
        return self.facts.saliency

    @property
    def needs_flow(self) -> bool:  # optical flow (MoAlign)
        return self.facts.flow


def _build_sft(params: Params, dit_dim: int, vfm_dim: int, op: str | None) -> AuxObjective:
    return AuxObjective()


def _build_videorepa(params: Params, dit_dim: int, vfm_dim: int, op: str | None) -> AuxObjective:
    return ProjectedTRD(params, dit_dim, vfm_dim, "none", form=params.methods.videorepa.form)


def _build_sara(params: Params, dit_dim: int, vfm_dim: int, op: str | None) -> AuxObjective:
    if op is None:
        raise ValueError("sara needs a routing operator: run sara-<op>")
    return ProjectedTRD(params, dit_dim, vfm_dim, op)


def _build_moalign(params: Params, dit_dim: int, vfm_dim: int, op: str | None) -> AuxObjective:
    return MoAlignObjective(params, dit_dim, vfm_dim)


_BUILD = {"sft": _build_sft, "videorepa": _build_videorepa, "moalign": _build_moalign, "sara": _build_sara}
REGISTRY: dict[str, MethodSpec] = {name: MethodSpec(facts, _BUILD[name]) for name, facts in METHODS.items()}


def params_subset(params: Params, keys: Sequence[str]) -> dict[str, Any]:
    """{key: value-dict} for dotted params keys (`methods.moalign` -> params.methods.moalign)."""
    out: dict[str, Any] = {}
    for key in keys:
        obj: Any = params
        for part in key.split("."):
            obj = getattr(obj, part)
        out[key] = obj.model_dump(mode="json") if hasattr(obj, "model_dump") else obj
    return out


def build_objective(run: Run, params: Params, dit_dim: int, vfm_dim: int) -> AuxObjective:
    return REGISTRY[run.method].build(params, dit_dim, vfm_dim, run.op)
