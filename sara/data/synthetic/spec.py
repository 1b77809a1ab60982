"""The scene vocabulary and the typed `SceneSpec` that fully describes one synthetic clip.

Sizes and travel distances are fractions of min(height, width); positions are fractions of the frame (x of the
width, y of the height); time s = f / (F - 1) runs from 0 to 1, so a spec describes the same clip at any size.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator, model_validator

from sara.config import StrictModel

# ----------------------------------------------------------------------------------------------- vocabulary

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 230),
    "yellow": (240, 210, 30),
    "orange": (245, 130, 20),
    "purple": (140, 50, 200),
    "cyan": (30, 200, 210),
    "pink": (245, 105, 180),
}
ShapeName = Literal["circle", "square", "triangle", "star", "ring", "figure"]
SHAPE_NOUN = {
    "circle": "circle", "square": "square", "triangle": "triangle", "star": "star", "ring": "ring",
    "figure": "stick figure",
}
SizeName = Literal["small", "medium", "large"]
SIZE_RADIUS = {"small": 0.18, "medium": 0.25, "large": 0.32}  # radius as a fraction of min(H, W)
Texture = Literal["solid", "striped", "dotted"]
Direction = Literal["right", "left", "up", "down", "up-right", "up-left", "down-right", "down-left"]
DIRECTION_VECTOR = {
    "right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0),
    "up-right": (math.sqrt(0.5), -math.sqrt(0.5)), "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "down-right": (math.sqrt(0.5), math.sqrt(0.5)), "down-left": (-math.sqrt(0.5), math.sqrt(0.5)),
}
DIRECTION_PHRASE = {
    "right": "to the right", "left": "to the left", "up": "upward", "down": "downward",
    "up-right": "up and to the right", "up-left": "up and to the left",
    "down-right": "down and to the right", "down-left": "down and to the left",
}
Speed = Literal["slow", "fast"]
LINEAR_TRAVEL = {"slow": 0.35, "fast": 0.6}  # distance over the whole clip, fraction of min(H, W)
BOUNCE_TRAVEL = {"slow": 0.9, "fast": 1.8}  # unfolded distance before reflections
ROTATION_DEG = {"slow": 90.0, "fast": 270.0}  # total turn over the clip
PAN_TRAVEL = 0.25  # camera pan over the clip, fraction of min(H, W)
MEET_CONTACT_AT = 0.75  # meeting entities touch at s = 0.75 and stay in contact (approach -> contact -> hold)
FOLLOW_GAP = 1.3  # follower trails its leader by this many times the sum of their radii
MotionKind = Literal["static", "linear", "bounce", "rotate", "meet", "follow"]
SceneStyle = Literal["studio", "sky", "grid_floor", "noise", "sunset", "night"]
Camera = Literal["static", "pan_left", "pan_right"]

# style -> (MTSS semantic description, detail description, entity colours it would hide)
SCENE_TEXT: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "studio": ("A plain light-grey studio backdrop.",
               "Evenly lit seamless grey background that darkens softly toward the edges.", ()),
    "sky": ("A clear blue sky with soft white clouds.",
            "Vertical gradient from deep blue at the top to pale blue at the bottom, with a few fuzzy clouds.",
            ("blue", "cyan")),
    "grid_floor": ("A tiled floor in front of a dark wall.",
                   "Beige floor with a dark square grid in the lower part of the frame and a flat slate-grey wall "
                   "above.", ()),
    "noise": ("A mottled green and brown texture.",
              "Smooth random blotches of muted greens and browns, like moss or camouflage.", ("green",)),
    "sunset": ("A sunset sky with a low yellow sun.",
               "Horizontal bands from orange near the horizon to violet at the top, with a pale yellow sun disc.",
               ("orange", "yellow", "pink", "red")),
    "night": ("A dark night sky with small stars.",
              "Near-black navy background scattered with tiny white star points.", ("purple", "blue")),
}


class Motion(StrictModel):
    """How one entity moves over the clip (world coordinates; the camera is applied on top)."""

    kind: MotionKind = "static"
    direction: Direction | None = None  # linear, bounce
    speed: Speed = "slow"  # linear, bounce, rotate
    clockwise: bool = True  # rotate
    partner: str | None = None  # meet: the other entity (both meet each other); follow: the leader

    @model_validator(mode="after")
    def _fields_fit_kind(self) -> "Motion":
        if self.kind in ("linear", "bounce") and self.direction is None:
            raise ValueError(f"direction: required for motion kind {self.kind!r}")
        if self.kind not in ("linear", "bounce") and self.direction is not None:
            raise ValueError(f"direction: only for linear or bounce, not {self.kind!r}")
        if self.kind in ("meet", "follow") and not self.partner:
            raise ValueError(f"partner: required for motion kind {self.kind!r}")
        if self.kind not in ("meet", "follow") and self.partner is not None:
            raise ValueError(f"partner: only for meet or follow, not {self.kind!r}")
        return self


class EntitySpec(StrictModel):
    ref_id: str  # OBJECT_k (shapes) or PERSON_k (stick figures)
    shape: ShapeName
    colour: str
    size: SizeName = "medium"
    texture: Texture = "solid"
    start: tuple[float, float] | None = None  # centre at s=0 as (x, y) fractions of the frame; None for followers
    angle: float = 0.0  # initial rotation, degrees
    motion: Motion = Motion()

    @field_validator("colour")
    @classmethod
    def _known_colour(cls, v: str) -> str:
        if v not in COLOURS:
            raise ValueError(f"unknown colour {v!r}; choose from {sorted(COLOURS)}")
        return v

    @field_validator("start")
    @classmethod
    def _in_frame(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and not (0.0 <= v[0] <= 1.0 and 0.0 <= v[1] <= 1.0):
            raise ValueError(f"must be (x, y) fractions in [0, 1], got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> "EntitySpec":
        prefix = "PERSON" if self.shape == "figure" else "OBJECT"
        if not (self.ref_id.startswith(prefix + "_") and self.ref_id[len(prefix) + 1 :].isdigit()):
            raise ValueError(f"ref_id: a {self.shape} entity needs a ref_id like {prefix}_1, got {self.ref_id!r}")
        if self.shape == "figure" and self.motion.kind == "rotate":
            raise ValueError("motion: stick figures do not rotate")
        if (self.start is None) != (self.motion.kind == "follow"):
            raise ValueError("start: required for every motion except follow (a follower is placed behind its leader)")
        return self

    @property
    def entity_type(self) -> str:
        return "person" if self.shape == "figure" else "object"


class SceneSpec(StrictModel):
    """One synthetic clip: background style, camera and 1..4 entities drawn in list order (later on top)."""

    style: SceneStyle = "studio"
    camera: Camera = "static"
    seed: int = Field(0, ge=0)  # seeds the background texture (clouds, noise, stars)
    entities: list[EntitySpec] = Field(min_length=1, max_length=4)

    @model_validator(mode="after")
    def _references(self) -> "SceneSpec":
        by_id = {e.ref_id: e for e in self.entities}
        if len(by_id) != len(self.entities):
            raise ValueError("entities: ref_ids must be unique")
        for e in self.entities:
            m = e.motion
            if m.partner is None:
                continue
            if m.partner not in by_id or m.partner == e.ref_id:
                raise ValueError(f"entities.{e.ref_id}.motion.partner: unknown entity {m.partner!r}")
            other = by_id[m.partner].motion
            if m.kind == "meet" and not (other.kind == "meet" and other.partner == e.ref_id):
                raise ValueError(f"entities.{e.ref_id}.motion: meet needs {m.partner} to meet {e.ref_id} back")
            if m.kind == "follow" and other.kind != "linear":
                raise ValueError(f"entities.{e.ref_id}.motion: the leader {m.partner} must move linearly")
        return self

    def entity(self, ref_id: str) -> EntitySpec:
        return next(e for e in self.entities if e.ref_id == ref_id)


