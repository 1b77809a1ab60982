"""`sara mechanism --run <run>`: relational error of the DiT's hook-layer tokens against the frozen encoder on
held-out clips, split by FG/BG pairs, raw and projected (evaluation/mechanism.py).

`base` reads the untrained high-noise expert (`dit.base_dir`): the "before" of every run. A Stage 2 run reads
`<train.out_dir>/<run>/` (its transformer, and its projector from aux.pt when the method has one). Every run sees
the same clips (`mechanism.clips` of `mechanism.split` in `data.out_dir`, ground-truth FG masks), the same noise
(`mechanism.noise_seed`) at the same noise levels (`mechanism.sigmas`), and the full MTSS caption, as in Stage 2.
Raw features: the hook-layer tokens (block `trd.layer`) resampled onto the encoder grid (`trd.grid_mode`).
Projected: the run's TRD projector against V_y (videorepa, sara-<op>), or MoAlign's projector against its
motion subspace of V_y. With a trained aligner (`aligner.out_dir`, read by base and the SARA runs only:
`reads_aligner`), the pair-budget shares each routing operator assigns under its saliency on the same clips.
Writes `<mechanism.out_dir>/<run>.json`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from sara.config import Params
from sara.runs import BASE, SAMPLE_RUNS, Row, Run, parse_row

SECTIONS = ["project", "data.out_dir", "vfm", "text", "aligner.out_dir", "trd", "dit", "train.out_dir", "methods", "mechanism"]
RUNS = SAMPLE_RUNS  # base (before Stage 2) and every run of the registry (the DAG's: sara.runs.DAG_SAMPLE_RUNS)


def reads_aligner(row: Row) -> bool:
    """The trained aligner is read by `base` (the pair-budget shares of every operator: they depend on the aligner
    and the clips, not on a run's weights, so they are read once, before Stage 2) and by the SARA runs (their
    frozen encoder is the aligner's); sft, videorepa and moalign never read it (sara/pipeline.py: their deps)."""
    return row == BASE or isinstance(row, Run) and row.uses_saliency


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", required=True, choices=RUNS, help="base (before Stage 2) or a trained Stage 2 run")


def _load_aux(row: Row, params: Params, run_dir: Path, dit_dim: int, vfm_dim: int) -> Any | None:
    """The run's trained auxiliary module (projector / motion head), or None for base and a method without one."""
    from sara.io import load_tensors
    from sara.methods import build_objective

    if not isinstance(row, Run) or not row.spec.target:
        return None
    aux = build_objective(row, params, dit_dim, vfm_dim)
    path = run_dir / "aux.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run `sara train-dit --run {row}` first")
    # weights_only=True (inside load_tensors): tensors only, never code; checked against the run's SHA256SUMS first
    aux.load_state_dict(load_tensors(path, f"restore it (`dvc checkout --relink {run_dir}`) or rerun its train_dit stage"))
    return aux.eval()


def _projected(aux: Any, h: torch.Tensor, dit_grid: tuple, vy: torch.Tensor, vfm_grid: tuple, grid_mode: str) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(features, target) of the run's own objective on one clip: (1, T, N, D) each, or None without a projector."""
    from sara.methods import MoAlignObjective, ProjectedTRD
    from sara.models.grid import align_tokens

    if isinstance(aux, ProjectedTRD):
        return aux.project(h, dit_grid, vfm_grid), vy
    if isinstance(aux, MoAlignObjective):
        vp = align_tokens(aux.projector(h), dit_grid, vfm_grid, grid_mode)  # (1, T, N, D_m)
        m_y, _ = aux.head(vy, vfm_grid[1:])  # (1, T, N, D_m) motion subspace of V_y
        return vp, m_y
    return None


def readout(params: Params, run: str, log=print) -> dict[str, Any]:
    import torch

    with torch.no_grad():
        return _readout(params, run, log)


