"""The MTSS prompt sets shipped with the package (the paper gives no such list, these are ours; docs/data.md).

- `synthetic.json`: 18 synthetic-domain prompts; each item carries the `SceneSpec` the renderer draws as ground
  truth (for the grounded judge) and a caption equal to `spec_to_mtss(spec)` at the file's `render` settings.
- `realworld.json`: 18 real-world multi-subject prompts (several people and objects, attribute binding,
  interactions, camera moves) for real video models.
- `heldout.json`: 512 random synthetic scenes with their ground truth, for statistical power (heldout.py says how
  they are drawn and regenerates the file).
- `lab` (no file of its own): the 18 synthetic prompts followed by the first 256 held-out ones, what the lab scale
  sampled and judged up to run 12: the first for the qualitative grids, all of them for the intervals.
- `lab530`: the `lab` set followed by the other 256 held-out scenes (18 + 512 prompts), for intervals about 1.4x
  narrower; its first 274 prompts are `lab`, so rows judged on either can be compared on those.

Item fields: `id` (unique, e.g. syn_07 / real_03), `title`, `focus` (the rubric dimensions it stresses),
`caption` (MTSS), and `spec` (synthetic only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from pydantic import ValidationError

from sara.data.mtss import MTSSCaption, MTSSError, parse_caption
from sara.data.synthetic.spec import SceneSpec
from sara.errors import InputError

PROMPT_SETS = ("synthetic", "realworld", "heldout")  # one JSON file each
# sets made of the files' sets, in order: (file set, how many of its first items; None = all of them)
COMBINED_SETS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "lab": (("synthetic", None), ("heldout", 256)),
    "lab530": (("synthetic", None), ("heldout", 512)),
}


class PromptSetError(InputError, ValueError):
    """A prompt set (or a VBench prompt suite) that cannot be used: one line naming the set, the item and the
    field. Stages check their prompts before they open an MLflow run or sample anything."""


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


@dataclass(frozen=True)
class PromptItem:
    id: str
    title: str
    caption: MTSSCaption
    focus: list[str] = field(default_factory=list)
    spec: SceneSpec | None = None  # the scene the renderer draws as ground truth (synthetic prompts only)


def prompt_set_raw(name: str) -> dict[str, Any]:
    """The parsed JSON file of one prompt set (including header fields such as `render`)."""
    if name not in PROMPT_SETS:
        raise PromptSetError(f"unknown prompt set {name!r}; choose from {(*PROMPT_SETS, *COMBINED_SETS)}")
    path = resources.files(__name__).joinpath(f"{name}.json")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise PromptSetError(f"prompt set {name} ({path}): cannot be read: {_one_line(err)}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        raise PromptSetError(f"prompt set {name} ({path}): items: a list of prompts is required")
    return raw


def load_prompt_set(name: str) -> list[PromptItem]:
    """Validated prompt items of the set `name` (a file of PROMPT_SETS or a set of COMBINED_SETS); errors name the
    item and field."""
    if name in COMBINED_SETS:
        items = []
        for part, count in COMBINED_SETS[name]:
            part_items = load_prompt_set(part)
            if count is not None and len(part_items) < count:
                raise PromptSetError(f"prompt set {name}: takes {count} items of {part}, which has {len(part_items)}")
            items += part_items[:count]
        ids = [i.id for i in items]
        if len(set(ids)) != len(ids):
            parts = ", ".join(part for part, _ in COMBINED_SETS[name])
            raise PromptSetError(f"prompt set {name}: an id is in two of {parts}")
        return items
    raw = prompt_set_raw(name)
    items: list[PromptItem] = []
    seen: set[str] = set()
    for i, row in enumerate(raw["items"]):
        if not isinstance(row, dict):
            raise PromptSetError(f"prompt set {name}/<item {i}>: must be an object with id, title and caption")
        pid = row.get("id") or f"<item {i}>"
        if pid in seen:
            raise PromptSetError(f"prompt set {name}: duplicate id {pid!r}")
        seen.add(pid)
        if "caption" not in row:
            raise PromptSetError(f"prompt set {name}/{pid}: caption: field required")
        try:
            caption = parse_caption(row["caption"], f"{name}/{pid}")
        except MTSSError as err:  # "invalid MTSS caption (<source>):" then one line per bad field
            head, *fields = str(err).splitlines()
            raise PromptSetError(f"prompt set {name}/{pid}: caption: {'; '.join(fields) or head}") from None
        spec = None
        if "spec" in row:
            try:
                spec = SceneSpec.model_validate(row["spec"])
            except ValidationError as err:
                fields = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
                raise PromptSetError(f"prompt set {name}/{pid}: invalid spec: {fields}") from None
        items.append(PromptItem(pid, row.get("title", pid), caption, list(row.get("focus", [])), spec))
    return items
