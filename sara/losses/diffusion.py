"""Wan2.2 flow matching for Stage 2 (the paper's Stage 2 loss, Table 11; docs/stage2.md).

Wan is a rectified-flow model. With `sigma` in [0, 1] (0 = clean latent, 1 = pure noise):

    z_t    = (1 - sigma) * z_0 + sigma * eps          (`flow_match_xt`)
    target = eps - z_0                                (`flow_match_target`, the velocity Wan predicts)
    t      = 1000 * sigma                              (the timestep the transformer is given)

The paper writes L_diff as an eps-MSE; we use Wan's native velocity target with a plain mean-squared error and
no per-timestep weighting beyond the sampler (decision recorded in docs/stage2.md).

Timesteps (Table 11: "logit-normal, sample shift 12.0", range t in [0.875, 1.0] x 1000). The sampler draws
u ~ logit-normal(mean, std), applies Wan's shift sigma = s*u / (1 + (s-1)*u), and keeps sigma inside the
high-noise band [t_min, t_max]. How the band is enforced matters; public Wan trainers get it wrong in three
ways: clamping sigma (a point mass at 0.875), applying the band to u before the shift (the shift then pushes
almost every sample above 0.98), or sampling the band uniformly (drops the logit-normal weighting). Here the
band is enforced by exact truncation of the shifted distribution: the shift is monotone, so the band maps to
an interval of u, hence of the normal variable; we draw the normal's CDF uniformly inside that interval and
invert it. This is distributed exactly like rejection sampling (draw, shift, keep if inside the band) but uses
one uniform per sample, so the number of RNG draws per step is fixed, which exact resume relies on.
"""

from __future__ import annotations

import torch

NUM_TRAIN_TIMESTEPS = 1000  # Wan's scheduler scale: timestep = 1000 * sigma


def _bcast(sigma: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, ..., 1) so it broadcasts over a (B, C, F, H, W) latent."""
    return sigma.reshape(sigma.shape[0], *([1] * (like.dim() - 1))).to(like.dtype)


def flow_match_xt(z0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Noised latent on the rectified-flow path: z_t = (1 - sigma) z_0 + sigma eps; sigma: (B,)."""
    s = _bcast(sigma, z0)
    return (1.0 - s) * z0 + s * noise


def flow_match_target(z0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Wan's training target, the flow velocity d z_t / d sigma = eps - z_0."""
    return noise - z0


def diffusion_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L_diff (the paper's Stage 2 loss): mean-squared error between predicted and target velocity, in fp32."""
    return torch.mean((pred.float() - target.float()) ** 2)


def shift_sigma(u: torch.Tensor, shift: float) -> torch.Tensor:
    """Wan's timestep shift: sigma = s u / (1 + (s - 1) u); monotone increasing on [0, 1]."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def unshift_sigma(sigma: torch.Tensor, shift: float) -> torch.Tensor:
    """Inverse of `shift_sigma`: u = sigma / (s - (s - 1) sigma)."""
    return sigma / (shift - (shift - 1.0) * sigma)


def _band_cdf_edges(mean: float, std: float, shift: float, t_min: float, t_max: float) -> tuple[float, float]:
    """Standard-normal CDF values of the band edges [t_min, t_max] pulled back through shift and logit."""
    edges = unshift_sigma(torch.tensor([t_min, t_max], dtype=torch.float64), shift)  # (2,) band in u
    z = (torch.logit(edges) - mean) / std  # logit(1) = +inf maps to CDF 1 exactly
    cdf = torch.special.ndtr(z)
    return float(cdf[0]), float(cdf[1])


def sample_band_sigmas(
    n: int,
    generator: torch.Generator | None = None,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    shift: float = 12.0,
    t_min: float = 0.875,
    t_max: float = 1.0,
) -> torch.Tensor:
    """(n,) float32 sigmas from the shifted logit-normal truncated to [t_min, t_max] (Table 11, §9 item 21).

    Exactly the law of: u = sigmoid(mean + std * N(0, 1)); sigma = shift_sigma(u); keep if t_min <= sigma <= t_max.
    Draws exactly n uniforms from `generator` (float64), whatever the acceptance rate of the band.
    """
    if not 0.0 <= t_min < t_max <= 1.0:
        raise ValueError(f"timestep band must satisfy 0 <= t_min < t_max <= 1, got [{t_min}, {t_max}]")
    if std <= 0 or shift <= 0:
        raise ValueError(f"logit_std and shift must be > 0, got std={std}, shift={shift}")
    lo, hi = _band_cdf_edges(mean, std, shift, t_min, t_max)
    if not hi > lo:
        raise ValueError(f"the band [{t_min}, {t_max}] has no probability mass under mean={mean}, std={std}, shift={shift}")
    v = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)  # (n,) uniform in CDF space
    u = torch.sigmoid(mean + std * torch.special.ndtri(v))  # (n,) logit-normal restricted to the band's u-range
    sigma = shift_sigma(u, shift).clamp_(t_min, t_max)  # clamp only removes float rounding at the edges
    return sigma.to(torch.float32)


def band_cdf(sigma: torch.Tensor, *, mean: float, std: float, shift: float, t_min: float, t_max: float) -> torch.Tensor:
    """CDF of `sample_band_sigmas`' law at `sigma` (used by tests and diagnostics)."""
    lo, hi = _band_cdf_edges(mean, std, shift, t_min, t_max)
    s = sigma.to(torch.float64).clamp(t_min, t_max)
    z = (torch.logit(unshift_sigma(s, shift)) - mean) / std
    return ((torch.special.ndtr(z) - lo) / (hi - lo)).clamp(0.0, 1.0)


def sigma_to_timestep(sigma: torch.Tensor) -> torch.Tensor:
    """Transformer timestep for a sigma: t = 1000 * sigma (Wan's FlowMatch scheduler convention)."""
    return sigma * NUM_TRAIN_TIMESTEPS
