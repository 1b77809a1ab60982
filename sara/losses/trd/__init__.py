"""Token-relation distillation (TRD): saliency-routed masked TRD (Eqs. 9-11), vanilla TRD (Eq. 2) and the
original VideoREPA hinge form, with an exact materialising reference and memory-efficient fast paths.

Notation (paper Eqs. 2, 8-11): `vp` (B, T, N, D) projected DiT tokens, `vy` (B, T, N, D) frozen VFM tokens on the
same grid, both L2-normalised along D here. A clip's T*N tokens are flattened to one axis a = t*N + i. For a pair (a, b):
Sp_ab = <vp_a, vp_b>, Sy_ab = <vy_a, vy_b>; the pair is spatial (same frame, Eq. 9) or temporal (t != u, Eq. 10).

Fast path (never builds a (T*N) x (T*N) tensor): the loss is a weighted L1 over pairs, so
  - the denominators (summed pair weights) depend only on w: closed forms from per-frame sums of w (`and`, `or`,
    `none`) or sorted w (`xor`), see `pair_weight_sums`;
  - the gradient wrt the normalised vp is dL/dvp_a = 2 * sum_b c_ab * sign(Sp_ab - Sy_ab) * vp_b (the factor 2
    because c is symmetric), with c_ab the pair's weight over its denominator; it is accumulated tile by tile in
    the same pass as the loss (`fused`), over the upper triangle of tiles only (the Gram is symmetric);
  - the normalisation is backpropagated row-chunked afterwards.
Backends: `chunked` (PyTorch, any device, float32/float64 math) and `triton` (CUDA kernel in trd_triton.py).

The package, one job per module: common.py (the loss record, settings, input checks, the temporal decay and the
closed-form denominators), reference.py (the materialising oracle), chunked.py (the tile pass, its autograd and
the backend choice) and api.py, the public API re-exported here: `masked_trd` (Eqs. 9-11, every
implementation), `vanilla_trd` (Eq. 2) and `videorepa_trd` (the hinge form).
"""

from sara.losses.trd.api import masked_trd, masked_trd_reference, vanilla_trd, videorepa_trd
from sara.losses.trd.common import IMPLS, TRDLoss, pair_weight_sums, temporal_decay
from sara.losses.trd.reference import videorepa_trd_reference

__all__ = ["IMPLS", "TRDLoss", "masked_trd", "masked_trd_reference", "pair_weight_sums", "temporal_decay",
           "vanilla_trd", "videorepa_trd", "videorepa_trd_reference"]
