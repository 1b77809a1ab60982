"""The losses' contracts that the float64 references do not reach: defaults, edges of the valid range, the exact
one-line errors, and cases the reference tests leave symmetric (mean 0 / std 1, equal dtypes, a zero target).

Written from the surviving mutants of scripts/mutation.py (docs/testing.md): each test names what it pins.
"""

from __future__ import annotations

import math

import pytest
import torch

from sara.losses.budget import pair_budget_coverage, pair_budget_shares, pair_budget_sums
from sara.losses.diffusion import band_cdf, flow_match_xt, sample_band_sigmas, shift_sigma, unshift_sigma
from sara.losses.moalign import flow_l1_loss, flow_to_grid, moalign_losses, moalign_trd
from sara.losses.trd import masked_trd, masked_trd_reference, vanilla_trd, videorepa_trd, videorepa_trd_reference
from sara.models.motion import MotionSubspaceHead

# -------------------------------------------------------------------------------------------------- diffusion


def test_noising_keeps_the_latents_dtype():
    z0, noise = torch.randn(2, 3, 4, dtype=torch.bfloat16), torch.randn(2, 3, 4, dtype=torch.bfloat16)
    zt = flow_match_xt(z0, noise, torch.tensor([0.25, 0.9]))  # float32 sigmas, bf16 latents (the GPU case)
    assert zt.dtype == torch.bfloat16
    torch.testing.assert_close(zt[0].float(), 0.75 * z0[0].float() + 0.25 * noise[0].float(), rtol=0.02, atol=0.01)


def test_band_sigmas_default_to_the_papers_high_noise_band():
    """Defaults (Table 11): logit-normal mean 0, std 1, shift 12, band [0.875, 1]."""
    a = sample_band_sigmas(64, torch.Generator().manual_seed(5))
    b = sample_band_sigmas(64, torch.Generator().manual_seed(5), mean=0.0, std=1.0, shift=12.0, t_min=0.875, t_max=1.0)
    assert torch.equal(a, b) and float(a.min()) >= 0.875


def test_band_edges_that_are_allowed_and_refused():
    g = torch.Generator().manual_seed(0)
    assert float(sample_band_sigmas(8, g, t_min=0.0, t_max=1.0, shift=0.5).min()) >= 0.0  # t_min 0, shift < 1 are valid
    for bad in ({"t_min": 0.5, "t_max": 0.5}, {"t_min": 0.5, "t_max": 1.5}, {"t_min": -0.1}):
        with pytest.raises(ValueError, match=r"^timestep band must satisfy 0 <= t_min < t_max <= 1, got \["):
            sample_band_sigmas(4, g, **bad)
    for bad in ({"std": 0.0}, {"shift": 0.0}):
        with pytest.raises(ValueError, match=r"^logit_std and shift must be > 0, got std="):
            sample_band_sigmas(4, g, **bad)
    with pytest.raises(ValueError, match=r"^the band \[0.875, 1.0\] has no probability mass under mean=-60.0, "
                                         r"std=1.0, shift=1.0$"):
        sample_band_sigmas(4, g, mean=-60.0, shift=1.0)  # every u is ~0: the band [0.875, 1] is never drawn


