"""`sara code --of <stage>`: one digest of the code a kind of per-run stage can run (DVC stage `code_<stage>`).

The per-run stages of one kind (`train_dit-sft`, `train_dit-sara-or`, ...) share one import closure. Listed in
each of them, the closures made up most of dvc.lock (0.3 MB at 56 stages), which DVC parses and rewrites in full
after every stage it runs: seconds per stage on 2 CPU cores. Instead the closure is listed once, here, and each
per-run stage depends on this stage's digest (`digest_path`): a changed file reruns this stage, whose digest then
changes and reruns every stage of the kind, exactly those that listed the file before; an unchanged closure gives
the same digest, so nothing downstream reruns. The digest is `sara.deps.code_digest`, the content hash of the
closure that Stage 2's resume fingerprint also uses.

Bookkeeping for DVC, not a computation: it opens no MLflow run (that alone would cost more than it saves).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sara.config import Params

SECTIONS: list[str] = []  # reads no params
KINDS = ("train_dit", "sample", "clipscore", "vbench", "rubric", "mechanism")  # the per-run stage kinds
OUT_DIR = Path("tmp/code")  # git-ignored; a deleted digest is rewritten identically, so nothing downstream reruns


def digest_path(kind: str) -> Path:
    return OUT_DIR / f"{kind}.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--of", required=True, choices=KINDS, help="the per-run stage kind (sara/stages/<kind>.py)")


def run(params: Params, of: str) -> Path:
    from sara.deps import code_digest
    from sara.io import write_json

    out, digest = digest_path(of), code_digest(f"sara/stages/{of}.py")
    write_json(out, {"stage": of, "code": digest})
    print(f"[code] {of}: {digest[:12]} -> {out}")
    return out
