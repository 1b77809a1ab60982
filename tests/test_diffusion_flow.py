"""Flow matching and the band-limited shifted logit-normal sampler, against naive references."""

from __future__ import annotations

import math
import random

import pytest
import torch

from sara.losses.diffusion import (
    band_cdf,
    diffusion_loss,
    flow_match_target,
    flow_match_xt,
    sample_band_sigmas,
    shift_sigma,
    sigma_to_timestep,
    unshift_sigma,
)

BAND = dict(mean=0.0, std=1.0, shift=12.0, t_min=0.875, t_max=1.0)


def _naive_rejection(n: int, seed: int, mean: float, std: float, shift: float, t_min: float, t_max: float) -> list[float]:
    """Scalar reference: draw logit-normal u, shift it, keep it only if inside the band."""
    rng = random.Random(seed)
    out: list[float] = []
    while len(out) < n:
        u = 1.0 / (1.0 + math.exp(-rng.gauss(mean, std)))
        s = shift * u / (1.0 + (shift - 1.0) * u)
        if t_min <= s <= t_max:
            out.append(s)
    return out


def _ks_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    grid = torch.sort(torch.cat([a, b])).values
    fa = torch.searchsorted(torch.sort(a).values, grid, right=True) / a.numel()
    fb = torch.searchsorted(torch.sort(b).values, grid, right=True) / b.numel()
    return float((fa - fb).abs().max())


def test_xt_and_target_match_elementwise_reference():
    g = torch.Generator().manual_seed(0)
    z0, eps = torch.randn(3, 4, 2, 5, 5, generator=g), torch.randn(3, 4, 2, 5, 5, generator=g)
    sigma = torch.tensor([0.0, 0.9, 1.0])
    xt = flow_match_xt(z0, eps, sigma)
    for b in range(3):
        torch.testing.assert_close(xt[b], (1 - float(sigma[b])) * z0[b] + float(sigma[b]) * eps[b])
    torch.testing.assert_close(xt[0], z0[0])  # sigma 0 = clean, sigma 1 = pure noise
    torch.testing.assert_close(xt[2], eps[2])
    # the target is the derivative of z_t along sigma
    h = 1e-3
    fd = (flow_match_xt(z0, eps, sigma.clamp(max=1 - h) + h) - flow_match_xt(z0, eps, sigma.clamp(max=1 - h))) / h
    torch.testing.assert_close(flow_match_target(z0, eps), fd, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(diffusion_loss(xt, z0), ((xt - z0) ** 2).mean())


def test_shift_round_trips_and_timestep_scale():
    u = torch.linspace(0, 1, 101, dtype=torch.float64)
    torch.testing.assert_close(unshift_sigma(shift_sigma(u, 12.0), 12.0), u)
    torch.testing.assert_close(sigma_to_timestep(torch.tensor([0.875, 1.0])), torch.tensor([875.0, 1000.0]))


def test_band_sampler_stays_in_band_and_matches_rejection_reference():
    s = sample_band_sigmas(20000, torch.Generator().manual_seed(1), **BAND)
    assert s.dtype == torch.float32 and s.shape == (20000,)
    assert float(s.min()) >= 0.875 and float(s.max()) <= 1.0
    ref = torch.tensor(_naive_rejection(20000, 2, **BAND), dtype=torch.float64)
    # two independent samples of one law: KS statistic well under the 0.1% critical value (~0.0195 at n=m=20000)
    assert _ks_two_sample(s.double(), ref) < 0.0195
    # and against the analytic CDF of the truncated law
    emp = torch.arange(1, 20001, dtype=torch.float64) / 20000
    assert float((band_cdf(torch.sort(s.double()).values, **BAND) - emp).abs().max()) < 0.014


def test_band_sampler_has_no_point_mass_at_the_edge():
    # clamping (a common bug) would put ~30% of the samples exactly at 0.875
    s = sample_band_sigmas(5000, torch.Generator().manual_seed(3), **BAND)
    assert float((s == 0.875).float().mean()) < 1e-3
    # applying the band before the shift (another common bug) gives a median above 0.98; the right law does not
    assert 0.93 < float(s.median()) < 0.975


def test_band_sampler_draws_a_fixed_number_of_uniforms():
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    sample_band_sigmas(13, g1, **BAND)
    torch.rand(13, generator=g2, dtype=torch.float64)
    assert torch.equal(g1.get_state(), g2.get_state())
    a = sample_band_sigmas(5, torch.Generator().manual_seed(9), **BAND)
    b = sample_band_sigmas(5, torch.Generator().manual_seed(9), **BAND)
    assert torch.equal(a, b)


def test_band_sampler_refuses_bad_bands():
    with pytest.raises(ValueError, match=r"0 <= t_min < t_max <= 1"):
        sample_band_sigmas(2, mean=0.0, std=1.0, shift=12.0, t_min=0.9, t_max=0.8)
    with pytest.raises(ValueError, match="shift must be > 0"):
        sample_band_sigmas(2, mean=0.0, std=1.0, shift=0.0, t_min=0.1, t_max=0.8)