def test_band_cdf_with_a_shifted_and_scaled_logit_normal():
    """The CDF against its definition, with mean and std away from 0 and 1 (there a sign or a / vs * shows)."""
    mean, std, shift, t_min, t_max = 0.4, 0.6, 3.0, 0.3, 0.9

    def normal_cdf(s: float) -> float:  # P(sigma <= s) before the band: u = shift^-1(s) ~ logit-normal(mean, std)
        u = float(unshift_sigma(torch.tensor(s, dtype=torch.float64), shift))
        return 0.5 * (1 + math.erf((math.log(u / (1 - u)) - mean) / (std * math.sqrt(2))))

    lo, hi = normal_cdf(t_min), normal_cdf(t_max)
    s = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.95], dtype=torch.float64)  # below, inside and above the band
    expected = [min(1.0, max(0.0, (normal_cdf(min(max(x, t_min), t_max)) - lo) / (hi - lo))) for x in s.tolist()]
    got = band_cdf(s, mean=mean, std=std, shift=shift, t_min=t_min, t_max=t_max)
    torch.testing.assert_close(got, torch.tensor(expected, dtype=torch.float64))
    assert got[0] == 0.0 and got[-1] == 1.0
    single = band_cdf(s.float(), mean=mean, std=std, shift=shift, t_min=t_min, t_max=t_max)
    assert single.dtype == torch.float64  # computed in float64 whatever the sigmas' dtype
    draws = sample_band_sigmas(4000, torch.Generator().manual_seed(1), mean=mean, std=std, shift=shift, t_min=t_min,
                               t_max=t_max)
    assert abs(float((draws <= 0.5).double().mean()) - expected[2]) < 0.03  # 4000 draws: sd 0.008
    assert float(draws.min()) >= t_min and float(draws.max()) <= t_max


def test_shift_and_unshift_invert_each_other():
    u = torch.linspace(0, 1, 11, dtype=torch.float64)
    torch.testing.assert_close(unshift_sigma(shift_sigma(u, 12.0), 12.0), u)
    assert float(shift_sigma(torch.tensor(0.5), 3.0)) == pytest.approx(0.75)


# ----------------------------------------------------------------------------------------------------- budget


def test_pair_budget_sums_counts_the_pairs_of_each_scope_and_defaults_to_all():
    w = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0))
    B, T, N = w.shape
    assert pair_budget_sums(w, "and")["pairs"] == B * (T * N) ** 2
    assert pair_budget_sums(w, "and") == pair_budget_sums(w, "and", None, 0.5, "all")
    assert pair_budget_sums(w, "and", scope="spatial")["pairs"] == B * T * N**2
    assert pair_budget_sums(w, "and", scope="temporal")["pairs"] == B * T * (T - 1) * N**2
    with pytest.raises(ValueError, match=r"^unknown scope='frames': expected all, spatial or temporal$"):
        pair_budget_sums(w, "and", scope="frames")  # type: ignore[arg-type]


def test_budget_fg_comes_from_the_masks_when_given_else_from_the_threshold():
    w = torch.tensor([[[0.9, 0.6, 0.2, 0.1]]])
    fg = torch.tensor([[[True, False, False, False]]])
    by_mask = pair_budget_coverage(w, "none", fg=fg, scope="spatial")
    assert by_mask == pytest.approx({"fg_fg": 1 / 16, "fg_bg": 6 / 16, "bg_bg": 9 / 16})
    assert pair_budget_coverage(w, "none", threshold=0.5) == pytest.approx({"fg_fg": 4 / 16, "fg_bg": 8 / 16,
                                                                            "bg_bg": 4 / 16})
    assert pair_budget_coverage(w, "none", threshold=0.7) == pytest.approx(by_mask)
    two = torch.cat([w, w], 1)  # (1, 2, 4): the spatial scope keeps 2 x 16 of the 64 pairs
    assert pair_budget_coverage(two, "none", fg=torch.cat([fg, fg], 1), scope="spatial") == pytest.approx(by_mask)
    two_frames = torch.tensor([[[0.9, 0.1], [0.9, 0.1]]])  # temporal scope: only the 8 cross-frame pairs
    assert pair_budget_coverage(two_frames, "none", scope="temporal") == pytest.approx(
        {"fg_fg": 2 / 8, "fg_bg": 4 / 8, "bg_bg": 2 / 8})
    with pytest.raises(ValueError, match=r"^w must lie in \[0, 1\]$"):
        pair_budget_sums(w + 1, "and")


