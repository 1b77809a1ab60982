"""The study file (`<study.out_dir>/build/study.json`): pairs, opaque ids and every rater's plan.

It is the key of the study: it says which run made which video, so it is read by the server and the report and
never sent to a rater. What a rater can see is built from it by `session.py` and `server.py` and names no method.

- A compare pair is the main run's video and a baseline's video of the same prompt and sampling seed (side `a` =
  the main run, `b` = the baseline); an attention-check pair is a clean video (the renderer's ground truth, or the
  main run's video when the prompt has none) against a corrupted copy (`a` = clean).
- Every id (pair, media file, rater) is an HMAC of what it stands for under a key derived from `study.seed`: stable
  across rebuilds of the same inputs (so votes stay valid), meaningless to anyone without the key.
- A rater's plan: every compare pair once, in an order shuffled per rater, the attention checks spread evenly
  through it, and the main run (or the clean video) on the left in exactly half of the pairs (rounded), which
  half shuffled per rater.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import PrivateAttr, ValidationError

from sara.config import StrictModel
from sara.errors import BadDataError, MissingDataError

STUDY_FILE = "study.json"
MEDIA_DIR = "media"
RATERS_FILE = "raters.txt"
# The one question every rater answers (the paper does not give its wording).
QUESTION = ("Which video shows the description better: the right things, in the right places, moving as "
            "described, with natural motion?")
Side = Literal["a", "b"]
Choice = Literal["left", "tie", "right"]


@dataclass(frozen=True)
class StudyLayout:
    """Where the study stages write under `study.out_dir` (the DVC outputs of study_build and study_report)."""

    out_dir: str

    @property
    def build(self) -> str:  # study_build: study.json, media/, raters.txt
        return f"{self.out_dir}/build"

    @property
    def report(self) -> str:  # study_report: study.md, study.json, votes.csv (+ the scripted votes database)
        return f"{self.out_dir}/report"

    @property
    def plots(self) -> str:  # study_report: fig5.png
        return f"{self.out_dir}/plots"

    @property
    def metrics(self) -> str:  # study_report: DVC metrics
        return f"{self.out_dir}/metrics.json"


class Video(StrictModel):
    media: str  # opaque id; the file is media/<media>.mp4
    source: str  # the run that made it, or `groundtruth` / `corrupted` (attention checks)


class Pair(StrictModel):
    id: str  # opaque
    kind: Literal["compare", "attention"]
    prompt_id: str
    seed: int  # sampling seed shared by both videos
    caption: str  # what the rater reads
    a: Video  # compare: the main run; attention: the clean video
    b: Video  # compare: the baseline; attention: the corrupted copy
    baseline: str | None = None  # compare: b's run


class Slot(StrictModel):
    pair: str
    left: Side  # which side of the pair is shown on the left


class Study(StrictModel):
    format: Literal[1] = 1
    fingerprint: str  # sha256 of pairs, plans and media bytes: a votes database belongs to one build
    key: str  # hex HMAC key of every opaque id (presentation tokens too)
    main_run: str
    baselines: list[str]
    prompt_set: str
    fps: int
    question: str = QUESTION
    pairs: list[Pair]
    plans: dict[str, list[Slot]]  # rater id -> the pairs in the order shown

    _by_id: dict[str, Pair] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: object) -> None:
        self._by_id.update({p.id: p for p in self.pairs})

    def pair(self, pair_id: str) -> Pair:
        return self._by_id[pair_id]

    def token(self, *parts: object) -> str:
        return opaque(bytes.fromhex(self.key), *parts)


def opaque(key: bytes, *parts: object, length: int = 16) -> str:
    """An id for `parts` that says nothing about them without `key` (HMAC-SHA256, hex)."""
    msg = "\x1f".join(str(p) for p in parts).encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:length]


def study_key(seed: int) -> bytes:
    return hashlib.sha256(f"blind-study-key\x1f{seed}".encode()).digest()


def rater_plan(pairs: list[Pair], index: int, seed: int) -> list[Slot]:
    """Rater `index`'s plan: compare pairs shuffled, attention checks spread evenly, sides balanced and shuffled."""
    rng = np.random.default_rng([seed, 1, index])  # one stream per rater
    compare = [p for p in pairs if p.kind == "compare"]
    checks = [p for p in pairs if p.kind == "attention"]
    order = [compare[i] for i in rng.permutation(len(compare))]
    for j, i in enumerate(rng.permutation(len(checks))):  # the j-th check after about (j+1)/(k+1) of the pairs
        order.insert(round((j + 1) * len(compare) / (len(checks) + 1)) + j, checks[i])
    a_left = rng.permutation(np.arange(len(order)) < (len(order) + 1) // 2)  # half (rounded up) show `a` left
    return [Slot(pair=p.id, left="a" if left else "b") for p, left in zip(order, a_left)]


def fingerprint(pairs: list[Pair], plans: dict[str, list[Slot]], media_dir: Path) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"pairs": [p.model_dump() for p in pairs],
                         "plans": {r: [s.model_dump() for s in plan] for r, plan in plans.items()}},
                        sort_keys=True).encode())
    for f in sorted(media_dir.glob("*.mp4")):
        h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def load_study(build_dir: str | Path) -> Study:
    """The study of a build folder; a missing or edited file is one error naming it."""
    path = Path(build_dir) / STUDY_FILE
    if not path.is_file():
        raise MissingDataError(f"{path} not found: run `sara study build` first")
    try:
        return Study.model_validate_json(path.read_text())
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise BadDataError(f"{path}: not a study file ({where}: {first['msg']})") from None
