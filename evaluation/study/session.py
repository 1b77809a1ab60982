"""What a rater sees next and which vote counts: the one set of rules behind the web page and the scripted rater.

A rater's next pair is the first of their plan they have not rated (so a rater who comes back resumes there); a
vote counts only for that pair. What `current` returns is everything a rater may know about a pair: its opaque
id, the caption, which media file plays on each side and the progress; never its kind, runs or prompt id.
"""

from __future__ import annotations

from dataclasses import dataclass

from evaluation.study.design import Choice, Study
from evaluation.study.store import OutOfTurn, Vote, VoteStore

CHOICES: tuple[Choice, ...] = ("left", "tie", "right")


class VoteRefused(Exception):
    """A vote that is not recorded; `status` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Shown:
    pair: str  # opaque pair id
    caption: str
    left: str  # media id playing on the left
    right: str
    done: int  # pairs already rated by this rater
    total: int


class Session:
    def __init__(self, study: Study, store: VoteStore) -> None:
        self.study, self.store = study, store

    def knows(self, rater: str) -> bool:
        return rater in self.study.plans

    def current(self, rater: str) -> Shown | None:
        """The pair `rater` rates next, or None when they rated all of them."""
        plan = self._plan(rater)
        done = self.store.count(rater)
        if done >= len(plan):
            return None
        slot = plan[done]
        pair = self.study.pair(slot.pair)
        left, right = (pair.a, pair.b) if slot.left == "a" else (pair.b, pair.a)
        return Shown(pair.id, pair.caption, left.media, right.media, done, len(plan))

    def vote(self, rater: str, pair: str, choice: str) -> Vote:
        """Record `choice` on `pair` if it is the rater's current pair; else raise VoteRefused, writing nothing."""
        plan = self._plan(rater)
        if choice not in CHOICES:
            raise VoteRefused(422, f"choice must be one of {', '.join(CHOICES)}")
        position = next((i for i, slot in enumerate(plan) if slot.pair == pair), None)
        if position is None:
            raise VoteRefused(404, "unknown pair")
        try:
            return self.store.add(rater, position, pair, plan[position].left, choice)
        except OutOfTurn as err:
            raise VoteRefused(409, str(err)) from None

    def _plan(self, rater: str) -> list:
        if rater not in self.study.plans:
            raise VoteRefused(404, "unknown rater")
        return self.study.plans[rater]