def test_small_and_empty_budgets():
    w = torch.tensor([[[0.3]]])  # one token: one pair, total AND weight 0.09 (< 1)
    assert pair_budget_shares(w, "and") == pytest.approx({"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 1.0})
    assert pair_budget_coverage(w, "and") == pytest.approx({"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 0.09})
    empty = torch.zeros(1, 2, 0)
    assert pair_budget_coverage(empty, "or") == {"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 0.0}
    assert pair_budget_shares(empty, "or") == {"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 0.0}


# ---------------------------------------------------------------------------------------------------- MoAlign


def test_flow_to_grid_sums_the_flow_between_the_centre_frames_of_each_step():
    """F = 7 frames (6 flow steps) on T = 3: step centres 1, 3, 5 (round((t + 0.5) * 7 / 3 - 0.5)), so token step
    0 carries flow 1 + 2 and step 1 carries flow 3 + 4; pixels -> tokens scales x by W / W_px, y by H / H_px."""
    flow = torch.zeros(6, 4, 8, 2)  # (F-1, H_px, W_px, 2)
    for f in range(6):
        flow[f, ..., 0] = 10.0 ** f  # frame f -> f+1 moves 10^f pixels in x: the sum tells which steps were taken
        flow[f, ..., 1] = -(f + 1)
    out = flow_to_grid(flow, (3, 2, 2))
    assert out.shape == (1, 2, 2, 2, 2)
    torch.testing.assert_close(out[0, :, 0, 0, 0], torch.tensor([(10.0 + 100.0), (1e3 + 1e4)]) * 2 / 8)
    torch.testing.assert_close(out[0, :, 0, 0, 1], torch.tensor([-(2 + 3), -(4 + 5)]) * 2 / 4.0)
    first_last = flow_to_grid(flow[:2], (2, 1, 1))  # F = 3 on T = 2: centres 0 and 2 (clamped into the clip)
    torch.testing.assert_close(first_last[0, 0, 0, 0], torch.tensor([11.0 / 8, -3.0 / 4]))


def test_flow_to_grid_refuses_other_shapes_by_name():
    with pytest.raises(ValueError, match=r"^flow must be \(B, F-1, H, W, 2\), got \(1, 3, 4, 8, 3\)$"):
        flow_to_grid(torch.zeros(1, 3, 4, 8, 3), (2, 2, 2))
    with pytest.raises(ValueError, match=r"^flow must be \(B, F-1, H, W, 2\), got \(3, 2\)$"):
        flow_to_grid(torch.zeros(3, 2), (2, 2, 2))
    with pytest.raises(ValueError, match=r"^flow_to_grid needs a grid with at least 2 time steps$"):
        flow_to_grid(torch.zeros(3, 4, 8, 2), (1, 2, 2))
    assert flow_to_grid(torch.zeros(2, 4, 8, 2), (2, 2, 2)).shape == (1, 1, 2, 2, 2)  # T = 2 is enough


def test_flow_l1_is_the_mean_absolute_difference():
    pred, target = torch.tensor([1.0, -2.0, 0.5]), torch.tensor([0.5, 1.0, 0.25])
    assert float(flow_l1_loss(pred, target)) == pytest.approx((0.5 + 3.0 + 0.25) / 3)
    with pytest.raises(ValueError, match=r"^flow prediction \(3,\) and target \(2,\) differ in shape$"):
        flow_l1_loss(pred, target[:2])


def _moalign_inputs():
    g = torch.Generator().manual_seed(2)
    vp, m_y = torch.randn(1, 3, 4, 6, generator=g), torch.randn(1, 3, 4, 6, generator=g)
    return vp, m_y


def test_moalign_trd_is_unrouted_trd_with_its_decay_and_defaults():
    vp, m_y = _moalign_inputs()
    ref = masked_trd(vp, m_y, None, op="none", tau=10.0, lam_tmp=1.0, eps=1e-6)
    torch.testing.assert_close(moalign_trd(vp, m_y).total, ref.total)  # defaults: tau 10 (the paper's), lam 1
    set_ = moalign_trd(vp, m_y, tau=2.0, lam_tmp=0.4, eps=0.5)
    torch.testing.assert_close(set_.total, masked_trd(vp, m_y, None, op="none", tau=2.0, lam_tmp=0.4, eps=0.5).total)
    assert not torch.allclose(set_.total, ref.total)
    with pytest.raises(ValueError, match=r"^MoAlign's TRD uses a finite temporal decay tau \(paper: 10\)$"):
        moalign_trd(vp, m_y, tau=math.inf)


def test_moalign_losses_defaults_and_weights():
    torch.manual_seed(0)
    head = MotionSubspaceHead(6, 6)
    vp, vy = _moalign_inputs()
    flow = torch.randn(1, 2, 2, 2, 2)
    default = moalign_losses(head, vp, vy, flow, (2, 2))
    explicit = moalign_losses(head, vp, vy, flow, (2, 2), tau=10.0, lam_tmp=1.0, flow_weight=1.0, eps=1e-6)
    for k in explicit:
        torch.testing.assert_close(default[k], explicit[k], msg=k)
    weighted = moalign_losses(head, vp, vy, flow, (2, 2), tau=3.0, lam_tmp=0.5, flow_weight=0.25, eps=0.1)
    m_y, _ = head(vy, (2, 2))
    trd = masked_trd(vp, m_y.detach(), None, op="none", tau=3.0, lam_tmp=0.5, eps=0.1)
    torch.testing.assert_close(weighted["trd"], trd.total)
    torch.testing.assert_close(weighted["aux"], trd.total + 0.25 * weighted["flow_l1"])


def test_moalign_projects_in_its_own_dtype_against_a_float32_head():
    """bf16 DiT tokens against the float32 motion head (the GPU case): the subspace target follows vp's dtype."""
    torch.manual_seed(0)
    head = MotionSubspaceHead(6, 6)
    vp, vy = _moalign_inputs()
    out = moalign_losses(head, vp.bfloat16(), vy, torch.zeros(1, 2, 2, 2, 2), (2, 2))
    assert torch.isfinite(out["aux"])


# -------------------------------------------------------------------------------------------------------- TRD


def _trd_inputs(T: int = 3, seed: int = 4):
    g = torch.Generator().manual_seed(seed)
    vp, vy = torch.randn(2, T, 5, 8, generator=g, dtype=torch.float64), torch.randn(2, T, 5, 8, generator=g, dtype=torch.float64)
    return vp, vy, torch.rand(2, T, 5, generator=g, dtype=torch.float64)


def test_masked_trd_masks_the_temporal_term_by_default():
    vp, vy, w = _trd_inputs()
    default = masked_trd(vp, vy, w, op="and")
    torch.testing.assert_close(default.temporal, masked_trd(vp, vy, w, op="and", mask_temporal=True).temporal)
    assert not torch.allclose(default.temporal, masked_trd(vp, vy, w, op="and", mask_temporal=False).temporal)


def test_the_reference_is_the_materialising_oracle_not_the_fast_path():
    vp, vy, w = _trd_inputs()
    vp.requires_grad_(True)
    ref = masked_trd_reference(vp, vy, w, op="or")
    fast = masked_trd(vp, vy, w, op="or")
    torch.testing.assert_close(ref.total, fast.total)
    assert "RoutedTRD" not in type(ref.spatial.grad_fn).__name__  # autograd through the Grams
    assert "RoutedTRD" in type(fast.spatial.grad_fn).__name__  # the fused custom backward


@pytest.mark.parametrize("eps", [1.0, 0.0])
@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_denominators_below_one_and_an_eps_as_large_as_them(impl: str, eps: float):
    """AND of a small w: every pair weight ~0.01, so each denominator is below 1; eps = 1 is then as large as
    the denominator itself, and with eps = 0 the denominator alone (0.04, still > 0) divides. Both backends must
    divide by (denominator + eps) exactly."""
    vp, vy, _ = _trd_inputs(T=2)
    w = torch.full((2, 2, 5), 0.02, dtype=torch.float64)
    out = masked_trd(vp, vy, w, op="and", eps=eps, impl=impl)
    W = 0.02 * 0.02  # every pair
    xp = torch.nn.functional.normalize(vp, dim=-1).reshape(2, 10, 8)
    xy = torch.nn.functional.normalize(vy, dim=-1).reshape(2, 10, 8)
    err = (xp @ xp.transpose(1, 2) - xy @ xy.transpose(1, 2)).abs()  # (B, 10, 10)
    same = (torch.arange(10)[:, None] // 5) == (torch.arange(10)[None, :] // 5)
    spatial = W * err[:, same].sum() / (W * same.sum() * 2 + eps)
    temporal = W * err[:, ~same].sum() / (W * (~same).sum() * 2 + eps)
    torch.testing.assert_close(out.spatial, spatial)
    torch.testing.assert_close(out.temporal, temporal)


@pytest.mark.parametrize("impl", ["reference", "chunked"])
def test_an_all_zero_routing_with_no_eps_is_zero_not_nan(impl: str):
    vp, vy, _ = _trd_inputs()
    out = masked_trd(vp, vy, torch.zeros(2, 3, 5, dtype=torch.float64), op="and", eps=0.0, impl=impl)
    assert float(out.spatial) == 0.0 and float(out.temporal) == 0.0 and float(out.total) == 0.0


def test_vanilla_trd_weights_its_temporal_term():
    vp, vy, _ = _trd_inputs()
    out = vanilla_trd(vp, vy, lam_tmp=0.3)
    ref = masked_trd(vp, vy, None, op="none", lam_tmp=0.3, eps=0.0)
    torch.testing.assert_close(out.total, ref.total)
    torch.testing.assert_close(out.total, out.spatial + 0.3 * out.temporal)


@pytest.mark.parametrize("T", [1, 2, 3])
def test_videorepa_hinge_on_every_path_and_clip_length(T: int):
    """One frame has no cross-frame pair: its temporal term is 0, not 0/0."""
    vp, vy, _ = _trd_inputs(T=T)
    ref = videorepa_trd_reference(vp, vy, margin=0.05)
    for impl in ("reference", "chunked"):
        out = videorepa_trd(vp, vy, margin=0.05, impl=impl)
        for part in ("spatial", "temporal", "total"):
            torch.testing.assert_close(getattr(out, part), getattr(ref, part), msg=f"{impl} {part}")
    assert torch.isfinite(ref.temporal) and (float(ref.temporal) == 0.0) == (T == 1)
    torch.testing.assert_close(videorepa_trd(vp, vy).total, videorepa_trd(vp, vy, margin=0.1).total)  # default 0.1
    assert not torch.allclose(videorepa_trd(vp, vy).total, ref.total)
    with pytest.raises(ValueError, match=r"^margin must be >= 0, got -0.1$"):
        videorepa_trd(vp, vy, margin=-0.1)


# ------------------------------------------------------- an oracle written here, independent of sara.losses.trd


def naive_trd(vp, vy, w, op, tau, lam_tmp, eps, mask_temporal=True):
    """Eqs. 9-11 materialised in the test's own code (the library's reference shares its decay, pair weights and
    denominators with the fast path, so comparing the two cannot catch a fault in those)."""
    B, T, N, D = vp.shape
    xp = torch.nn.functional.normalize(vp, dim=-1).reshape(B, T * N, D)
    xy = torch.nn.functional.normalize(vy, dim=-1).reshape(B, T * N, D)
    err = (xp @ xp.transpose(1, 2) - xy @ xy.transpose(1, 2)).abs()  # (B, TN, TN)
    wf = torch.ones(B, T * N, dtype=vp.dtype) if w is None else w.reshape(B, T * N)
    a, b = wf[:, :, None], wf[:, None, :]
    W = {"none": torch.ones_like(a * b), "and": a * b, "or": a + b - a * b, "xor": (a - b).abs()}[op]
    t = torch.arange(T).repeat_interleave(N).double()
    gap = (t[:, None] - t[None, :]).abs()
    omega = torch.exp(-gap / tau) if math.isfinite(tau) else torch.ones_like(gap)
    same = gap == 0
    Ws = W * same
    Wt = omega * (W if mask_temporal else torch.ones_like(W)) * ~same
    spatial = (Ws * err).sum() / (Ws.sum() + eps) if Ws.sum() + eps > 0 else (Ws * err).sum() * 0
    temporal = (Wt * err).sum() / (Wt.sum() + eps) if Wt.sum() + eps > 0 else (Wt * err).sum() * 0
    return spatial, temporal, spatial + lam_tmp * temporal


@pytest.mark.parametrize("op", ["none", "and", "or", "xor"])
@pytest.mark.parametrize(("tau", "mask_temporal"), [(1.5, True), (0.7, False), (math.inf, True)])
def test_masked_trd_and_its_gradient_equal_the_oracle(op: str, tau: float, mask_temporal: bool, monkeypatch):
    """Both backends, the chunked one with tiles of 4 tokens and normalisation steps of 3 rows (the defaults, 1024
    and 8192, never split the test's 15 tokens), against `naive_trd`: values and gradients."""
    import sara.losses.trd.chunked as chunked

    monkeypatch.setattr(chunked, "ROW_CHUNK", 3)
    vp, vy, w = _trd_inputs()
    settings = dict(op=op, tau=tau, lam_tmp=0.3, eps=0.05, mask_temporal=mask_temporal)
    x0 = vp.clone().requires_grad_(True)
    s0, t0, total0 = naive_trd(x0, vy, w, op, tau, 0.3, 0.05, mask_temporal)
    (g0,) = torch.autograd.grad(total0, x0)
    for impl, extra in (("reference", {}), ("chunked", {"chunk": 4}), ("chunked", {"chunk": 4, "fused": False})):
        x = vp.clone().requires_grad_(True)
        out = masked_trd(x, vy, w, impl=impl, **settings, **extra)
        torch.testing.assert_close(out.spatial, s0.detach(), msg=f"{impl} {extra} spatial")
        torch.testing.assert_close(out.temporal, t0.detach(), msg=f"{impl} {extra} temporal")
        (g,) = torch.autograd.grad(out.total, x)
        torch.testing.assert_close(g, g0, msg=f"{impl} {extra} gradient")


def test_a_zero_token_gets_the_gradient_of_clamped_normalisation(monkeypatch):
    """F.normalize divides a zero vector by eps instead of its norm; the fused backward must follow it."""
    import sara.losses.trd.chunked as chunked

    monkeypatch.setattr(chunked, "ROW_CHUNK", 4)
    vp, vy, w = _trd_inputs()
    vp[0, 1, 2] = 0.0
    x0, x1 = vp.clone().requires_grad_(True), vp.clone().requires_grad_(True)
    (g0,) = torch.autograd.grad(naive_trd(x0, vy, w, "or", 2.0, 1.0, 1e-6)[2], x0)
    (g1,) = torch.autograd.grad(masked_trd(x1, vy, w, op="or", tau=2.0, impl="chunked", chunk=4).total, x1)
    assert torch.isfinite(g1).all()
    torch.testing.assert_close(g1, g0)


def test_videorepa_hinge_gradient_equals_the_oracle(monkeypatch):
    """The hinge max(|Sy - Sp| - margin, 0) over the full Gram: no gradient where the error is inside the margin."""
    import sara.losses.trd.chunked as chunked

    monkeypatch.setattr(chunked, "ROW_CHUNK", 3)
    vp, vy, _ = _trd_inputs()
    x0, x1 = vp.clone().requires_grad_(True), vp.clone().requires_grad_(True)
    B, T, N, D = vp.shape
    xp = torch.nn.functional.normalize(x0, dim=-1).reshape(B, T * N, D)
    xy = torch.nn.functional.normalize(vy, dim=-1).reshape(B, T * N, D)
    hinge = ((xp @ xp.transpose(1, 2) - xy @ xy.transpose(1, 2)).abs() - 0.3).clamp_min(0)
    (g0,) = torch.autograd.grad(hinge.mean(), x0)
    out = videorepa_trd(x1, vy, margin=0.3, impl="chunked", chunk=4)
    torch.testing.assert_close(out.total, hinge.mean().detach())
    (g1,) = torch.autograd.grad(out.total, x1)
    torch.testing.assert_close(g1, g0)
    assert float(hinge.eq(0).double().mean()) > 0.2  # the margin cut a real share of the pairs


def test_trd_input_errors_are_one_line_and_name_the_item():
    vp, vy, w = _trd_inputs()
    ops, impls = "none, and, or, xor", "auto, triton, chunked, reference"
    cases = [
        ({"op": "nor"}, rf"^unknown routing operator op='nor': expected one of {ops}$"),
        ({"impl": "cuda"}, rf"^unknown impl='cuda': expected one of {impls}$"),
        ({"vy": vy.float()}, r"^vy must match vp's dtype and device \(torch.float64, cpu\), got \(torch.float32, cpu\)$"),
        ({"w": w * 2}, r"^w must lie in \[0, 1\]$"),
        ({"eps": -1e-3}, r"^eps must be >= 0, got -0.001$"),
        ({"chunk": 0}, r"^chunk must be >= 1, got 0$"),
    ]
    for bad, message in cases:
        kwargs = {"vy": vy, "w": w, "op": "and", **bad}
        with pytest.raises(ValueError, match=message):
            masked_trd(vp, kwargs.pop("vy"), kwargs.pop("w"), **kwargs)


def test_one_token_chunks_are_allowed():
    vp, vy, w = _trd_inputs()
    torch.testing.assert_close(masked_trd(vp, vy, w, op="or", chunk=1).total, masked_trd(vp, vy, w, op="or").total)


def test_videorepa_reference_margin_defaults_to_the_papers_0_1():
    vp, vy, _ = _trd_inputs()
    torch.testing.assert_close(videorepa_trd_reference(vp, vy).total, videorepa_trd_reference(vp, vy, margin=0.1).total)


def test_videorepa_impl_picks_the_materialising_reference_or_the_fused_path():
    vp, vy, _ = _trd_inputs()
    vp.requires_grad_(True)
    ref, fast = videorepa_trd(vp, vy, impl="reference"), videorepa_trd(vp, vy, impl="chunked")
    torch.testing.assert_close(ref.total, fast.total)
    assert "RoutedTRD" not in type(ref.spatial.grad_fn).__name__  # autograd through the Grams
    assert "RoutedTRD" in type(fast.spatial.grad_fn).__name__


def test_pair_budget_coverage_keeps_its_scope():
    w = torch.tensor([[[0.9, 0.1, 0.8], [0.2, 0.7, 0.6]]])
    for scope in ("all", "spatial", "temporal"):
        sums = pair_budget_sums(w, "or", scope=scope)
        cover = pair_budget_coverage(w, "or", scope=scope)
        assert cover == pytest.approx({k: sums[k] / sums["pairs"] for k in ("fg_fg", "fg_bg", "bg_bg")})


@pytest.mark.parametrize("op", ["none", "and", "or", "xor"])
def test_no_saliency_is_a_saliency_of_one_for_every_operator(op: str):
    """w = None means w = 1 (and / or: W = 1 on every pair; xor: W = 0, a zero loss), on both backends, with the
    gradient the fast path forms."""
    vp, vy, _ = _trd_inputs()
    ones = torch.ones(2, 3, 5, dtype=torch.float64)
    want_vp = vp.clone().requires_grad_(True)
    want = masked_trd(want_vp, vy, ones, op=op, impl="reference", eps=0.01)
    want.total.backward()
    for impl in ("reference", "chunked"):
        got_vp = vp.clone().requires_grad_(True)
        got = masked_trd(got_vp, vy, None, op=op, impl=impl, eps=0.01)
        got.total.backward()
        torch.testing.assert_close(torch.stack([got.spatial, got.temporal]), torch.stack([want.spatial, want.temporal]))
        torch.testing.assert_close(got_vp.grad, want_vp.grad)
    assert (float(want.total.detach()) == 0.0) == (op == "xor")
