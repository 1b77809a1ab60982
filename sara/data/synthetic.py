"""Deterministic synthetic multi-entity clips with exact ground truth (masks, motion, flow) and MTSS captions.

A clip is fully described by a typed `SceneSpec`: K = 1..4 foreground entities (shape, colour, size, texture,
start position, motion), a background style and a camera. `render(spec, frames, height, width, fps)` draws it
with numpy only; the same spec and sizes always give the same pixels. Everything a judge needs to verify a
generated clip later (entity count, colour/shape binding, left/right arrangement, motion direction and
completion, amplitude, scene style, camera, interactions) is in the returned `truth` dict, which also carries the
spec, so `ground_truth_flow(truth, h, w)` can re-rasterise the entities at any resolution.

Geometry conventions (pixels): x grows to the right, y grows down, pixel (i, j) has its centre at (j + 0.5, i + 0.5).
Entity sizes and travel distances are fractions of min(height, width); positions in the spec are fractions of the
frame (x of the width, y of the height). Time s = f / (F - 1) runs from 0 (first frame) to 1 (last frame), so the
same spec describes the same path at any frame count. Angles are degrees; a positive change is clockwise on screen.
The camera pans by moving a world window: entity motions live in world coordinates and everything on screen
(pixels, masks, centres, flow) is world minus the camera offset.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sara.data.mtss import MTSSCaption, parse_caption

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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Motion(_Strict):
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


class EntitySpec(_Strict):
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


class SceneSpec(_Strict):
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


# ------------------------------------------------------------------------------------------ trajectories


def _unit_scale(height: int, width: int) -> float:
    return float(min(height, width))


def radius_px(entity: EntitySpec, height: int, width: int) -> float:
    return SIZE_RADIUS[entity.size] * _unit_scale(height, width)


def _times(frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, frames) if frames > 1 else np.zeros(1)


def _fold(q: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Reflect an unfolded coordinate into [lo, hi] (a ball bouncing between two walls)."""
    span = hi - lo
    if span <= 0:
        return np.full_like(q, (lo + hi) / 2)
    r = np.mod(q - lo, 2 * span)
    return lo + np.where(r > span, 2 * span - r, r)


