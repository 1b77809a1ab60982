"""MTSS (Multi-Stream Scene Script) captions: strict schema, serialisation, and the caption variants of SARA.

The schema follows the paper's Listing 1 with its malformed nesting fixed as follows (documented in
docs/data.md): the Reference stream lives at `structured_caption.english.references[]` next to `scene_description`
and `global_style`; the Shot stream `shots[]` is a top-level key beside `structured_caption`, not inside it. The
paper shows no field names for the Event and Global streams, so they are not modelled: `global_style` carries the
global summary and shot narratives carry the events.

Two small extensions, both optional: `noun_phrase` on a Reference (the 2-5 word SAM prompt; when absent it is
derived from `semantic_description`), and `appearance_anchor.attributes` is allowed on objects too (left empty).

Caption variants (the paper's Fig. 3 and App. C.2):
- c_k   = `entity_captions(c)`     semantic_description + " " + detail_description of each PERSON_*/OBJECT_* item
- c_fg  = `foreground_caption(c)`  the c_k joined by a single space, in reference order
- c_bg  = `background_caption(c)`  semantic_description of the first SCENE_* item
- c     = `full_caption(c)`        every stream serialised with section headers (template in `full_caption`)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from sara.config import StrictModel

REF_ID_PATTERN = re.compile(r"^(PERSON|OBJECT|SCENE)_([1-9][0-9]*)$")
# ref_ids mentioned inside narrative text (visual_description)
REF_MENTION = re.compile(r"\b(PERSON|OBJECT|SCENE)_[0-9]+\b")
REF_TYPE_PREFIX = {"person": "PERSON", "object": "OBJECT", "scene": "SCENE"}


class MTSSError(ValueError):
    """A malformed MTSS caption; the message names the offending field by its dotted path."""


class _Strict(StrictModel):
    model_config = ConfigDict(str_strip_whitespace=True)  # on top of StrictModel's: captions are typed by hand


NonEmpty = Field(min_length=1)


class IdFeatures(_Strict):
    detail_description: str = NonEmpty  # identity and appearance details


class Attributes(_Strict):
    """Person attributes (the paper's Listing 1); all optional because objects and simple figures lack some."""

    clothing: str | None = None
    hairstyle: str | None = None
    accessories: str | None = None


class AppearanceAnchor(_Strict):
    id_features: IdFeatures
    attributes: Attributes | None = None


class Reference(_Strict):
    """One Reference-stream item: a persistent person, object or scene."""

    ref_id: str
    type: Literal["person", "object", "scene"]
    semantic_description: str = NonEmpty
    appearance_anchor: AppearanceAnchor
    noun_phrase: str | None = None  # 2-5 word SAM prompt (extension); derived when absent

    @field_validator("ref_id")
    @classmethod
    def _ref_id_form(cls, v: str) -> str:
        if not REF_ID_PATTERN.match(v):
            raise ValueError(f"must look like PERSON_k, OBJECT_k or SCENE_k (k >= 1), got {v!r}")
        return v

    @field_validator("noun_phrase")
    @classmethod
    def _phrase_length(cls, v: str | None) -> str | None:
        if v is not None and not 2 <= len(v.split()) <= 5:
            raise ValueError(f"must be 2-5 words, got {v!r}")
        return v

    @model_validator(mode="after")
    def _prefix_matches_type(self) -> "Reference":
        prefix = self.ref_id.split("_")[0]
        if prefix != REF_TYPE_PREFIX[self.type]:
            raise ValueError(f"ref_id {self.ref_id!r} does not match type {self.type!r}")
        return self

    @property
    def detail_description(self) -> str:
        return self.appearance_anchor.id_features.detail_description

    @property
    def is_foreground(self) -> bool:
        return self.type in ("person", "object")


class EnglishCaption(_Strict):
    scene_description: str = NonEmpty  # one-sentence summary
    global_style: str = NonEmpty  # style, lighting, pacing
    references: list[Reference] = Field(min_length=1)

    @field_validator("references")
    @classmethod
    def _unique_ids(cls, v: list[Reference]) -> list[Reference]:
        seen: set[str] = set()
        for ref in v:
            if ref.ref_id in seen:
                raise ValueError(f"duplicate ref_id {ref.ref_id!r}")
            seen.add(ref.ref_id)
        if not any(r.type == "scene" for r in v):
            raise ValueError("needs at least one SCENE_k item (the background caption c_bg comes from it)")
        return v


class StructuredCaption(_Strict):
    english: EnglishCaption


class Camera(_Strict):
    movement: str = NonEmpty  # e.g. static, slow pan right, push-in
    angle: str = NonEmpty  # e.g. eye-level, top-down
    shot_type: str = NonEmpty  # e.g. wide, medium, close-up


class Shot(_Strict):
    shot_id: str = NonEmpty
    time_range: tuple[float, float]  # [start_s, end_s]
    references_in_shot: list[str] = Field(min_length=1)
    camera: Camera
    visual_description: str = NonEmpty  # narrative naming entities by ref_id

    @field_validator("time_range")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0 or v[1] <= v[0]:
            raise ValueError(f"must be [start_s, end_s] with 0 <= start_s < end_s, got {list(v)}")
        return v


class MTSSCaption(_Strict):
    """A whole MTSS caption: `structured_caption` (Reference stream + global fields) and top-level `shots`."""

    structured_caption: StructuredCaption
    shots: list[Shot] = Field(min_length=1)

    @model_validator(mode="after")
    def _refs_resolve(self) -> "MTSSCaption":
        known = {r.ref_id for r in self.references}
        ids: set[str] = set()
        for s, shot in enumerate(self.shots):
            if shot.shot_id in ids:
                raise MTSSFieldError(f"shots.{s}.shot_id", f"duplicate shot_id {shot.shot_id!r}")
            ids.add(shot.shot_id)
            for r, ref_id in enumerate(shot.references_in_shot):
                if ref_id not in known:
                    raise MTSSFieldError(f"shots.{s}.references_in_shot.{r}", f"unknown ref_id {ref_id!r}")
            for m in REF_MENTION.finditer(shot.visual_description):
                if m.group(0) not in known:
                    raise MTSSFieldError(f"shots.{s}.visual_description", f"names unknown ref_id {m.group(0)!r}")
            if s and shot.time_range[0] < self.shots[s - 1].time_range[1] - 1e-6:
                raise MTSSFieldError(f"shots.{s}.time_range", "overlaps the previous shot (shots must be in time order)")
        return self

    @property
    def english(self) -> EnglishCaption:
        return self.structured_caption.english

    @property
    def references(self) -> list[Reference]:
        return self.structured_caption.english.references

    def reference(self, ref_id: str) -> Reference:
        for ref in self.references:
            if ref.ref_id == ref_id:
                return ref
        raise KeyError(f"no reference {ref_id!r} in this caption")


class MTSSFieldError(ValueError):
    """Raised inside model validators so the message can carry the exact field path."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


# ---------------------------------------------------------------------------------------------------- parsing


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "missing":
            msg = "field required"
        msg = msg.replace("Value error, ", "")
        # errors raised as MTSSFieldError at the model level carry their own path; their location is empty
        lines.append(f"{loc}: {msg}" if loc else msg)
    return f"invalid MTSS caption ({source}):\n" + "\n".join(lines)


def parse_caption(data: dict[str, Any] | str, source: str = "<caption>") -> MTSSCaption:
    """Validate a caption mapping (or JSON text). A malformed caption raises MTSSError naming every bad field."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as err:
            raise MTSSError(f"invalid MTSS caption ({source}): not JSON: {err}") from None
    if not isinstance(data, dict):
        raise MTSSError(f"invalid MTSS caption ({source}): top level must be an object")
    try:
        return MTSSCaption.model_validate(data)
    except ValidationError as err:
        raise MTSSError(_format_validation_error(err, source)) from None


def caption_to_dict(c: MTSSCaption) -> dict[str, Any]:
    """The JSON-ready mapping; optional fields that are unset are left out so files stay close to the paper."""
    return c.model_dump(mode="json", exclude_none=True)


def load_caption(path: str | Path) -> MTSSCaption:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MTSS caption file not found: {path}")
    return parse_caption(path.read_text(), str(path))


def save_caption(c: MTSSCaption, path: str | Path) -> None:
    Path(path).write_text(json.dumps(caption_to_dict(c), indent=2, ensure_ascii=False) + "\n")


# ------------------------------------------------------------------------------------------ caption variants


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def foreground_references(c: MTSSCaption) -> list[Reference]:
    """PERSON_* and OBJECT_* items in caption order: the K foreground entities (the paper's entity vocabulary)."""
    return [r for r in c.references if r.is_foreground]


def entity_caption(ref: Reference) -> str:
    """c_k (the paper's per-entity caption): semantic_description followed by detail_description."""
    return f"{_sentence(ref.semantic_description)} {_sentence(ref.detail_description)}"


def entity_captions(c: MTSSCaption) -> list[tuple[str, str]]:
    """[(ref_id, c_k)] for the K foreground entities, in caption order."""
    return [(r.ref_id, entity_caption(r)) for r in foreground_references(c)]


def foreground_caption(c: MTSSCaption) -> str:
    """c_fg = [c_1; ...; c_K] (the paper's foreground caption); the separator is open: a single space."""
    return " ".join(text for _, text in entity_captions(c))


def background_reference(c: MTSSCaption) -> Reference:
    return next(r for r in c.references if r.type == "scene")


def background_caption(c: MTSSCaption) -> str:
    """c_bg (the paper's background caption): the semantic_description of the first SCENE_* item."""
    return _sentence(background_reference(c).semantic_description)


def count_persons(c: MTSSCaption) -> int:
    return sum(r.type == "person" for r in c.references)


def count_objects(c: MTSSCaption) -> int:
    return sum(r.type == "object" for r in c.references)


def entity_count(c: MTSSCaption) -> int:
    """K = number of PERSON_* plus OBJECT_* items (SCENE_* items do not count)."""
    return count_persons(c) + count_objects(c)


_DETERMINERS = {"a", "an", "the", "one", "some", "two", "three", "four"}
# words that end the head noun phrase of a description ("a man *who* ...", "a cup *on* the table")
_PHRASE_STOP = {
    "who", "which", "that", "with", "in", "on", "at", "of", "from", "to", "into", "onto", "near", "by", "for",
    "while", "and", "as", "is", "are", "being", "holding", "wearing", "under", "over", "behind", "beside",
}


def noun_phrase(ref: Reference) -> str:
    """The 2-5 word SAM text prompt for one entity (the paper's mask preparation; docs/data.md).

    Uses the Reference's explicit `noun_phrase` when present. Otherwise a deterministic stand-in for the paper's
    Qwen3.5-2B simplifier: the head noun phrase of `semantic_description` (leading article dropped, cut before
    the first relative word, preposition or -ing verb, at most 5 words); a single remaining word gets "the".
    """
    if ref.noun_phrase:
        return ref.noun_phrase
    words = re.findall(r"[A-Za-z][A-Za-z'-]*", ref.semantic_description.lower())
    while words and words[0] in _DETERMINERS:
        words = words[1:]
    head: list[str] = []
    for w in words:
        if w in _PHRASE_STOP or (head and w.endswith("ing") and len(w) > 4):
            break
        head.append(w)
    head = head[:5]
    if not head:
        head = [ref.type]
    if len(head) == 1:
        head = ["the", head[0]]
    return " ".join(head)


# ---------------------------------------------------------------------------------------- full caption c


def _reference_line(ref: Reference) -> str:
    parts = [f"{ref.ref_id}: {_sentence(ref.semantic_description)} {_sentence(ref.detail_description)}"]
    attrs = ref.appearance_anchor.attributes
    if attrs is not None:
        for name in ("clothing", "hairstyle", "accessories"):
            value = getattr(attrs, name)
            if value:
                parts.append(f"{name.capitalize()}: {_sentence(value)}")
    return " ".join(parts)


def _shot_line(shot: Shot) -> str:
    start, end = shot.time_range
    cam = shot.camera
    return (
        f"{shot.shot_id} ({start:.1f}-{end:.1f} s; camera: {cam.movement}, {cam.angle}, {cam.shot_type}; "
        f"in shot: {', '.join(shot.references_in_shot)}): {_sentence(shot.visual_description)}"
    )


def full_caption(c: MTSSCaption) -> str:
    """c (the paper's full caption): every stream serialised as text. Template (our choice, docs/data.md):

    [Global Setup]
    <scene_description>
    Style: <global_style>
    [Cast & Setting Introduction]
    [Person]
    PERSON_1: <semantic>. <detail>. Clothing: ... Hairstyle: ... Accessories: ...
    [Object]
    OBJECT_1: <semantic>. <detail>.
    [SCENE/BACKGROUND]
    SCENE_1: <semantic>. <detail>.
    [Shot]
    shot_1 (0.0-2.0 s; camera: <movement>, <angle>, <shot_type>; in shot: OBJECT_1, SCENE_1): <visual_description>

    A [Person] or [Object] block with no items is left out. ref_ids stay in the narrative (they are defined once in
    the cast block), which is the paper's "ref_id dereferencing" that keeps the caption short.
    """
    e = c.english
    lines = ["[Global Setup]", _sentence(e.scene_description), f"Style: {_sentence(e.global_style)}"]
    lines.append("[Cast & Setting Introduction]")
    for header, kind in (("[Person]", "person"), ("[Object]", "object"), ("[SCENE/BACKGROUND]", "scene")):
        refs = [r for r in e.references if r.type == kind]
        if refs:
            lines.append(header)
            lines.extend(_reference_line(r) for r in refs)
    lines.append("[Shot]")
    lines.extend(_shot_line(s) for s in c.shots)
    return "\n".join(lines)


# ------------------------------------------------------------------------------- judge prompt sections


def scene_and_style(c: MTSSCaption) -> str:
    """`[Scene & Style]` of the rubric's TEXT DESCRIPTION block (the paper's VLM rubric)."""
    e = c.english
    scenes = " ".join(f"{r.ref_id}: {_sentence(r.semantic_description)} {_sentence(r.detail_description)}"
                      for r in e.references if r.type == "scene")
    return f"{_sentence(e.scene_description)}\nStyle: {_sentence(e.global_style)}\nSetting: {scenes}"


def characters_and_objects(c: MTSSCaption) -> str:
    """`[Characters & Objects]`, with the expected entity counts the `entity_count` dimension checks."""
    lines = [f"Expected counts: {count_persons(c)} person(s), {count_objects(c)} object(s)."]
    lines.extend(_reference_line(r) for r in foreground_references(c))
    return "\n".join(lines)


def shot_narrative(c: MTSSCaption) -> str:
    """`[Shot Narrative]`: every shot with its time range, camera and narrative."""
    return "\n".join(_shot_line(s) for s in c.shots)
