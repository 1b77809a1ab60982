"""Judge prompt assembly (the paper's VLM rubric): shared system prompt + TEXT DESCRIPTION + one rubric block.

The TEXT DESCRIPTION is filled from the MTSS sections [Scene & Style], [Characters & Objects] (with the expected
entity counts) and [Shot Narrative]. The paper's exact box texts are not published; these are our paraphrases.
The reply format is strict JSON `{dimension: {"score": 1-5, "reason": "..."}}`, one call per group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from evaluation.rubric.dimensions import GROUPS, QUESTIONS, scale_for

SYSTEM_PROMPT = (
    "You are an expert video evaluator. You compare a generated video with its text description and score how "
    "well it matches on several dimensions. Be strict: give high scores only for genuine matches, and judge only "
    "what is visible in the video."
)


@dataclass(frozen=True)
class Description:
    """The three MTSS sections a judge sees, plus the expected counts used by entity_count."""

    scene_and_style: str
    characters_and_objects: str
    shot_narrative: str
    num_persons: int
    num_objects: int


def description_from_caption(caption: Any) -> Description:
    """Build the judge's description from an MTSS caption through the data module's section helpers."""
    from sara.data import mtss

    return Description(
        scene_and_style=mtss.scene_and_style(caption),
        characters_and_objects=mtss.characters_and_objects(caption),
        shot_narrative=mtss.shot_narrative(caption),
        num_persons=int(mtss.count_persons(caption)),
        num_objects=int(mtss.count_objects(caption)),
    )


def text_description(d: Description) -> str:
    """The TEXT DESCRIPTION block (section headers as in the paper's judge prompt)."""
    return (
        "TEXT DESCRIPTION\n"
        f"[Scene & Style]\n{d.scene_and_style.strip()}\n\n"
        f"[Characters & Objects]\n{d.characters_and_objects.strip()}\n\n"
        f"[Shot Narrative]\n{d.shot_narrative.strip()}"
    )


def rubric_block(group: str, d: Description) -> str:
    """The rubric for one group (TA or MQ): each dimension's question and 1-5 scale, then the reply format."""
    if group not in GROUPS:
        raise KeyError(f"unknown rubric group {group!r}; known: {', '.join(GROUPS)}")
    title = "TEXT ALIGNMENT" if group == "TA" else "MOTION QUALITY"
    lines = [f"RUBRIC: {title}. Score each dimension on an integer 1-5 scale."]
    for dim in GROUPS[group]:
        q = QUESTIONS[dim].format(num_persons=d.num_persons, num_objects=d.num_objects)
        lines.append(f"- {dim}: {q}\n  Scale: {scale_for(dim)}")
    example = {dim: {"score": 3, "reason": "<brief reason>"} for dim in GROUPS[group]}
    lines.append(
        "Reply with ONLY a JSON object, no other text, with exactly these keys:\n" + json.dumps(example, indent=1)
    )
    return "\n".join(lines)


def user_text(group: str, d: Description) -> str:
    return text_description(d) + "\n\n" + rubric_block(group, d)


def build_messages(group: str, d: Description, media: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI chat messages: the system prompt, then one multimodal user turn (media parts first, then text)."""
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": [*media, {"type": "text", "text": user_text(group, d)}]},
    ]
