"""The rasteriser: entity tracks, shapes, textures, backgrounds and the camera, drawn with numpy only.

Geometry conventions (pixels): x grows to the right, y grows down, pixel (i, j) has its centre at (j + 0.5, i + 0.5).
Angles are degrees; a positive change is clockwise on screen. The camera pans by moving a world window: entity
motions live in world coordinates and everything on screen (pixels, masks, centres, flow) is world minus the
camera offset. The same spec and sizes always give the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sara.data.synthetic.spec import (
    BOUNCE_TRAVEL, COLOURS, DIRECTION_VECTOR, FOLLOW_GAP, LINEAR_TRAVEL, MEET_CONTACT_AT, PAN_TRAVEL, ROTATION_DEG,
    SIZE_RADIUS, EntitySpec, SceneSpec,
)
from sara.data.synthetic.truth import Truth, build_truth



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


@dataclass(frozen=True)
class DrawnEntity:
    """One entity rasterised at given pixel centres (draw order: later entities are drawn on top)."""

    entity: EntitySpec
    inside: np.ndarray  # (F, H, W) bool: the full shape, before occlusion
    dark: np.ndarray  # (F, H, W) bool: where the texture uses the darker shade
    centres: np.ndarray  # (F, 2) screen pixels
    angles: np.ndarray  # (F,) degrees
    radius: float  # pixels


def _rasterise(spec: SceneSpec, frames: int, height: int, width: int, x: np.ndarray, y: np.ndarray) -> list[DrawnEntity]:
    """Every entity of `spec` evaluated at the pixel-centre coordinates `x`, `y` (the spec's own pixel units)."""
    tracks = world_tracks(spec, frames, height, width)
    cam = camera_offsets(spec, frames, height, width)
    out = []
    for e in spec.entities:
        world, angles = tracks[e.ref_id]
        centres = world - cam  # (F, 2) screen
        r = radius_px(e, height, width)
        u, v = _local_coords(x, y, centres, angles, r)
        out.append(DrawnEntity(e, shape_inside(e.shape, u, v), texture_dark(e.texture, u, v), centres, angles, r))
    return out


def visible_masks(inside: list[np.ndarray]) -> np.ndarray:
    """Full shape masks in draw order -> visible (modal) masks (K, F, H, W): later entities hide earlier ones."""
    vis = np.stack(inside).copy()  # (K, F, H, W)
    covered = np.zeros(vis.shape[1:], bool)
    for k in range(len(inside) - 1, -1, -1):
        vis[k] &= ~covered
        covered |= inside[k]
    return vis


def background_frames(spec: SceneSpec, frames: int, height: int, width: int) -> np.ndarray:
    """(F, H, W, 3) uint8: the background alone, panned like the clip; the grounded judge compares against it."""
    x, y = _pixel_grid(height, width)
    cam = camera_offsets(spec, frames, height, width)
    # world coords are screen coords plus the camera offset
    return _to_uint8(np.stack([background(spec, x + cam[f, 0], y + cam[f, 1], height, width) for f in range(frames)]))


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def render(spec: SceneSpec, frames: int, height: int, width: int, fps: int) -> tuple[np.ndarray, np.ndarray, Truth]:
    """Draw one clip. Returns frames (F, H, W, 3) uint8, visible masks (K, F, H, W) bool and its `Truth`."""
    if frames < 2 or height < 8 or width < 8 or fps < 1:
        raise ValueError(f"render needs frames >= 2, height/width >= 8 and fps >= 1, got {frames}x{height}x{width}@{fps}")
    x, y = _pixel_grid(height, width)
    # rounding the background first gives the same pixels: entity pixels are replaced, not blended
    video = background_frames(spec, frames, height, width).astype(np.float64)  # (F, H, W, 3)
    drawn = _rasterise(spec, frames, height, width, x, y)
    for d in drawn:
        rgb = np.array(COLOURS[d.entity.colour], float)
        shade = np.where(d.dark[..., None], rgb * 0.5, rgb)  # (F, H, W, 3)
        video = np.where(d.inside[..., None], shade, video)
    masks = visible_masks([d.inside for d in drawn])
    truth = build_truth(
        spec, frames, height, width, fps,
        centres=[d.centres for d in drawn], angles=[d.angles for d in drawn], radii=[d.radius for d in drawn],
        full_area=[d.inside.reshape(frames, -1).sum(1) for d in drawn], visible_area=masks.reshape(len(drawn), frames, -1).sum(2),
        camera=camera_offsets(spec, frames, height, width),
    )
    return _to_uint8(video), masks, truth


# ------------------------------------------------------------------------------------------------- flow


def ground_truth_flow(truth: Truth, height: int, width: int) -> np.ndarray:
    """Forward flow (F-1, H, W, 2) float32 in target pixels: where each pixel's content moves from f to f+1.

    Entities move rigidly (translation + rotation about their centre), so the flow at a pixel p covered by entity k
    is c_{f+1} + R(angle_{f+1} - angle_f)(p - c_f) - p. Background pixels move opposite to the camera. Pixels are
    owned by the topmost entity (draw order), so occluded parts do not leak. The entities are re-rasterised from
    `truth.spec` at the target resolution; displacements are scaled from the clip's pixels to the target's.
    """
    spec, frames, h0, w0 = truth.spec, truth.frames, truth.height, truth.width
    sx, sy = w0 / width, h0 / height  # target pixel -> clip pixel
    xt, yt = _pixel_grid(height, width)
    x, y = xt * sx, yt * sy  # target pixel centres in clip pixels
    drawn = _rasterise(spec, frames, h0, w0, x, y)
    cam = camera_offsets(spec, frames, h0, w0)
    flow = np.zeros((frames - 1, height, width, 2), np.float64)
    flow[...] = -(cam[1:] - cam[:-1])[:, None, None, :]  # background follows the camera
    owned = np.zeros((frames - 1, height, width), bool)
    for d in reversed(drawn):  # topmost first
        centres, angles = d.centres, d.angles
        mine = d.inside[:-1] & ~owned  # (F-1, H, W)
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