def world_tracks(spec: SceneSpec, frames: int, height: int, width: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ref_id -> (centres (F, 2) world pixels, angles (F,) degrees)."""
    s = _times(frames)  # (F,)
    unit = _unit_scale(height, width)
    tracks: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def start_px(e: EntitySpec) -> np.ndarray:
        assert e.start is not None
        return np.array([e.start[0] * width, e.start[1] * height])

    for e in spec.entities:  # every kind except follow (it needs its leader first)
        m = e.motion
        angle = np.full(frames, e.angle)
        p0 = start_px(e) if e.start is not None else None
        if m.kind == "follow":
            continue
        assert p0 is not None
        if m.kind in ("static", "rotate"):
            centres = np.repeat(p0[None], frames, 0)
            if m.kind == "rotate":
                angle = e.angle + (1 if m.clockwise else -1) * ROTATION_DEG[m.speed] * s
        elif m.kind == "linear":
            u = np.array(DIRECTION_VECTOR[m.direction])
            centres = p0[None] + u[None] * LINEAR_TRAVEL[m.speed] * unit * s[:, None]  # (F, 2)
        elif m.kind == "bounce":
            u = np.array(DIRECTION_VECTOR[m.direction])
            q = p0[None] + u[None] * BOUNCE_TRAVEL[m.speed] * unit * s[:, None]  # (F, 2) unfolded path
            r = radius_px(e, height, width)
            centres = np.stack([_fold(q[:, 0], r, width - r), _fold(q[:, 1], r, height - r)], 1)
        else:  # meet: move toward the partner until the two outlines touch at s = MEET_CONTACT_AT, then hold
            other = spec.entity(m.partner)
            q0 = start_px(other)
            gap = np.linalg.norm(q0 - p0)
            contact = radius_px(e, height, width) + radius_px(other, height, width)
            d = (q0 - p0) / max(gap, 1e-9)
            travel = max(gap - contact, 0.0) / 2  # both move, each covers half of the free distance
            progress = np.clip(s / MEET_CONTACT_AT, 0.0, 1.0)
            centres = p0[None] + d[None] * travel * progress[:, None]
        tracks[e.ref_id] = (centres, angle)
    for e in spec.entities:  # followers trail their linear leader at a fixed gap along its direction
        m = e.motion
        if m.kind != "follow":
            continue
        leader = spec.entity(m.partner)
        u = np.array(DIRECTION_VECTOR[leader.motion.direction])
        gap = FOLLOW_GAP * (radius_px(e, height, width) + radius_px(leader, height, width))
        tracks[e.ref_id] = (tracks[leader.ref_id][0] - u[None] * gap, np.full(frames, e.angle))
    return tracks


def camera_offsets(spec: SceneSpec, frames: int, height: int, width: int) -> np.ndarray:
    """(F, 2) world position of the frame's top-left corner; screen = world - offset."""
    s = _times(frames)
    sign = {"static": 0.0, "pan_right": 1.0, "pan_left": -1.0}[spec.camera]
    return np.stack([sign * PAN_TRAVEL * _unit_scale(height, width) * s, np.zeros(frames)], 1)


# ----------------------------------------------------------------------------------------------- shapes


def _segment_distance(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = np.clip(((u - ax) * dx + (v - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    return np.hypot(u - ax - t * dx, v - ay - t * dy)


# stick figure in local units (radius = half its height): head, torso, arms, two legs
_FIGURE_SEGMENTS = [((0.0, -0.46), (0.0, 0.3), 0.13), ((-0.5, -0.22), (0.5, -0.22), 0.1),
                    ((0.0, 0.3), (-0.36, 0.98), 0.11), ((0.0, 0.3), (0.36, 0.98), 0.11)]


def shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside test in local units (entity radius = 1, un-rotated, y down). Returns a bool array like `u`."""
    if shape == "circle":
        return u * u + v * v <= 1.0
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.55**2)
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # equilateral, pointing up, circumradius 1.1
        uu, vv = u / 1.1, v / 1.1
        return (vv <= 0.5) & (0.866 * uu - 0.5 * vv <= 0.5) & (-0.866 * uu - 0.5 * vv <= 0.5)
    if shape == "star":  # five points, one pointing up; radius 1 at the tips, 0.45 between them
        phase = np.mod((np.arctan2(v, u) + math.pi / 2) * 5 / (2 * math.pi), 1.0)
        tip = np.abs(phase - 0.5) * 2
        return np.hypot(u, v) <= 0.45 + 0.55 * tip**2
    if shape == "figure":
        inside = u * u + (v + 0.72) ** 2 <= 0.26**2
        for a, b, half_width in _FIGURE_SEGMENTS:
            inside |= _segment_distance(u, v, a, b) <= half_width
        return inside
    raise ValueError(f"unknown shape {shape!r}")


def texture_dark(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Where the texture uses the darker shade (local units, so the pattern moves and turns with the entity)."""
    if texture == "solid":
        return np.zeros(u.shape, bool)
    if texture == "striped":
        return np.mod(np.floor((u + 4.0) / 0.4), 2) == 1
    if texture == "dotted":
        fu, fv = np.mod(u * 2.5, 1.0) - 0.5, np.mod(v * 2.5, 1.0) - 0.5
        return fu * fu + fv * fv <= 0.3**2
    raise ValueError(f"unknown texture {texture!r}")


def _local_coords(
    x: np.ndarray, y: np.ndarray, centres: np.ndarray, angles: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Screen pixel coords (H, W) -> local entity units per frame (F, H, W), undoing the entity's rotation."""
    dx = x[None] - centres[:, 0, None, None]  # (F, H, W)
    dy = y[None] - centres[:, 1, None, None]
    th = np.deg2rad(angles)[:, None, None]  # (F, 1, 1)
    c, s = np.cos(th), np.sin(th)
    return (c * dx + s * dy) / radius, (-s * dx + c * dy) / radius


def _pixel_grid(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # (H, W) pixel centres
    return x, y


# ------------------------------------------------------------------------------------------ backgrounds


def _smooth_noise(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, waves: int = 6) -> np.ndarray:
    """Sum of random plane waves in world units (continuous, so a panning camera sees the same texture)."""
    out = np.zeros_like(x)
    for _ in range(waves):
        k = rng.uniform(2.0, 7.0)
        a = rng.uniform(0, 2 * math.pi)
        out += np.sin(k * (math.cos(a) * x + math.sin(a) * y) + rng.uniform(0, 2 * math.pi))
    return out / math.sqrt(waves / 2)


def background(spec: SceneSpec, x: np.ndarray, y: np.ndarray, height: int, width: int) -> np.ndarray:
    """float RGB (..., 3) in [0, 255] at world pixel coords (x, y); `height`/`width` set the scale."""
    unit = _unit_scale(height, width)
    xn, yn = x / unit, y / height  # xn in world units, yn in [0, 1] down the frame
    rng = np.random.default_rng(spec.seed)
    style = spec.style

    def mix(c0, c1, t):
        t = np.clip(t, 0.0, 1.0)[..., None]
        return np.array(c0, float) * (1 - t) + np.array(c1, float) * t

    if style == "studio":
        r = np.hypot(xn - 0.5, yn - 0.5)
        return mix((205, 205, 210), (150, 150, 158), (r - 0.2) / 0.6)
    if style == "sky":
        img = mix((70, 120, 215), (185, 215, 245), yn)
        cloud = np.clip(_smooth_noise(rng, xn * 0.6, yn * 0.8, 4) - 0.6, 0.0, 1.0)
        return mix(img, (250, 250, 252), cloud)  # type: ignore[arg-type]
    if style == "grid_floor":
        wall = mix((80, 86, 100), (95, 100, 115), yn / 0.4)
        floor = np.broadcast_to(np.array((190, 175, 145), float), wall.shape).copy()
        cell = 0.15  # grid pitch in world units (not a divisor of the pan, so a pan is visible)
        on_line = (np.mod(xn, cell) < 0.02) | (np.mod(yn, cell) < 0.02)
        floor[on_line] = (95, 85, 70)
        return np.where((yn < 0.4)[..., None], wall, floor)
    if style == "noise":
        n = _smooth_noise(rng, xn, yn)
        return mix((70, 110, 55), (140, 115, 70), (n + 1.5) / 3.0)
    if style == "sunset":
        img = mix((120, 60, 140), (250, 150, 60), yn)
        sun = np.hypot(xn - rng.uniform(0.3, 0.7), yn - 0.72) < 0.12
        img[sun] = (250, 235, 150)
        return img
    if style == "night":
        img = mix((10, 12, 35), (25, 30, 65), yn)
        stars = np.zeros(x.shape, bool)
        for _ in range(40):
            sx, sy = rng.uniform(-0.5, 2.0), rng.uniform(0.0, 1.0)
            stars |= np.hypot(xn - sx, yn - sy) < 0.012
        img[stars] = (235, 235, 245)
        return img
    raise ValueError(f"unknown scene style {style!r}")


# ----------------------------------------------------------------------------------------------- render


def _rasterise(
    spec: SceneSpec, frames: int, height: int, width: int, x: np.ndarray, y: np.ndarray
) -> list[tuple[EntitySpec, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per entity (draw order): (entity, inside (F,H,W), dark (F,H,W), screen centres (F,2), angles (F,), radius).

    `x`, `y` are the pixel-centre coordinates, in the spec's own pixel units, at which to evaluate the shapes.
    """
    tracks = world_tracks(spec, frames, height, width)
    cam = camera_offsets(spec, frames, height, width)
    out = []
    for e in spec.entities:
        world, angles = tracks[e.ref_id]
        centres = world - cam  # (F, 2) screen
        r = radius_px(e, height, width)
        u, v = _local_coords(x, y, centres, angles, r)
        out.append((e, shape_inside(e.shape, u, v), texture_dark(e.texture, u, v), centres, angles, np.array(r)))
    return out


def visible_masks(inside: list[np.ndarray]) -> np.ndarray:
    """Full shape masks in draw order -> visible (modal) masks (K, F, H, W): later entities hide earlier ones."""
    vis = np.stack(inside).copy()  # (K, F, H, W)
    covered = np.zeros(vis.shape[1:], bool)
    for k in range(len(inside) - 1, -1, -1):
        vis[k] &= ~covered
        covered |= inside[k]
    return vis


def render(
    spec: SceneSpec, frames: int, height: int, width: int, fps: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Draw one clip. Returns frames (F, H, W, 3) uint8, visible masks (K, F, H, W) bool, and the truth dict."""
    if frames < 2 or height < 8 or width < 8 or fps < 1:
        raise ValueError(f"render needs frames >= 2, height/width >= 8 and fps >= 1, got {frames}x{height}x{width}@{fps}")
    x, y = _pixel_grid(height, width)
    cam = camera_offsets(spec, frames, height, width)
    # background per frame: world coords are screen coords plus the camera offset
    video = np.stack([background(spec, x + cam[f, 0], y + cam[f, 1], height, width) for f in range(frames)])  # (F,H,W,3)
    drawn = _rasterise(spec, frames, height, width, x, y)
    for e, inside, dark, _, _, _ in drawn:
        rgb = np.array(COLOURS[e.colour], float)
        shade = np.where(dark[..., None], rgb * 0.5, rgb)  # (F, H, W, 3)
        video = np.where(inside[..., None], shade, video)
    masks = visible_masks([d[1] for d in drawn])
    truth = _truth(spec, drawn, masks, cam, frames, height, width, fps)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8), masks, truth


# ------------------------------------------------------------------------------------------------ truth


def region_name(x: float, y: float) -> str:
    """Coarse position from frame fractions: thirds across and down ("top left", "centre", "bottom right")."""
    col = "left" if x < 1 / 3 else ("right" if x > 2 / 3 else "centre")
    row = "top" if y < 1 / 3 else ("bottom" if y > 2 / 3 else "middle")
    if row == "middle":
        return col
    return row if col == "centre" else f"{row} {col}"


def interactions(spec: SceneSpec) -> list[dict[str, str]]:
    """Interaction list derived from the motions: meet pairs (once each) and follow pairs."""
    out = []
    for e in spec.entities:
        m = e.motion
        if m.kind == "meet" and e.ref_id < m.partner:
            out.append({"kind": "meet", "a": e.ref_id, "b": m.partner})
        if m.kind == "follow":
            out.append({"kind": "follow", "a": e.ref_id, "b": m.partner})  # a follows b
    return out


def _truth(spec, drawn, masks, cam, frames, height, width, fps) -> dict[str, Any]:
    entities = []
    for k, (e, inside, _, centres, angles, r) in enumerate(drawn):
        full_area = inside.reshape(frames, -1).sum(1)
        vis_area = masks[k].reshape(frames, -1).sum(1)
        disp = centres[-1] - centres[0]
        steps = np.linalg.norm(np.diff(centres, axis=0), axis=1)
        entities.append({
            "ref_id": e.ref_id,
            "type": e.entity_type,
            "shape": e.shape,
            "colour": e.colour,
            "rgb": list(COLOURS[e.colour]),
            "size": e.size,
            "radius_px": float(r),
            "texture": e.texture,
            "motion": e.motion.model_dump(),
            "centre_px": np.round(centres, 4).tolist(),  # screen coords per frame (1e-4 px)
            "angle_deg": np.round(angles, 3).tolist(),
            "visible_area_px": vis_area.tolist(),
            "visible_fraction": np.round(vis_area / np.maximum(full_area, 1), 4).tolist(),
            "start_region": region_name(centres[0, 0] / width, centres[0, 1] / height),
            "end_region": region_name(centres[-1, 0] / width, centres[-1, 1] / height),
            "displacement_px": np.round(disp, 3).tolist(),
            "path_length_px": round(float(steps.sum()), 3),
            "rotation_deg": round(float(angles[-1] - angles[0]), 3),
        })
    left_to_right = [d["ref_id"] for d in sorted(entities, key=lambda d: d["centre_px"][0][0])]
    inter = []
    for it in interactions(spec):
        a = next(d for d in entities if d["ref_id"] == it["a"])
        b = next(d for d in entities if d["ref_id"] == it["b"])
        dist = np.linalg.norm(np.array(a["centre_px"]) - np.array(b["centre_px"]), axis=1)  # (F,)
        touching = dist <= (a["radius_px"] + b["radius_px"]) * 1.001 + 1e-6
        inter.append({**it, "centre_distance_px": np.round(dist, 3).tolist(),
                      "contact_frame": int(np.argmax(touching)) if touching.any() else None})
    return {
        "version": 1,
        "frames": frames, "height": height, "width": width, "fps": fps,
        "duration_s": frames / fps,
        "scene": {"ref_id": "SCENE_1", "style": spec.style, "seed": spec.seed},
        "camera": {"movement": spec.camera, "offset_px": np.round(cam, 4).tolist()},
        "entities": entities,
        "left_to_right_at_start": left_to_right,
        "interactions": inter,
        "spec": spec.model_dump(mode="json"),
    }


def ground_truth_flow(truth: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Forward flow (F-1, H, W, 2) float32 in target pixels: where each pixel's content moves from f to f+1.

    Entities move rigidly (translation + rotation about their centre), so the flow at a pixel p covered by entity k
    is c_{f+1} + R(angle_{f+1} - angle_f)(p - c_f) - p. Background pixels move opposite to the camera. Pixels are
    owned by the topmost entity (draw order), so occluded parts do not leak. The entities are re-rasterised from
    `truth["spec"]` at the target resolution; displacements are scaled from the clip's pixels to the target's.
    """
    spec = SceneSpec.model_validate(truth["spec"])
    frames, h0, w0 = truth["frames"], truth["height"], truth["width"]
    sx, sy = w0 / width, h0 / height  # target pixel -> clip pixel
    xt, yt = _pixel_grid(height, width)
    x, y = xt * sx, yt * sy  # target pixel centres in clip pixels
    drawn = _rasterise(spec, frames, h0, w0, x, y)
    cam = camera_offsets(spec, frames, h0, w0)
    flow = np.zeros((frames - 1, height, width, 2), np.float64)
    flow[...] = -(cam[1:] - cam[:-1])[:, None, None, :]  # background follows the camera
    owned = np.zeros((frames - 1, height, width), bool)
    for e, inside, _, centres, angles, _ in reversed(drawn):  # topmost first
        mine = inside[:-1] & ~owned  # (F-1, H, W)
        dx = x[None] - centres[:-1, 0, None, None]
        dy = y[None] - centres[:-1, 1, None, None]
        th = np.deg2rad(angles[1:] - angles[:-1])[:, None, None]
        c, s = np.cos(th), np.sin(th)
        # rotation with y down: positive angle turns clockwise on screen
        fx = centres[1:, 0, None, None] + c * dx - s * dy - x[None]
        fy = centres[1:, 1, None, None] + s * dx + c * dy - y[None]
        flow[..., 0] = np.where(mine, fx, flow[..., 0])
        flow[..., 1] = np.where(mine, fy, flow[..., 1])
        owned |= mine
    flow[..., 0] /= sx
    flow[..., 1] /= sy
    return flow.astype(np.float32)


# ------------------------------------------------------------------------------------------------- MTSS

_COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _texture_adj(texture: str) -> str:
    return {"solid": "", "striped": "striped ", "dotted": "dotted "}[texture]


def _name(e: EntitySpec) -> str:
    """Short identifying noun phrase, e.g. 'red striped circle', 'blue stick figure'."""
    return f"{e.colour} {_texture_adj(e.texture)}{SHAPE_NOUN[e.shape]}"


def _motion_clause(spec: SceneSpec, e: EntitySpec) -> str:
    """Present-tense verb phrase for the semantic description (no ref_ids: c_k must stand alone)."""
    m = e.motion
    walker = e.shape == "figure"
    if m.kind == "static":
        return "standing still" if walker else "resting in place"
    if m.kind == "linear":
        verb = ("walking" if m.speed == "slow" else "running") if walker else "moving"
        return f"{verb} {'quickly ' if m.speed == 'fast' and not walker else ''}{DIRECTION_PHRASE[m.direction]}"
    if m.kind == "bounce":
        return f"bouncing {'quickly ' if m.speed == 'fast' else ''}off the edges of the frame"
    if m.kind == "rotate":
        turn = "clockwise" if m.clockwise else "counter-clockwise"
        return f"spinning {'quickly' if m.speed == 'fast' else 'slowly'} {turn} in place"
    other = spec.entity(m.partner)
    if m.kind == "meet":
        return f"{'walking' if walker else 'moving'} toward the {_name(other)} until they touch"
    return f"following the {_name(other)}"


def _detail(e: EntitySpec) -> str:
    pct = round(SIZE_RADIUS[e.size] * 200)
    tex = {"solid": "solid", "striped": "with darker stripes", "dotted": "dotted with darker spots"}[e.texture]
    if e.shape == "figure":
        return (f"A {e.size} {e.colour} stick figure with a round head, straight body, outstretched arms and two "
                f"legs, about {pct}% of the frame height tall.")
    if e.texture == "solid":
        return f"A {e.size} solid {e.colour} {SHAPE_NOUN[e.shape]}, about {pct}% of the frame height across."
    return f"A {e.size} {e.colour} {SHAPE_NOUN[e.shape]} {tex}, about {pct}% of the frame height across."


def _narrative_sentence(spec: SceneSpec, e: EntitySpec, truth: dict[str, dict[str, Any]], width: int, height: int) -> str:
    m, rid, t = e.motion, e.ref_id, truth[e.ref_id]
    start, end = t["start_region"], t["end_region"]
    if m.kind == "static":
        return f"{rid} stays still at the {start}."
    if m.kind == "linear":
        return f"{rid} starts at the {start} and moves {DIRECTION_PHRASE[m.direction]}, ending at the {end}."
    if m.kind == "bounce":
        return f"{rid} starts at the {start} heading {DIRECTION_PHRASE[m.direction]} and bounces off the frame edges."
    if m.kind == "rotate":
        turns = {90.0: "a quarter turn", 270.0: "three quarters of a turn"}[ROTATION_DEG[m.speed]]
        way = "clockwise" if m.clockwise else "counter-clockwise"
        return f"{rid} spins {way} in place at the {start}, {turns} in all."
    other = truth[m.partner]
    if m.kind == "meet":
        if [x.ref_id for x in spec.entities].index(rid) > [x.ref_id for x in spec.entities].index(m.partner):
            return ""  # the pair is narrated once, from its first member
        meet_x = (t["centre_px"][-1][0] + other["centre_px"][-1][0]) / 2 / width
        meet_y = (t["centre_px"][-1][1] + other["centre_px"][-1][1]) / 2 / height
        return (f"{rid} (starting at the {start}) and {m.partner} (starting at the {other['start_region']}) move "
                f"toward each other and touch at the {region_name(meet_x, meet_y)}, then stay together.")
    leader = spec.entity(m.partner)
    return (f"{rid} follows {m.partner} closely from behind as it moves {DIRECTION_PHRASE[leader.motion.direction]}, "
            f"ending at the {end}.")


def spec_to_mtss(spec: SceneSpec, *, frames: int = 16, height: int = 64, width: int = 64, fps: int = 8) -> MTSSCaption:
    """The MTSS caption of a spec: one Reference per entity plus SCENE_1, and one shot covering the clip.

    Positions in the narrative ("top left", "ends at the right") come from the rendered truth at these sizes.
    """
    _, _, truth = render(spec, frames, height, width, fps)
    by_id = {t["ref_id"]: t for t in truth["entities"]}
    scene_sem, scene_detail, _ = SCENE_TEXT[spec.style]
    refs: list[dict[str, Any]] = []
    for e in spec.entities:
        anchor: dict[str, Any] = {"id_features": {"detail_description": _detail(e)}}
        if e.shape == "figure":
            anchor["attributes"] = {"clothing": f"None; the whole figure is {e.colour}.", "hairstyle": "None.",
                                    "accessories": "None."}
        refs.append({
            "ref_id": e.ref_id, "type": e.entity_type,
            "semantic_description": f"{_article(e.colour).capitalize()} {_name(e)} {_motion_clause(spec, e)}.",
            "appearance_anchor": anchor,
            "noun_phrase": _name(e),
        })
    refs.append({"ref_id": "SCENE_1", "type": "scene", "semantic_description": scene_sem,
                 "appearance_anchor": {"id_features": {"detail_description": scene_detail}}})

    setting = scene_sem[0].lower() + scene_sem[1:].rstrip(".")
    clauses = [f"{_article(e.colour)} {_name(e)} {_motion_clause(spec, e)}" for e in spec.entities]
    listing = clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]
    n_persons = sum(e.shape == "figure" for e in spec.entities)
    n_objects = len(spec.entities) - n_persons
    counts = " and ".join(
        f"{_COUNT_WORDS[n]} {noun}{'s' if n > 1 else ''}"
        for n, noun in ((n_persons, "stick figure"), (n_objects, "shape")) if n
    )
    scene_description = f"On {setting}, {counts}: {listing}."
    moving = [e for e in spec.entities if e.motion.kind != "static"]
    pace = "lively" if any(e.motion.speed == "fast" for e in moving) else ("calm" if moving else "still")
    camera_move = {"static": "static", "pan_left": "slow pan left", "pan_right": "slow pan right"}[spec.camera]
    global_style = (f"Flat synthetic 2D render with hard-edged shapes; even lighting; {pace} pace; "
                    f"{'locked-off camera' if spec.camera == 'static' else 'the camera pans slowly'}.")

    order = ", ".join(truth["left_to_right_at_start"])
    sentences = [f"In SCENE_1, from left to right at the start: {order}."]
    sentences += [s for e in spec.entities if (s := _narrative_sentence(spec, e, by_id, width, height))]
    if spec.camera != "static":
        way = "right" if spec.camera == "pan_right" else "left"
        drift = "left" if way == "right" else "right"
        sentences.append(f"The camera pans slowly to the {way}, so the background drifts {drift}.")
    caption = {
        "structured_caption": {"english": {
            "scene_description": scene_description, "global_style": global_style, "references": refs}},
        "shots": [{
            "shot_id": "shot_1", "time_range": [0.0, round(frames / fps, 3)],
            "references_in_shot": [r["ref_id"] for r in refs],
            "camera": {"movement": camera_move, "angle": "front-on", "shot_type": "wide"},
            "visual_description": " ".join(sentences),
        }],
    }
    return parse_caption(caption, "spec_to_mtss")


# ---------------------------------------------------------------------------------------- random scenes


def _feasible_start(
    rng: np.random.Generator, u: np.ndarray, back: float, fwd: float, r: float, height: int, width: int
) -> tuple[float, float] | None:
    """A start (pixels) so that the path from start - u*back to start + u*fwd keeps the centre >= r from the edges."""
    lo = [r + max(0.0, -u[i] * fwd, u[i] * back) for i in range(2)]
    hi = [size - r - max(0.0, u[i] * fwd, -u[i] * back) for i, size in enumerate((width, height))]
    if lo[0] > hi[0] or lo[1] > hi[1]:
        return None
    return float(rng.uniform(lo[0], hi[0])), float(rng.uniform(lo[1], hi[1]))


def _sample_motion(
    rng: np.random.Generator, kind: str, r: float, height: int, width: int, unit: float
) -> tuple[dict[str, Any], tuple[float, float]]:
    """One candidate (motion, start in pixels) of the given kind whose path keeps the centre >= r from the edges."""
    motion: dict[str, Any] = {"kind": kind, "speed": str(rng.choice(["slow", "fast"]))}
    start = None
    if kind == "linear":
        for d in [str(d) for d in rng.permutation(list(DIRECTION_VECTOR))]:
            start = _feasible_start(rng, np.array(DIRECTION_VECTOR[d]), 0.0, LINEAR_TRAVEL[motion["speed"]] * unit,
                                    r, height, width)
            if start is not None:
                motion["direction"] = d
                break
        if start is None:
            motion = {"kind": "static"}
    elif kind == "bounce":
        motion["direction"] = str(rng.choice(list(DIRECTION_VECTOR)))
    elif kind == "rotate":
        motion["clockwise"] = bool(rng.random() < 0.5)
    if motion["kind"] == "static":
        motion.pop("speed", None)
    if start is None:
        start = (float(rng.uniform(r, width - r)), float(rng.uniform(r, height - r)))
    return motion, start


def random_spec(
    rng: np.random.Generator,
    *,
    min_entities: int = 1,
    max_entities: int = 4,
    interaction_prob: float = 0.3,
    person_prob: float = 0.2,
    pan_prob: float = 0.15,
    height: int = 64,
    width: int = 64,
) -> SceneSpec:
    """A random scene: distinct colours that the style does not hide, starts and paths kept inside the frame."""
    if not 1 <= min_entities <= max_entities <= 4:
        raise ValueError(f"need 1 <= min_entities <= max_entities <= 4, got {min_entities}, {max_entities}")
    style = str(rng.choice(list(SCENE_TEXT)))
    k = int(rng.integers(min_entities, max_entities + 1))
    palette = [c for c in COLOURS if c not in SCENE_TEXT[style][2]]
    colours = [str(c) for c in rng.choice(palette, size=k, replace=False)]
    unit = _unit_scale(height, width)
    margin = 0.6  # the centre stays at least 0.6 radius from an edge: entities may be partly cut off, never lost

    entities: list[dict[str, Any]] = []
    placed: list[tuple[tuple[float, float], float]] = []  # (start pixels, radius) of entities so far
    for i in range(k):
        is_person = rng.random() < person_prob
        shape = "figure" if is_person else str(rng.choice(["circle", "square", "triangle", "star", "ring"]))
        size = str(rng.choice(["small", "medium", "large"], p=[0.3, 0.4, 0.3]))
        texture = "solid" if is_person else str(rng.choice(["solid", "striped", "dotted"], p=[0.5, 0.25, 0.25]))
        kinds = ["static", "linear", "bounce"] + ([] if is_person else ["rotate"])
        kind = str(rng.choice(kinds))
        if kind == "rotate" and texture == "solid" and shape in ("circle", "ring"):
            texture = "striped"  # a plain disc turning in place would look static
        r_full = SIZE_RADIUS[size] * unit
        # best of several candidate starts: the one with the most clearance from the entities placed so far
        best: tuple[float, dict[str, Any], tuple[float, float]] | None = None
        for _ in range(12):
            motion, start = _sample_motion(rng, kind, r_full * margin, height, width, unit)
            clearance = min(
                (math.hypot(start[0] - p[0], start[1] - p[1]) - r_full - pr for p, pr in placed), default=0.0
            )
            if best is None or clearance > best[0]:
                best = (clearance, motion, start)
        assert best is not None
        _, motion, start = best
        placed.append((start, r_full))
        prefix = "PERSON" if is_person else "OBJECT"
        n = sum(e["ref_id"].startswith(prefix) for e in entities) + 1
        entities.append({"ref_id": f"{prefix}_{n}", "shape": shape, "colour": colours[i], "size": size,
                         "texture": texture, "start": [start[0] / width, start[1] / height],
                         "angle": float(rng.choice([0.0, 15.0, 30.0])) if shape != "figure" else 0.0,
                         "motion": motion})

    if k >= 2 and rng.random() < interaction_prob:
        a, b = (int(i) for i in rng.choice(k, size=2, replace=False))
        ea, eb = entities[a], entities[b]
        for e in (ea, eb):  # large partners would already touch at their starts: keep the approach visible
            e["size"] = "medium" if e["size"] == "large" else e["size"]
        ra = SIZE_RADIUS[ea["size"]] * unit
        rb = SIZE_RADIUS[eb["size"]] * unit
        if rng.random() < 0.5:  # meet: a on the left, b on the right, at similar heights
            ya = rng.uniform(0.3, 0.7)
            ea["start"] = [float(rng.uniform(0.12, 0.25)), float(ya)]
            eb["start"] = [float(rng.uniform(0.75, 0.88)), float(np.clip(ya + rng.uniform(-0.15, 0.15), 0.2, 0.8))]
            ea["motion"] = {"kind": "meet", "partner": eb["ref_id"]}
            eb["motion"] = {"kind": "meet", "partner": ea["ref_id"]}
        else:  # follow: b trails a, which moves linearly
            gap = FOLLOW_GAP * (ra + rb)
            for d in [str(d) for d in rng.permutation(list(DIRECTION_VECTOR))]:
                speed = str(rng.choice(["slow", "fast"]))
                start = _feasible_start(rng, np.array(DIRECTION_VECTOR[d]), gap, LINEAR_TRAVEL[speed] * unit,
                                        max(ra, rb) * margin, height, width)
                if start is not None:
                    ea["start"] = [start[0] / width, start[1] / height]
                    ea["motion"] = {"kind": "linear", "direction": d, "speed": speed}
                    eb["start"] = None
                    eb["motion"] = {"kind": "follow", "partner": ea["ref_id"]}
                    break
    camera = "static"
    if rng.random() < pan_prob:
        camera = str(rng.choice(["pan_left", "pan_right"]))
    return SceneSpec.model_validate({"style": style, "camera": camera, "seed": int(rng.integers(0, 2**31 - 1)),
                                     "entities": entities})