def _readout(params: Params, run: str, log) -> dict[str, Any]:
    import torch

    from evaluation.mechanism import add_sums, budget_readout, relational_error_sums, summarise
    from sara.losses.diffusion import flow_match_xt, sigma_to_timestep
    from sara.models.dit import BlockFeatureHook, load_base, load_trained_transformer, token_grid
    from sara.env import resolve_device
    from sara.models.encoders import build_vfm
    from sara.models.grid import align_tokens
    from sara.data.clipset import ClipSet
    from sara.models.targets import build_target
    from sara.runs import DEFAULT_TARGET, TARGETS
    from sara.train.stage2 import clip_latents, fg_on_grid

    row = parse_row(run)
    m, dev = params.mechanism, resolve_device(params.project.device)
    base = load_base(params.dit.base_dir, params.dit.kind, dev, torch.float32, with_low_noise=False)
    run_dir = Path(params.train.out_dir) / run
    transformer = base.transformer if row == BASE else load_trained_transformer(run_dir, dev, torch.float32)
    transformer.eval()
    saliency = None
    if reads_aligner(row) and Path(params.aligner.out_dir).exists():
        from sara.models.aligner import load_saliency_model

        saliency = load_saliency_model(params.aligner.out_dir, params, dev)
    vfm = saliency.vfm if saliency is not None and isinstance(row, Run) and row.uses_saliency else build_vfm(params.vfm, dev)
    dit_dim = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    aux = _load_aux(row, params, run_dir, dit_dim, vfm.dim)
    if aux is not None:
        aux.to(dev)
    # S_y of the run's own TRD target (the lab encoder for base and sft); the raw relations also against every
    # target, so a run's change since base reads against the same target
    own = row.target if isinstance(row, Run) and row.spec.target else DEFAULT_TARGET
    targets = {name: build_target(name, vfm, params.vfm) for name in TARGETS}
    hook = BlockFeatureHook(transformer, params.trd.layer)
    clips = ClipSet(params.data.out_dir, None, split=m.split, entity_masks=True)
    n = min(m.clips, len(clips))
    raw, proj, ws, fgs, ids = [], [], [], [], []
    raw_by_target: dict[str, list] = {name: [] for name in targets}
    for i in range(n):
        s = clips[i]
        if s.fg is None:
            raise ValueError(f"clip {s.clip_id} in {params.data.out_dir} has no FG masks: the readout needs ground-truth masks")
        frames = torch.from_numpy(s.frames[None])  # (1, F, H, W, 3) uint8
        ty = {name: t.features([s], frames).to(dev) for name, t in targets.items()}  # each (1, T_s, N_s, D_v)
        vy = ty[own]
        fg = fg_on_grid(torch.from_numpy(s.fg[None]), vfm.frame_indices(s.frames.shape[0]), vfm.grid)  # (1, T_s, N_s)
        z0 = clip_latents(base, params, frames, dev)  # (1, 16, F', H', W')
        text = base.text([s.caption])
        gen = torch.Generator().manual_seed(m.noise_seed * 1_000_003 + i)  # same noise for every run
        raw_views, proj_views = [], []
        views_by_target: dict[str, list] = {name: [] for name in targets}
        for sigma in m.sigmas:
            noise = torch.randn(z0.shape, generator=gen).to(dev)
            sig = torch.tensor([sigma], device=dev)
            transformer(flow_match_xt(z0, noise, sig), sigma_to_timestep(sig), text, return_dict=False)
            h = hook.pop()  # (1, F'*H'*W', D_dit)
            grid = token_grid(transformer, z0.shape)
            feats = align_tokens(h.float(), grid, vfm.grid, params.trd.grid_mode)  # (1, T_s, N_s, D_dit)
            for name, y in ty.items():
                views_by_target[name].append(relational_error_sums(feats[0], y[0], fg[0]))
            raw_views.append(views_by_target[own][-1])
            p = _projected(aux, h.float(), grid, vy, vfm.grid, params.trd.grid_mode) if aux is not None else None
            if p is not None:
                proj_views.append(relational_error_sums(p[0][0].float(), p[1][0].float(), fg[0]))
        raw.append(add_sums(raw_views))  # one entry per clip: the bootstrap resamples clips
        for name, views in views_by_target.items():
            raw_by_target[name].append(add_sums(views))
        if proj_views:
            proj.append(add_sums(proj_views))
        if saliency is not None:
            ws.append(saliency.saliency(ty[DEFAULT_TARGET], [s.caption]).cpu())  # the aligner reads the lab encoder
            fgs.append(fg)
        ids.append(s.clip_id)
        log(f"[mechanism] {run} clip {i + 1}/{n} {s.clip_id}")
    hook.remove()
    features = {"raw": summarise(raw, m.n_boot, 0, m.level)}
    by_target = {name: summarise(sums, m.n_boot, 0, m.level) for name, sums in raw_by_target.items()}
    if proj:
        features["projected"] = summarise(proj, m.n_boot, 0, m.level)
    budget = budget_readout(torch.cat(ws), torch.cat(fgs)) if ws else None
    return {
        "run": run,
        "model": str(params.dit.base_dir if row == BASE else run_dir),
        "clips": ids,
        "split": m.split,
        "sigmas": list(m.sigmas),
        "layer": params.trd.layer,
        "vfm_grid": list(vfm.grid),
        "target": own,  # S_y of `features`: the run's TRD target (sara/models/targets.py)
        "raw_by_target": by_target,  # the raw hook-layer relations against every target
        "note": (f"mean |S_p - S_y| over ordered token pairs (a != b) of {n} {m.split} clips at sigma "
                 f"{', '.join(map(str, m.sigmas))}, hook layer {params.trd.layer}, on the encoder grid "
                 f"{'x'.join(map(str, vfm.grid))}; {int(100 * m.level)}% bootstrap intervals over clips; lower is closer "
                 "to the relations of the run's TRD target (the lab encoder unless the run names another)"),
        "features": features,
        "budget": budget,
    }


def run(params: Params, run: str) -> dict[str, Any]:
    from sara.io import write_json
    from sara.tracking import log_metrics, run_identity, stage_run

    out = Path(params.mechanism.out_dir) / f"{run}.json"
    identity, tags = run_identity(params, run)
    with stage_run("mechanism", params, SECTIONS, variant=run, tags=tags, extra_params=identity):
        result = readout(params, run)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json(out, result)
        log_metrics({f"mechanism/{kind}/{scope}/{part}": v["estimate"] for kind, f in result["features"].items()
                     for scope, parts in f.items() for part, v in parts.items() if v["estimate"] is not None})
        log_metrics({f"mechanism/raw_vs_{target}/all/{part}": v["estimate"]  # the raw relations against each target
                     for target, f in result["raw_by_target"].items() for part, v in f["all"].items()
                     if v["estimate"] is not None})
        for kind, f in result["features"].items():
            a = f["all"]
            print(f"[mechanism] {run} {kind:9s} total {a['total']['estimate']} FG-FG {a['fg_fg']['estimate']} "
                  f"FG-BG {a['fg_bg']['estimate']} BG-BG {a['bg_bg']['estimate']}")
    return result
