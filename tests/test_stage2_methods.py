"""Every method of Stage 2 trained for two steps through `train_stage2`, in this process (DeepSpeed, one CPU rank).

Per run, spies on the real models check what the loop computes, not only that it ran:
  - the logged loss is L_diff + lambda_TRD * L_aux (lambda_TRD = 0.37, so a dropped or unit weight shows);
  - the features the auxiliary loss receives are the output of DiT block `trd.layer` (compared with every block's
    output of the same forward pass);
  - its frozen targets are what they claim: sara's w is the aligner's saliency of the clean clip under the full
    caption, MoAlign's flow is the renderer's ground-truth flow on the V-JEPA grid;
  - the auxiliary loss trains its own module (projector, motion head) and reaches the DiT: every run starts from the
    same weights and draws the same batches as an `sft` run, so without the auxiliary gradient its DiT would equal
    sft's bit for bit (gradient clipping and weight decay are off, so nothing else couples the two);
  - sara logs its pair budget from the saliency it routed with;
  - an all-background clip under AND (every pair weight zero) trains with a finite loss.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from sara.config import Params, load_params
from stage2_testlib import REPO, launcher_env, make_clips, save_random_aligner, weights  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # seven in-process DeepSpeed runs, 6-10 s each on 2 busy cores

LAM_TRD = 0.37
METHOD_RUNS = [("videorepa", 1), ("moalign", 2), ("sara-and", 1), ("sara-or", 2), ("sara-xor", 1)]  # (run, trd.layer)


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Params]:
    """Two synthetic clips, the tiny base DiT and a random aligner; two steps of batch 1 per run."""
    from sara.models.dit import save_base

    root = tmp_path_factory.mktemp("methods")
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["project"]["device"] = "cpu"
    raw["data"]["out_dir"] = str(root / "clips")
    raw["masks"]["out_dir"] = str(root / "masks")  # absent: the clips' own ground-truth masks give FG
    raw["dit"]["base_dir"] = str(root / "base")
    raw["aligner"]["out_dir"] = str(root / "aligner")
    raw["trd"]["lam_trd"] = LAM_TRD
    raw["dit"].update(frames=5, height=32, width=32)  # latents (16, 2, 4, 4): the VAE is most of a CPU step
    raw["vfm"]["image_size"] = 32  # V-JEPA grid (4, 4, 4)
    raw["train"].update(steps=2, lr=1e-3, warmup_steps=0, weight_decay=0.0, grad_clip=1e9, checkpoint_every=100,
                        log_every=1, out_dir=str(root / "dit"), state_dir=str(root / "state"))
    params = Params.model_validate(raw)
    make_clips(root / "clips", n=2)
    save_base(params, root / "base")
    save_random_aligner(params, root / "aligner")
    return root, params


def _with(params: Params, **sections: dict) -> Params:
    raw = params.model_dump(mode="json")
    for section, values in sections.items():
        raw[section].update(values)
    return Params.model_validate(raw)


class Spy:
    """Records, per forward pass, every DiT block's output and what the auxiliary objective was given and gave."""

    def __init__(self) -> None:
        self.blocks: list[torch.Tensor | None] = []
        self.calls: list[dict] = []
        self.aux_init: dict[str, torch.Tensor] = {}
        self.saliency: list[tuple[torch.Tensor, list[str], torch.Tensor]] = []  # (vy, captions, w) per call

    def watch_dit(self, base):
        self.blocks = [None] * len(base.transformer.blocks)
        for i, block in enumerate(base.transformer.blocks):
            block.register_forward_hook(lambda m, a, out, i=i: self.blocks.__setitem__(i, out.detach().clone()))
        return base

    def watch_aux(self, aux):
        self.aux_init = {k: v.detach().clone() for k, v in aux.state_dict().items()}

        def record(module, args, out):
            h, _, targets = args
            same = [i for i, b in enumerate(self.blocks) if b is not None and torch.equal(b, h.detach())]
            self.calls.append({"blocks_equal_to_h": same, "targets": targets,
                               "out": {k: float(v.detach()) for k, v in out.items()}})

        aux.register_forward_hook(record)
        return aux


