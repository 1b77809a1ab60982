"""Pair-routing operators (the paper's Eq. 8): per-token saliency -> per-pair weight.

A routing operator maps the saliencies `w_a`, `w_b` in [0, 1] of the two tokens of a pair to the pair's weight
`W` in [0, 1]. The three named operators are fuzzy-logic relaxations of Boolean AND / OR / XOR; on binary `w`
they reduce to the truth tables (AND keeps FG-FG, OR keeps FG-FG and FG-BG, XOR keeps FG-BG only). `none` is the
constant weight 1 (vanilla TRD, Eq. 2).
"""

from __future__ import annotations

import torch

from sara.runs import ROUTING_OPS  # the operators are named in the run vocabulary


def check_op(op: str) -> str:
    """Return `op` if it is a known routing operator, else raise a ValueError naming it."""
    if op not in ROUTING_OPS:
        raise ValueError(f"unknown routing operator op={op!r}: expected one of {', '.join(ROUTING_OPS)}")
    return op


def pair_weights(w_a: torch.Tensor, w_b: torch.Tensor, op: str) -> torch.Tensor:
    """Pair weight W(w_a, w_b) of Eq. 8, broadcasting `w_a` against `w_b`.

    none: 1;  and: w_a * w_b;  or: w_a + w_b - w_a * w_b;  xor: |w_a - w_b|.
    The result has the broadcast shape of the inputs and their (promoted) dtype.
    """
    check_op(op)
    if op == "and":
        return w_a * w_b
    if op == "or":
        return w_a + w_b - w_a * w_b
    if op == "xor":
        return (w_a - w_b).abs()
    # none: constant 1 in the broadcast shape (no reference to the values, so no gradient path either)
    shape = torch.broadcast_shapes(w_a.shape, w_b.shape)
    dtype = torch.promote_types(w_a.dtype, w_b.dtype)
    return torch.ones(shape, dtype=dtype, device=w_a.device)
