"""`sara code --of <kind> [<kind> ...]`: one digest per kind of per-run stage, of the code it can run (DVC stage `code`).

The per-run stages of one kind (`train_dit-sft`, `train_dit-sara-or`, ...) share one import closure. Listed in
each of them, the closures made up most of dvc.lock (0.3 MB at 56 stages), which DVC parses and rewrites in full
after every stage it runs: seconds per stage on 2 CPU cores. Instead the closure is listed once, here, and each
per-run stage depends on this stage's digest (`digest_path`): a changed file reruns this stage, whose digest then
changes and reruns every stage of the kind, exactly those that listed the file before; an unchanged closure gives
the same digest, so nothing downstream reruns. The digest is `sara.deps.code_digest`, the content hash of the
closure that Stage 2's resume fingerprint also uses.

Every kind's digest comes from one stage: a DVC stage costs its own round-trip (DVC rewrites dvc.lock after it,
~2 s on 2 cores), and an edit that changes one kind's closure changes only that kind's digest, so the other kinds'
stages stay up to date (DVC compares each digest file, not the stage that wrote it).

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
    parser.add_argument("--of", required=True, nargs="+", choices=KINDS,
                        help="the per-run stage kinds (sara/stages/<kind>.py)")


def run(params: Params, of: list[str]) -> list[Path]:
    from sara.deps import code_digest
    from sara.io import write_json

    outs = []
    for kind in of:
        out, digest = digest_path(kind), code_digest(f"sara/stages/{kind}.py")
        write_json(out, {"stage": kind, "code": digest})
        print(f"[code] {kind}: {digest[:12]} -> {out}")
        outs.append(out)
    return outs
