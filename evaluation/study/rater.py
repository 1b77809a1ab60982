"""The scripted rater: votes by the grounded judge's scores. A stand-in for people, never a substitute for them.

It lets the DAG produce Fig. 5's table end to end (`study.rater: scripted`) and gives a human study something to
be compared with. It rates as a person does, through the same session rules (session.py): the pairs of its
plan in its order, seeing the caption's prompt and the two videos on the left and right, never which run made
them. Each video is scored once by the grounded judge (evaluation/grounded/) against the prompt's ground truth;
its score is the mean of the rubric dimensions that apply (1-5). Scripted rater i adds its own noise to each
video's score per vote (normal, sd `noise`, seeded by `seed` and i), so raters disagree a little as people do,
and says tie when the two noisy scores differ by at most `tie_margin`. Needs synthetic prompts: real-world
prompts have no ground truth (then people rate: `study.rater: human`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.study.design import Study
from evaluation.study.session import Session
from sara.errors import InputError


class GroundedScorer:
    """Mean grounded-judge score of a media file, computed once per file."""

    def __init__(self, study: Study, media_dir: Path) -> None:
        from sara.data.prompts import load_prompt_set

        self.study, self.media_dir = study, media_dir
        self.specs = {p.id: p.spec for p in load_prompt_set(study.prompt_set)}
        self.refs: dict[str, object] = {}
        self.cache: dict[str, float] = {}

    def __call__(self, media: str, prompt_id: str) -> float:
        from evaluation.grounded import build_reference, grounded_scores
        from sara.data.video_io import read_video

        if media not in self.cache:
            spec = self.specs.get(prompt_id)
            if spec is None:
                raise InputError(f"study.rater: scripted needs synthetic prompts with ground truth; prompt {prompt_id} "
                                 f"of set {self.study.prompt_set!r} has none (set study.rater: human)")
            frames, _ = read_video(self.media_dir / f"{media}.mp4")
            if prompt_id not in self.refs:
                self.refs[prompt_id] = build_reference(spec, *frames.shape[:3], self.study.fps)
            scores = grounded_scores(spec, frames, self.study.fps, ref=self.refs[prompt_id])
            self.cache[media] = float(np.mean([d["score"] for d in scores.values() if d["score"] is not None]))
        return self.cache[media]


def scripted_votes(session: Session, media_dir: Path, *, noise: float, tie_margin: float, seed: int,
                   log: Callable[[str], None] = print) -> int:
    """Every scripted rater rates its whole plan (resuming where it stopped); returns the number of votes cast."""
    study = session.study
    score = GroundedScorer(study, media_dir)
    cast = 0
    for i, rater in enumerate(study.plans):
        rng = np.random.default_rng([seed, 3, i])
        while (shown := session.current(rater)) is not None:
            prompt = study.pair(shown.pair).prompt_id  # the prompt a person reads as the caption
            left = score(shown.left, prompt) + rng.normal(0.0, noise)
            right = score(shown.right, prompt) + rng.normal(0.0, noise)
            choice = "tie" if abs(left - right) <= tie_margin else "left" if left > right else "right"
            session.vote(rater, shown.pair, choice)
            cast += 1
    log(f"[study] scripted raters (grounded judge stand-in): {cast} votes, {len(score.cache)} videos scored")
    return cast
