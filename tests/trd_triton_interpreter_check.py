"""Run under TRITON_INTERPRET=1: the Triton tile kernel against the chunked backend (exit 1 on mismatch)."""

from __future__ import annotations

import math
import sys

import torch

from sara.losses.trd import chunked, common
from sara.losses.trd_triton import TileConfig, triton_tiles


def main() -> int:
    torch.manual_seed(0)
    B, T, N, D = 2, 3, 11, 40  # 33 tokens: 16-token tiles straddle frames, the last tile is ragged, D % 16 != 0
    n = T * N
    bad = 0
    # (op, tau, mask_temporal, margin, symmetric, gradient mode); strip_bytes below makes 2 strips for "gemm"
    cases = [("or", math.inf, True, 0.0, True, "atomic"), ("xor", 3.0, True, 0.0, True, "atomic"),
             ("and", 3.0, False, 0.0, False, "atomic"), ("none", math.inf, True, 0.1, True, "atomic"),
             ("or", math.inf, True, 0.0, True, "gemm"), ("xor", 3.0, False, 0.0, True, "gemm"),
             ("none", 2.0, True, 0.1, True, "gemm")]
    for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 2e-3)):
        for op, tau, mt, margin, sym, mode in cases:
            xh, _ = chunked.normalise(torch.randn(B, n, D), dtype)
            yh, _ = chunked.normalise(torch.randn(B, n, D), dtype)
            w = None if op == "none" else torch.rand(B, n)
            spec = common.Spec(N=N, op=op, tau=tau, mask_temporal=mt, margin=margin, lam_tmp=1.0, alpha_s=1.0,
                             alpha_t=1.0, backend="triton", fused=True, chunk=16)
            strip = 2 * B * n * xh.element_size() * 16  # two 16-token column blocks per strip
            cfg = TileConfig(block=16, block_k=16, num_warps=4, num_stages=1, symmetric=sym, group=2, grad=mode,
                             strip_bytes=strip)
            got = triton_tiles(xh, yh, w, spec, 0.3, -0.7, True, True, config=cfg)
            ref = chunked.chunked_tiles(xh.double(), yh.double(), None if w is None else w.double(), spec, 0.3, -0.7,
                                    True, True)
            for name, a, r in zip(("num_spa", "num_tmp", "G"), got, ref):
                err = float((a.double() - r).abs().max() / r.abs().max().clamp_min(1e-30))
                print(f"{dtype} {op} symmetric={sym} grad={mode} {name}: rel err {err:.2e}")
                bad += err > tol
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
