"""Turn a judge's raw reply into `{dim: {"score": int 1-5, "reason": str}}`.

Judges with thinking on wrap their answer in `<think>...</think>`, and many fence the JSON in ```json blocks or
add prose around it. We repair exactly those cases: drop the thinking, take the fenced block if any, then the
outermost `{...}`, and drop trailing commas. Scores must be integers 1-5 (4.0 and "4" are accepted as 4);
anything else makes that dimension invalid, never a guessed value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from evaluation.rubric.dimensions import SCORE_MAX, SCORE_MIN

_THINK = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")


class ReplyError(ValueError):
    """The reply holds no JSON object at all."""


@dataclass
class ParsedReply:
    scores: dict[str, dict] = field(default_factory=dict)  # valid dims only: {dim: {"score", "reason"}}
    problems: dict[str, str] = field(default_factory=dict)  # dim -> why it is invalid (missing, out of range...)

    @property
    def complete(self) -> bool:
        return not self.problems


def extract_json_text(reply: str) -> str:
    """The JSON object text inside a reply: think blocks removed, fences opened, outermost braces taken."""
    text = _THINK.sub("", reply)
    if "</think>" in text.lower():  # an opening tag swallowed by the server: keep what follows the close tag
        text = text[text.lower().rfind("</think>") + len("</think>") :]
    fenced = _FENCE.findall(text)
    if fenced:
        text = max(fenced, key=len)
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        raise ReplyError(f"no JSON object in reply: {reply[:200]!r}")
    return _TRAILING_COMMA.sub(r"\1", text[start : end + 1])


def _as_score(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip()
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, (int, float)) and float(value).is_integer() and SCORE_MIN <= value <= SCORE_MAX:
        return int(value)
    return None


def parse_reply(reply: str, dims: tuple[str, ...] | list[str]) -> ParsedReply:
    """Parse one judge reply for the given dimensions. Raises ReplyError when there is no JSON object at all."""
    text = extract_json_text(reply)
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise ReplyError(f"invalid JSON in reply ({err.msg} at char {err.pos}): {text[:200]!r}") from None
    if not isinstance(obj, dict):
        raise ReplyError(f"reply JSON is a {type(obj).__name__}, expected an object keyed by dimension")
    out = ParsedReply()
    for dim in dims:
        if dim not in obj:
            out.problems[dim] = "missing"
            continue
        entry = obj[dim]
        raw_score = entry.get("score") if isinstance(entry, dict) else entry  # a bare number is accepted too
        reason = str(entry.get("reason", "")) if isinstance(entry, dict) else ""
        score = _as_score(raw_score)
        if score is None:
            out.problems[dim] = f"score {raw_score!r} is not an integer in {SCORE_MIN}-{SCORE_MAX}"
            continue
        out.scores[dim] = {"score": score, "reason": reason}
    return out
