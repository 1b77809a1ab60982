"""The claim vocabulary: `<run> > <run> on <metric>`, the form a pre-registered claim takes in params.

A comparison's primary claims are written in `comparison.claims` before its runs are trained (pre-registration):
the family is fixed before any score exists, and evaluation/comparison/primary.py tests it with Holm-Bonferroni. This module
only reads the words of a claim, so the params can be checked before any work starts; the numbers are the
evaluation's. No numpy or torch here: sara.config imports it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RELATIONS: tuple[str, ...] = (">", "<")  # a directional claim: a is higher (>) or lower (<) than b
# A primary claim is about an aggregate score; the 13 single dimensions are many, and exploratory.
CLAIM_METRICS: tuple[str, ...] = ("TA", "MQ")
CLAIM_FORM = "<run> > <run> on <metric>"  # or `<`; e.g. `sara-or > videorepa on TA`
_CLAIM = re.compile(r"^(?P<a>\S+) (?P<rel>[<>]) (?P<b>\S+) on (?P<metric>\S+)$")


@dataclass(frozen=True)
class Claim:
    """`a relation b on metric`: run a scores higher (`>`) or lower (`<`) than run b on the metric (TA, MQ or a
    rubric dimension), in a paired comparison over the videos both runs scored."""

    a: str
    relation: str
    b: str
    metric: str

    @property
    def text(self) -> str:
        return f"{self.a} {self.relation} {self.b} on {self.metric}"

    def __str__(self) -> str:
        return self.text

    @property
    def sign(self) -> int:
        """+1 when the claim says a - b > 0, -1 when it says a - b < 0."""
        return 1 if self.relation == ">" else -1


def parse_claim(text: str) -> Claim:
    """`'sara-or > videorepa on TA'` -> Claim; anything else is a ValueError naming the claim and what is wrong.
    Each run is `base` (the untrained model) or a run of the registry (sara.runs.Run.parse)."""
    from sara.runs import BASE, Run

    m = _CLAIM.match(" ".join(str(text).split()))  # any run of spaces counts as one
    if m is None:
        raise ValueError(f"claim {text!r} is not of the form {CLAIM_FORM!r}")
    if m["metric"] not in CLAIM_METRICS:
        raise ValueError(f"claim {text!r}: metric {m['metric']!r} is not one of {', '.join(CLAIM_METRICS)}")
    if m["a"] == m["b"]:
        raise ValueError(f"claim {text!r} compares {m['a']} with itself")
    for run in (m["a"], m["b"]):
        if run != BASE:
            try:
                Run.parse(run)
            except ValueError as err:
                raise ValueError(f"claim {text!r}: {err}") from None
    return Claim(m["a"], m["rel"], m["b"], m["metric"])