@pytest.fixture()
def spy(monkeypatch: pytest.MonkeyPatch, launcher_env) -> Spy:
    import sara.train.stage2 as stage2

    s = Spy()
    load_base, build_objective, load_saliency = stage2.load_base, stage2.build_objective, stage2.load_saliency_model
    monkeypatch.setattr(stage2, "load_base", lambda *a, **k: s.watch_dit(load_base(*a, **k)))
    monkeypatch.setattr(stage2, "build_objective", lambda *a, **k: s.watch_aux(build_objective(*a, **k)))

    def saliency_model(*a, **k):
        model = load_saliency(*a, **k)
        original = model.saliency

        def saliency(vy, captions):
            s.saliency.append((vy, list(captions), original(vy, captions)))
            return s.saliency[-1][2]

        model.saliency = saliency
        return model

    monkeypatch.setattr(stage2, "load_saliency_model", saliency_model)
    return s


def train(params: Params, run: str) -> tuple[list[dict], Path]:
    """Two steps of `run` in this process; the logged records and the exported run folder."""
    from sara.runs import Run
    from sara.train.stage2 import train_stage2

    logged: list[dict] = []
    result = train_stage2(params, Run.parse(run), log=lambda rec, step: logged.append(dict(rec, step=step)), resume=False,
                          progress=False)
    return logged, result.run_dir


