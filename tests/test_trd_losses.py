"""Masked TRD (Eqs. 9-11): the chunked fast path against the materialising reference, gradients, Eq. 2, hinge."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sara.losses.trd import (
    masked_trd,
    masked_trd_reference,
    pair_weight_sums,
    temporal_decay,
    vanilla_trd,
    videorepa_trd,
    videorepa_trd_reference,
)
from sara.losses.routing import pair_weights

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-6, atol=1e-7)}
# gradients are compared after dividing by their largest entry; float32 rounding of sums of ~(T*N) terms
GTOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=1e-5, atol=2e-6)}


def _inputs(B: int, T: int, N: int, D: int, dtype: torch.dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    vp = torch.randn(B, T, N, D, generator=g, dtype=dtype)
    vy = torch.randn(B, T, N, D, generator=g, dtype=dtype)
    w = torch.rand(B, T, N, generator=g, dtype=dtype)
    w.view(-1)[::4] = 0.0  # exact zeros and ones
    w.view(-1)[1::5] = 1.0
    return vp, vy, w


def _loss_and_grads(fn, vp, vy, w, **kw):
    vp = vp.clone().requires_grad_(True)
    out = fn(vp, vy, w, **kw)
    g_total = torch.autograd.grad(out.total, vp, retain_graph=True)[0]
    g_spa = torch.autograd.grad(out.spatial, vp, retain_graph=True)[0]  # exercises the recompute backward
    return out, g_total, g_spa


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("op", ["none", "and", "or", "xor"])
@pytest.mark.parametrize("tau", [math.inf, 2.5])
@pytest.mark.parametrize("mask_temporal", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 6, 3), (3, 1, 9, 4)])
def test_chunked_matches_reference(dtype, op, tau, mask_temporal, shape) -> None:
    vp, vy, w = _inputs(*shape, dtype=dtype)
    kw = dict(op=op, tau=tau, lam_tmp=0.7, mask_temporal=mask_temporal)
    ref, rg, rgs = _loss_and_grads(masked_trd_reference, vp, vy, w, **kw)
    # chunk 4 does not divide N: tiles straddle frame boundaries and the last tile is ragged
    fast, fg, fgs = _loss_and_grads(lambda *a, **k: masked_trd(*a, chunk=4, **k), vp, vy, w, **kw)
    for name in ("spatial", "temporal", "total"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name), **TOL[dtype])
    scale = float(rg.abs().max()) or 1.0
    torch.testing.assert_close(fg / scale, rg / scale, **GTOL[dtype])
    scale_s = float(rgs.abs().max()) or 1.0
    torch.testing.assert_close(fgs / scale_s, rgs / scale_s, **GTOL[dtype])


@pytest.mark.parametrize("fused", [True, False])
def test_recompute_and_fused_give_the_same_gradient(fused: bool) -> None:
    vp, vy, w = _inputs(2, 3, 4, 5, torch.float64)
    ref, rg, _ = _loss_and_grads(masked_trd_reference, vp, vy, w, op="or", lam_tmp=0.3)
    fast, fg, _ = _loss_and_grads(lambda *a, **k: masked_trd(*a, chunk=5, fused=fused, **k), vp, vy, w, op="or", lam_tmp=0.3)
    torch.testing.assert_close(fg, rg, **TOL[torch.float64])
    # a scaled total (lambda_TRD * L) takes the fused branch too
    vp2 = vp.clone().requires_grad_(True)
    (0.5 * masked_trd(vp2, vy, w, op="or", lam_tmp=0.3, chunk=5, fused=fused).total).backward()
    torch.testing.assert_close(vp2.grad, 0.5 * rg, **TOL[torch.float64])


@pytest.mark.parametrize("op", ["and", "or", "xor"])
@pytest.mark.parametrize("tau", [math.inf, 1.5])
def test_gradcheck_fast_path_float64(op: str, tau: float) -> None:
    vp, vy, w = _inputs(1, 3, 3, 4, torch.float64, seed=3)
    vp.requires_grad_(True)

    def total(x):
        return masked_trd(x, vy, w, op=op, tau=tau, lam_tmp=0.6, chunk=2).total

    def spatial(x):
        return masked_trd(x, vy, w, op=op, tau=tau, chunk=2).spatial

    assert torch.autograd.gradcheck(total, (vp,), eps=1e-6, atol=1e-7)
    assert torch.autograd.gradcheck(spatial, (vp,), eps=1e-6, atol=1e-7)


def test_gradcheck_hinge_float64() -> None:
    vp, vy, _ = _inputs(1, 2, 3, 4, torch.float64, seed=5)
    vp.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: videorepa_trd(x, vy, margin=0.05, chunk=2).total, (vp,), eps=1e-6, atol=1e-7)


def test_op_none_equals_eq2_up_to_eps() -> None:
    B, T, N, D = 2, 3, 4, 5
    vp, vy, _ = _inputs(B, T, N, D, torch.float64)
    xp = torch.nn.functional.normalize(vp, dim=-1)
    xy = torch.nn.functional.normalize(vy, dim=-1)
    # Eq. 2 written out: spatial mean over (t, i, j), temporal mean over (t != u, i, j), averaged over the batch
    spa = sum((xy[b, t] @ xy[b, t].T - xp[b, t] @ xp[b, t].T).abs().sum() for b in range(B) for t in range(T))
    tmp = sum(
        (xy[b, t] @ xy[b, u].T - xp[b, t] @ xp[b, u].T).abs().sum()
        for b in range(B)
        for t in range(T)
        for u in range(T)
        if t != u
    )
    eq2 = spa / (B * T * N * N) + tmp / (B * T * (T - 1) * N * N)
    torch.testing.assert_close(vanilla_trd(vp, vy).total, eq2, rtol=1e-12, atol=0)
    masked = masked_trd(vp, vy, None, op="none").total
    assert abs(float(masked - eq2)) <= 1e-6 * float(eq2) and float(masked) < float(eq2)  # eps only shrinks it
    # w = 1 with and/or is the same as none
    ones = torch.ones(B, T, N, dtype=torch.float64)
    torch.testing.assert_close(masked_trd(vp, vy, ones, op="or").total, masked, rtol=1e-12, atol=0)


def test_hinge_matches_reference_and_margin_zero_is_l1() -> None:
    vp, vy, _ = _inputs(2, 3, 4, 6, torch.float64)
    for margin in (0.0, 0.1):
        fast = videorepa_trd(vp, vy, margin=margin, chunk=5)
        ref = videorepa_trd_reference(vp, vy, margin)
        for name in ("spatial", "temporal", "total"):
            torch.testing.assert_close(getattr(fast, name), getattr(ref, name), **TOL[torch.float64])
    # margin 0: the full-Gram mean of |Sy - Sp|
    l1 = videorepa_trd(vp, vy, margin=0.0).total
    xp = torch.nn.functional.normalize(vp, dim=-1).reshape(2, 12, 6)
    xy = torch.nn.functional.normalize(vy, dim=-1).reshape(2, 12, 6)
    torch.testing.assert_close(l1, (xy @ xy.mT - xp @ xp.mT).abs().mean(), rtol=1e-12, atol=1e-14)
    assert float(videorepa_trd(vp, vy, margin=0.1).total) < float(l1)


def test_denominators_closed_forms_match_brute_force() -> None:
    _, _, w = _inputs(2, 4, 5, 1, torch.float64)
    B, T, N = w.shape
    for op in ("none", "and", "or", "xor"):
        for tau in (math.inf, 2.0):
            for mt in (True, False):
                spa, tmp = pair_weight_sums(w, (B, T, N), op, tau, mt)
                Wsp = pair_weights(w[..., :, None], w[..., None, :], op)  # (B, T, N, N)
                Wx = pair_weights(w[:, :, None, :, None], w[:, None, :, None, :], op)  # (B, T, T, N, N)
                om = temporal_decay(T, tau)[None, :, :, None, None]
                ref_t = (om * (Wx if mt else torch.ones_like(Wx))).sum()
                assert spa == pytest.approx(float(Wsp.sum()), rel=1e-12)
                assert tmp == pytest.approx(float(ref_t), rel=1e-12)


def test_w_and_vy_get_no_gradient_and_w_is_not_mutated() -> None:
    vp, vy, w = _inputs(1, 2, 3, 4, torch.float64)
    vp.requires_grad_(True)
    vy.requires_grad_(True)
    w.requires_grad_(True)
    w0 = w.detach().clone()
    masked_trd(vp, vy, w).total.backward()
    assert vp.grad is not None and vy.grad is None and w.grad is None
    torch.testing.assert_close(w.detach(), w0)


def test_normalisation_gradient_matches_f_normalize_on_tiny_clamped_and_zero_tokens() -> None:
    """The chunked backend's gradient through the L2 normalisation against autograd through F.normalize, which
    divides by max(||x||, 1e-12): a token of norm 3e-12 gets the usual radial projection, one of norm 0.7e-12 is
    clamped (x / 1e-12 is linear: no projection), a zero token too. Rows are compared relative to their largest
    entry (the tiny tokens' gradients are ~1e12)."""
    from sara.losses.trd.chunked import _normalise_backward, normalise

    g = torch.Generator().manual_seed(0)
    v = torch.randn(1, 4, 8, generator=g, dtype=torch.float64)  # (B, n, D)
    for k, norm in ((1, 3e-12), (2, 0.7e-12)):
        v[0, k] *= norm / v[0, k].norm()
    v[0, 3] = 0.0
    G = torch.randn(1, 4, 8, generator=g, dtype=torch.float64)
    _, inv = normalise(v, torch.float64)
    got = _normalise_backward(v, inv, G, torch.tensor(2.0, dtype=torch.float64))
    x = v.clone().requires_grad_(True)
    (2.0 * (G * torch.nn.functional.normalize(x, dim=-1)).sum()).backward()
    scale = x.grad.abs().amax(-1, keepdim=True)  # (B, n, 1)
    torch.testing.assert_close(got / scale, x.grad / scale, rtol=0, atol=1e-12)

def test_bf16_inputs_accumulate_in_float32() -> None:
    vp, vy, w = _inputs(1, 3, 8, 16, torch.float32)
    ref = masked_trd_reference(vp.bfloat16(), vy.bfloat16(), w.bfloat16())
    fast = masked_trd(vp.bfloat16(), vy.bfloat16(), w.bfloat16())
    assert fast.total.dtype == torch.float32
    torch.testing.assert_close(fast.total, ref.total, rtol=1e-5, atol=1e-7)
    x = vp.bfloat16().requires_grad_(True)
    masked_trd(x, vy.bfloat16(), w).total.backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16


def test_bad_inputs_are_named() -> None:
    vp, vy, w = _inputs(1, 2, 3, 4, torch.float32)
    with pytest.raises(ValueError, match=r"vp must have shape \(B, T, N, D\)"):
        masked_trd(vp[0], vy[0])
    with pytest.raises(ValueError, match="vy must have the shape of vp"):
        masked_trd(vp, vy[:, :1])
    with pytest.raises(ValueError, match=r"w must have shape \(B, T, N\) = \(1, 2, 3\)"):
        masked_trd(vp, vy, w[:, :1])
    with pytest.raises(ValueError, match=r"w must lie in \[0, 1\]"):
        masked_trd(vp, vy, w + 1.0)
    with pytest.raises(ValueError, match="unknown routing operator op='nor'"):
        masked_trd(vp, vy, w, op="nor")
    with pytest.raises(ValueError, match="tau must be > 0"):
        masked_trd(vp, vy, w, tau=0.0)
    with pytest.raises(ValueError, match="unknown impl='cuda'"):
        masked_trd(vp, vy, w, impl="cuda")
    with pytest.raises(ValueError, match="impl='triton' needs CUDA tensors"):
        masked_trd(vp, vy, w, impl="triton")


def test_triton_kernel_in_interpreter_when_available() -> None:
    """The Triton kernel against the chunked backend through Triton's CPU interpreter (fp32 and fp16)."""
    try:
        import triton  # noqa: F401
    except Exception:
        pytest.skip("triton is not importable in this environment; the kernel is checked on the GPU benchmark run")
    script = Path(__file__).with_name("trd_triton_interpreter_check.py")
    env = dict(os.environ, TRITON_INTERPRET="1")
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
