"""Rooms by job. sara/losses/trd is a package with one job per module: one public `masked_trd` (every
implementation behind `impl`), the temporal decay written once, the reference and the chunked backend in modules of
their own. Evaluation reads plain data types, never a training loop."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import torch

import sara.losses.trd as trd

PACKAGE = Path(trd.__file__).parent
ROOT = Path(__file__).resolve().parents[1]


def test_one_public_masked_trd_dispatches_every_implementation():
    assert not hasattr(trd, "masked_trd_chunked")
    vp, vy, w = torch.randn(1, 3, 4, 8, dtype=torch.float64), torch.randn(1, 3, 4, 8, dtype=torch.float64), torch.rand(1, 3, 4, dtype=torch.float64)
    want = trd.masked_trd_reference(vp, vy, w, op="xor", tau=2.0).total
    for impl, extra in (("reference", {}), ("chunked", {"chunk": 5}), ("chunked", {"chunk": 2, "fused": False})):
        got = trd.masked_trd(vp, vy, w, op="xor", tau=2.0, impl=impl, **extra).total
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_the_temporal_decay_is_computed_in_one_place():
    """exp(-|t - u| / tau) was written three times (denominators, reference, chunked tiles)."""
    hits = [f"{p.name}:{i}" for p in sorted(PACKAGE.glob("*.py"))
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"torch\.exp\(-", line)]
    assert len(hits) == 1, hits
    gap = torch.tensor([0.0, 1.0, 3.0])
    torch.testing.assert_close(trd.common.decay(gap, 2.0), torch.exp(-gap / 2.0))
    assert torch.equal(trd.common.decay(gap, math.inf), torch.ones(3))
    omega = trd.temporal_decay(3, 2.0)
    assert omega[0, 0] == 0 and math.isclose(float(omega[0, 2]), math.exp(-1.0))


def test_evaluation_imports_no_training_loop():
    """evaluation/aligner.py took `Unit` from sara/train/stage1.py: the supervision units are data
    (sara.data.supervision), which the loop and the evaluation both read."""
    hits = []
    for path in sorted((ROOT / "evaluation").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in getattr(node, "names", [])] if isinstance(node, ast.Import) else []
            hits += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names if n.startswith("sara.train")]
    assert not hits, hits


def test_the_rubric_and_report_stages_start_without_torch():
    """A stage process pays its imports at start-up (~50 stages in the embedded DAG): the rubric judges rendered
    videos and the report reads JSON, neither needs torch or diffusers (sara.sample imported the DiT at the top)."""
    import subprocess
    import sys

    code = ("import sys, sara.cli, sara.stages.report, evaluation.rubric.evaluate, evaluation.rubric.summaries; "
            "heavy = sorted(m for m in ('torch', 'diffusers') if m in sys.modules); assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