@pytest.fixture(scope="module")
def sft_dit(micro, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The DiT after two sft steps: what every method's DiT would be if its auxiliary loss never reached it."""
    root, params = micro
    before = dict(os.environ)
    try:
        _, run_dir = train(_with(params, train={"out_dir": str(root / "sft")}), "sft")
    finally:
        os.environ.clear()
        os.environ.update(before)
    return weights(run_dir)


@pytest.mark.parametrize(("run", "layer"), METHOD_RUNS)
def test_a_method_trains_with_its_auxiliary_loss_on_block_trd_layer(micro, sft_dit, spy: Spy, run: str, layer: int):
    root, params = micro
    params = _with(params, trd={"layer": layer})
    logged, run_dir = train(params, run)

    assert [r["step"] for r in logged] == [1, 2] and len(spy.calls) == 2
    for rec, call in zip(logged, spy.calls):
        assert rec["loss_aux"] == pytest.approx(call["out"]["aux"], rel=1e-6)  # the objective's own total
        assert rec["loss_aux"] > 1e-4  # a term worth weighing
        assert rec["loss"] == pytest.approx(rec["loss_diff"] + LAM_TRD * rec["loss_aux"], rel=1e-6, abs=1e-9)
        assert call["blocks_equal_to_h"] == [layer - 1], call["blocks_equal_to_h"]  # block trd.layer, 1-based

    trained = torch.load(run_dir / "aux.pt", weights_only=True)
    assert trained.keys() == spy.aux_init.keys()
    unmoved = [k for k, v in trained.items() if torch.equal(v, spy.aux_init[k])]
    assert not unmoved, f"{run}: the auxiliary loss left {unmoved} untrained"

    dit = weights(run_dir)
    moved = torch.cat([(dit[k] - sft_dit[k]).flatten() for k in dit])
    # the auxiliary gradient reaches the blocks up to trd.layer (the tiny DiT moves ~lr = 1e-3 per weight and step)
    assert float(moved.abs().max()) > 1e-4, f"{run}: the DiT is sft's, the auxiliary loss never reached it"


def test_sara_routes_with_the_aligners_saliency_and_logs_its_pair_budget(micro, spy: Spy):
    """w is the aligner's saliency of the clean clip's V-JEPA tokens under the full MTSS caption, handed to the loss
    unchanged; the logged pair budget is that w's under the clip's FG masks."""
    from sara.data.clips import list_clips, load_clip
    from sara.data.mtss import full_caption
    from sara.losses.budget import pair_budget_shares
    from sara.models.aligner import load_saliency_model
    from sara.train.stage2 import fg_on_grid

    root, params = micro
    logged, _ = train(params, "sara-or")
    vfm = load_saliency_model(root / "aligner", params).vfm  # the aligner's frozen V-JEPA
    clips = {}  # full caption -> (V-JEPA tokens of the clean clip, FG on the V-JEPA grid)
    for r in list_clips(root / "clips"):
        clip = load_clip(r.folder(root / "clips"))
        masks = torch.from_numpy(clip.masks.any(0))[None]  # (1, F, H, W) union of the entity masks
        fg = fg_on_grid(masks, vfm.frame_indices(masks.shape[1]), vfm.grid)
        clips[full_caption(clip.caption)] = (vfm.features(torch.from_numpy(clip.frames)[None]), fg)
    assert len(spy.saliency) == len(spy.calls) == 2
    for rec, (vy, captions, w), call in zip(logged, spy.saliency, spy.calls):
        (caption,) = captions
        assert caption in clips, caption[:200]  # the full caption, not a dropped or entity caption
        clean_vy, fg = clips[caption]
        torch.testing.assert_close(vy, clean_vy, rtol=1e-5, atol=1e-6)  # of the clean clip x_0
        assert call["targets"].w is not None and torch.equal(call["targets"].w, w)  # the saliency, unchanged
        shares = {k.removeprefix("budget_"): v for k, v in rec.items() if k.startswith("budget_")}
        assert sum(shares.values()) == pytest.approx(1.0)
        assert shares == pytest.approx(pair_budget_shares(w.float(), "or", fg=fg), rel=1e-6)


def test_moalign_is_supervised_by_the_clips_ground_truth_flow_on_the_vjepa_grid(micro, spy: Spy):
    from sara.data.clips import list_clips, load_clip
    from sara.data.flow import flow_source
    from sara.losses.moalign import flow_to_grid
    from sara.models.encoders import build_vfm

    root, params = micro
    train(params, "moalign")
    grid = build_vfm(params.vfm).grid
    clips = [load_clip(r.folder(root / "clips")) for r in list_clips(root / "clips")]
    expected = [flow_to_grid(torch.from_numpy(flow_source("groundtruth")(c.frames, c.truth)), grid)[0] for c in clips]
    for call in spy.calls:
        (flow,) = call["targets"].flow  # batch 1
        assert any(torch.equal(flow, e) for e in expected)
        assert float(flow.abs().max()) > 0  # the rendered entities move
    assert spy.calls[0]["out"]["flow_l1"] > 0 and math.isfinite(spy.calls[0]["out"]["flow_l1"])


def test_an_all_background_clip_under_and_trains_with_a_finite_loss(micro, spy: Spy, monkeypatch):
    """Saliency 0 everywhere (nothing in the clip is salient): every AND pair weight w_i * w_j is 0, so both TRD
    denominators are 0. The loss must stay finite (eps) and the auxiliary term vanish, not stop the run as NaN."""
    import sara.train.stage2 as stage2

    load = stage2.load_saliency_model

    def background(*a, **k):
        model = load(*a, **k)
        model.saliency = lambda vy, captions: torch.zeros(vy.shape[:3])
        return model

    monkeypatch.setattr(stage2, "load_saliency_model", background)
    root, params = micro
    logged, _ = train(params, "sara-and")
    assert [r["step"] for r in logged] == [1, 2]
    for rec in logged:
        assert math.isfinite(rec["loss"]) and rec["loss_aux"] == 0.0 and rec["loss"] == rec["loss_diff"]
        assert {rec[f"budget_{k}"] for k in ("fg_fg", "fg_bg", "bg_bg")} == {0.0}  # no pair carries weight
