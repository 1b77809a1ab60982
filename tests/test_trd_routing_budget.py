"""Routing operators (Eq. 8) and pair-budget analytics (the paper's App. A) against truth tables and brute force."""

from __future__ import annotations

import pytest
import torch

from sara.losses.budget import pair_budget_coverage, pair_budget_shares, pair_budget_sums
from sara.losses.routing import pair_weights

BINARY_TABLES = {
    # (w_a, w_b) -> W for (0,0), (0,1), (1,0), (1,1)
    "none": [1.0, 1.0, 1.0, 1.0],
    "and": [0.0, 0.0, 0.0, 1.0],
    "or": [0.0, 1.0, 1.0, 1.0],
    "xor": [0.0, 1.0, 1.0, 0.0],
}


@pytest.mark.parametrize("op", list(BINARY_TABLES))
def test_truth_tables_on_binary_w(op: str) -> None:
    a = torch.tensor([0.0, 0.0, 1.0, 1.0])
    b = torch.tensor([0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(pair_weights(a, b, op), torch.tensor(BINARY_TABLES[op]))


def test_continuous_formulas_and_broadcasting() -> None:
    a = torch.tensor([0.2, 0.7], dtype=torch.float64)[:, None]  # (2, 1)
    b = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)[None, :]  # (1, 3)
    torch.testing.assert_close(pair_weights(a, b, "and"), a * b)
    torch.testing.assert_close(pair_weights(a, b, "or"), a + b - a * b)
    torch.testing.assert_close(pair_weights(a, b, "xor"), (a - b).abs())
    ones = pair_weights(a, b, "none")
    assert ones.shape == (2, 3) and ones.dtype == torch.float64 and bool((ones == 1).all())
    assert float(pair_weights(a, b, "or").min()) >= 0 and float(pair_weights(a, b, "or").max()) <= 1


def test_unknown_op_is_named() -> None:
    with pytest.raises(ValueError, match="unknown routing operator op='nand'"):
        pair_weights(torch.zeros(1), torch.zeros(1), "nand")


def _brute_sums(w: torch.Tensor, fg: torch.Tensor, op: str, scope: str) -> dict[str, float]:
    """Materialise every ordered pair of each clip and sum W by category (the oracle)."""
    B, T, N = w.shape
    out = {"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 0.0}
    frame = torch.arange(T).repeat_interleave(N)  # (T*N,) frame of each token
    for b in range(B):
        v, f = w[b].reshape(-1).double(), fg[b].reshape(-1)  # (T*N,)
        W = pair_weights(v[:, None], v[None, :], op)  # (T*N, T*N)
        same = frame[:, None] == frame[None, :]
        keep = {"all": torch.ones_like(same), "spatial": same, "temporal": ~same}[scope]
        ff = f[:, None] & f[None, :]
        bb = ~f[:, None] & ~f[None, :]
        out["fg_fg"] += float((W * (ff & keep)).sum())
        out["bg_bg"] += float((W * (bb & keep)).sum())
        out["fg_bg"] += float((W * (~ff & ~bb & keep)).sum())
    return out


@pytest.mark.parametrize("op", ["none", "and", "or", "xor"])
@pytest.mark.parametrize("scope", ["all", "spatial", "temporal"])
def test_budget_sums_match_brute_force_continuous(op: str, scope: str) -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.rand(2, 3, 7, generator=g)
    w[0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # exact 0, 1 and a tie with the threshold
    fg = w > 0.5
    got = pair_budget_sums(w, op, scope=scope)
    ref = _brute_sums(w, fg, op, scope)
    for k in ref:
        assert got[k] == pytest.approx(ref[k], rel=1e-10, abs=1e-10), k


def test_hand_made_binary_mask_shares() -> None:
    # one clip, 2 frames x 5 tokens, 4 of 10 FG: p = 0.4
    w = torch.tensor([[[1.0, 1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0, 0.0]]])
    p = 0.4
    s = pair_budget_shares(w, "none")
    assert s == pytest.approx({"fg_fg": p * p, "fg_bg": 2 * p * (1 - p), "bg_bg": (1 - p) ** 2})
    s_or = pair_budget_shares(w, "or")
    kept = p * p + 2 * p * (1 - p)
    assert s_or == pytest.approx({"fg_fg": p * p / kept, "fg_bg": 2 * p * (1 - p) / kept, "bg_bg": 0.0})
    assert pair_budget_shares(w, "and") == pytest.approx({"fg_fg": 1.0, "fg_bg": 0.0, "bg_bg": 0.0})
    assert pair_budget_shares(w, "xor") == pytest.approx({"fg_fg": 0.0, "fg_bg": 1.0, "bg_bg": 0.0})
    # Fig. 8b basis: fraction of the uniform budget
    assert pair_budget_coverage(w, "or") == pytest.approx({"fg_fg": p * p, "fg_bg": 2 * p * (1 - p), "bg_bg": 0.0})


def test_explicit_fg_overrides_threshold_and_zero_budget() -> None:
    w = torch.full((1, 1, 4), 0.3)
    fg = torch.tensor([[[True, False, False, False]]])
    s = pair_budget_shares(w, "none", fg=fg)
    assert s == pytest.approx({"fg_fg": 1 / 16, "fg_bg": 6 / 16, "bg_bg": 9 / 16})
    assert pair_budget_shares(w, "xor") == {"fg_fg": 0.0, "fg_bg": 0.0, "bg_bg": 0.0}  # constant w: no weight


def test_budget_bad_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"w must have shape \(B, T, N\)"):
        pair_budget_shares(torch.zeros(4, 4), "or")
    with pytest.raises(ValueError, match=r"w must lie in \[0, 1\]"):
        pair_budget_shares(torch.full((1, 1, 2), 1.5), "or")
    with pytest.raises(ValueError, match="fg must be a bool tensor"):
        pair_budget_shares(torch.zeros(1, 1, 2), "or", fg=torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="unknown scope"):
        pair_budget_shares(torch.zeros(1, 1, 2), "or", scope="diag")
