# long file: one ray caster; camera, shapes, textures and shading share its vector helpers.
"""Ray casting for synthetic scenes: a pinhole camera, planes and solids, procedural textures and
Lambert shading, vectorised over the pixels in float32 numpy.

World frame: x right, y up, z forward (at yaw 0), metres; the ground is the plane y = 0. Every
ray is scaled so that its component along the optical axis is 1, so the ray parameter of a hit
is its z-depth: depth is exact by construction, not estimated.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple, Protocol

import cv2
import numpy as np

F32 = np.float32
LATTICE = 64  # value-noise lattice side (a power of two: coordinates wrap with & (LATTICE - 1))


# ----------------------------------------------------------------------------------- camera
@dataclass(frozen=True)
class Camera:
    """A pinhole camera at (0, height, 0), pitched down and turned by yaw (degrees).

    ``shift_px`` moves the principal point (dx, dy) in pixels: camera shake. It translates the
    picture by exactly (dx, dy) (see ``shifted``) while mask and depth are cast exactly.
    """

    size: tuple[int, int]  # (h, w)
    height_m: float
    pitch_deg: float
    yaw_deg: float
    focal_px: float
    shift_px: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def with_fov(cls, size: tuple[int, int], fov_deg: float, **pose) -> Camera:
        """A camera whose horizontal field of view is ``fov_deg``."""
        return cls(size=size, focal_px=size[1] / 2 / math.tan(math.radians(fov_deg) / 2), **pose)

    @property
    def principal(self) -> tuple[float, float]:
        """(cx, cy) in continuous pixel coordinates (pixel i spans [i, i + 1))."""
        return self.size[1] / 2 + self.shift_px[0], self.size[0] / 2 + self.shift_px[1]

    def padded(self, margin: int) -> Camera:
        """The same camera seeing ``margin`` more pixels on every side."""
        h, w = self.size
        return replace(self, size=(h + 2 * margin, w + 2 * margin))

    @property
    def origin(self) -> np.ndarray:
        return np.array([0.0, self.height_m, 0.0], F32)

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World vectors of the image's right, down and the optical axis (forward)."""
        p, y = math.radians(self.pitch_deg), math.radians(self.yaw_deg)
        sp, cp, sy, cy = math.sin(p), math.cos(p), math.sin(y), math.cos(y)
        right = np.array([cy, 0.0, -sy], F32)
        down = np.array([-sy * sp, -cp, -cy * sp], F32)
        forward = np.array([sy * cp, -sp, cy * cp], F32)
        return right, down, forward

    def rays(self) -> np.ndarray:
        """(h, w, 3) ray directions through the pixel centres, forward component 1 (read-only,
        shared by the calls for one camera)."""
        return _rays(self)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Continuous pixel coordinates (x, y) and z-depth of world points (n, 3)."""
        right, down, forward = self.axes()
        rel = np.asarray(points, F32) - self.origin
        z = rel @ forward
        cx, cy = self.principal
        safe = np.where(np.abs(z) > 1e-6, z, 1e-6)
        return (
            cx + self.focal_px * (rel @ right) / safe,
            cy + self.focal_px * (rel @ down) / safe,
            z,
        )

    def ground_point(self, x: float, y: float) -> np.ndarray | None:
        """World point where the ray through pixel coordinates (x, y) meets the ground."""
        right, down, forward = self.axes()
        cx, cy = self.principal
        d = forward + (x - cx) / self.focal_px * right + (y - cy) / self.focal_px * down
        if d[1] >= -1e-6:
            return None
        return self.origin - self.height_m / d[1] * d

    def window(self, bounds: tuple[np.ndarray, np.ndarray] | None) -> tuple[slice, slice]:
        """Rows and columns that can see a world box (lo, hi); the whole image when unsure."""
        h, w = self.size
        if bounds is None:
            return slice(0, h), slice(0, w)
        x, y, z = self.project(corners(bounds))
        if (z < 0.05).any():
            return slice(0, h), slice(0, w)
        rows = slice(int(np.clip(math.floor(y.min()) - 1, 0, h)), int(np.clip(y.max() + 2, 0, h)))
        cols = slice(int(np.clip(math.floor(x.min()) - 1, 0, w)), int(np.clip(x.max() + 2, 0, w)))
        return rows, cols


@functools.lru_cache(maxsize=4)
def _rays(camera: Camera) -> np.ndarray:
    h, w = camera.size
    cx, cy = camera.principal
    xs = ((np.arange(w, dtype=F32) + 0.5 - cx) / camera.focal_px).astype(F32)
    ys = ((np.arange(h, dtype=F32) + 0.5 - cy) / camera.focal_px).astype(F32)
    right, down, forward = camera.axes()
    rays = forward + xs[None, :, None] * right + ys[:, None, None] * down
    rays.flags.writeable = False
    return rays


# ----------------------------------------------------------------------------------- shapes
class Shape(Protocol):
    """Something a ray can hit. ``intersect`` gives the ray parameter (inf on a miss) and a
    small integer naming the part hit; ``geometry`` gives normals and texture coordinates (m)."""

    def intersect(self, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def geometry(self, points: np.ndarray, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

    def bounds(self) -> tuple[np.ndarray, np.ndarray] | None: ...


class Solid(Shape, Protocol):
    """A shape of finite size (everything but a plane): it has bounds and a footprint."""

    def bounds(self) -> tuple[np.ndarray, np.ndarray]: ...


def _rotate_y(v: np.ndarray, yaw: float) -> np.ndarray:
    """Rotate vectors (..., 3) about the y axis by ``yaw`` radians (local -> world)."""
    c, s = F32(math.cos(yaw)), F32(math.sin(yaw))
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([c * x + s * z, y, c * z - s * x], axis=-1)


def _positive(t: np.ndarray) -> np.ndarray:
    return np.where(t > 1e-4, t, np.inf).astype(F32)


@dataclass(frozen=True)
class Plane:
    """The ground (axis 1, y = offset) or a wall (axis 2: z = offset, axis 0: x = offset) that
    stands on the ground up to ``top_m``."""

    axis: int
    offset: float = 0.0
    top_m: float = math.inf

    def intersect(self, origin, dirs):
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _positive((F32(self.offset) - origin[self.axis]) / dirs[..., self.axis])
        if self.axis != 1:
            y = origin[1] + t * dirs[..., 1]
            t = np.where((y >= 0) & (y <= self.top_m), t, np.inf).astype(F32)
        return t, np.zeros(t.shape, np.int8)

    def geometry(self, points, part):
        normal = np.zeros_like(points)
        normal[:, self.axis] = 1.0
        u_axis, v_axis = {1: (0, 2), 2: (0, 1), 0: (2, 1)}[self.axis]
        return normal, points[:, [u_axis, v_axis]]

    def bounds(self):
        return None


@dataclass(frozen=True)
class Box:
    """A box standing on the ground: bottom centre (x, z), half sizes (x, y, z), turned by yaw."""

    x: float
    z: float
    half: tuple[float, float, float]
    yaw: float

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x, self.half[1], self.z], F32)

    def intersect(self, origin, dirs):
        o = _rotate_y(origin - self.centre, -self.yaw)
        d = _rotate_y(dirs, -self.yaw)
        half = np.asarray(self.half, F32)
        with np.errstate(divide="ignore", invalid="ignore"):
            inv = F32(1.0) / d
            t1, t2 = (-half - o) * inv, (half - o) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        enter, axis = near.max(axis=-1), near.argmax(axis=-1).astype(np.int8)
        hit = (enter <= far.min(axis=-1)) & (enter > 1e-4)
        return np.where(hit, enter, np.inf).astype(F32), axis

    def geometry(self, points, part):
        local = _rotate_y(points - self.centre, -self.yaw)
        normal = np.zeros_like(points)
        normal[np.arange(len(part)), part] = 1.0
        uv_axes = np.array([[2, 1], [0, 2], [0, 1]])[part]
        uv = np.take_along_axis(local, uv_axes, axis=1)
        return _rotate_y(normal, self.yaw), uv

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = math.hypot(self.half[0], self.half[2])
        return (
            np.array([self.x - r, 0.0, self.z - r]),
            np.array([self.x + r, 2 * self.half[1], self.z + r]),
        )


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder standing on the ground, with its top cap."""

    x: float
    z: float
    radius: float
    height: float

    def intersect(self, origin, dirs):
        ox, oz = origin[0] - self.x, origin[2] - self.z
        dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
        a = dx * dx + dz * dz
        b = ox * dx + oz * dz
        c = ox * ox + oz * oz - self.radius**2
        disc = b * b - a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            side = _positive((-b - np.sqrt(np.maximum(disc, 0))) / a)
            y = origin[1] + side * dy
            side = np.where((disc >= 0) & (y >= 0) & (y <= self.height), side, np.inf)
            top = _positive((self.height - origin[1]) / dy)
        inside = (ox + top * dx) ** 2 + (oz + top * dz) ** 2 <= self.radius**2
        top = np.where(inside, top, np.inf)
        return np.minimum(side, top).astype(F32), (top < side).astype(np.int8)

    def geometry(self, points, part):
        lx, lz = points[:, 0] - self.x, points[:, 2] - self.z
        on_top = part == 1
        normal = np.stack([lx, np.zeros_like(lx), lz], axis=1) / F32(self.radius)
        normal[on_top] = (0.0, 1.0, 0.0)
        around = np.arctan2(lx, lz) * F32(self.radius)
        uv = np.stack([np.where(on_top, lx, around), np.where(on_top, lz, points[:, 1])], axis=1)
        return normal, uv

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        r = self.radius
        return np.array([self.x - r, 0.0, self.z - r]), np.array(
            [self.x + r, self.height, self.z + r]
        )


@dataclass(frozen=True, eq=False)
class Ellipsoids:
    """A union of ellipsoids (centres and radii (k, 3), all turned by yaw): one is a sphere or an
    egg, several overlapping ones a blob."""

    centres: np.ndarray
    radii: np.ndarray
    yaw: float = 0.0

    def intersect(self, origin, dirs):
        best = np.full(dirs.shape[:-1], np.inf, F32)
        part = np.zeros(dirs.shape[:-1], np.int8)
        d_local = _rotate_y(dirs, -self.yaw)
        for k, (centre, radii) in enumerate(zip(self.centres, self.radii)):
            inv = (1.0 / radii).astype(F32)
            o = _rotate_y(origin - centre.astype(F32), -self.yaw) * inv
            d = d_local * inv
            a = np.einsum("...i,...i->...", d, d)
            b = d @ o
            disc = b * b - a * (o @ o - 1.0)
            with np.errstate(invalid="ignore"):
                t = _positive((-b - np.sqrt(np.maximum(disc, 0))) / a)
            t = np.where(disc >= 0, t, np.inf)
            closer = t < best
            best = np.where(closer, t, best)
            part[closer] = k
        return best.astype(F32), part

    def geometry(self, points, part):
        centres, radii = self.centres[part].astype(F32), self.radii[part].astype(F32)
        local = _rotate_y(points - centres, -self.yaw)
        normal = _rotate_y(local / radii**2, self.yaw)
        normal /= np.linalg.norm(normal, axis=1, keepdims=True) + F32(1e-9)
        around = np.arctan2(local[:, 0], local[:, 2]) * radii.mean(axis=1)
        return normal, np.stack([around, points[:, 1]], axis=1)

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        reach = self.radii.max(axis=1, keepdims=True)
        return (self.centres - reach).min(axis=0), (self.centres + reach).max(axis=0)


def corners(bounds: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The 8 corners (8, 3) of a world box (lo, hi)."""
    lo, hi = bounds
    return np.array([[a[0], b[1], c[2]] for a in (lo, hi) for b in (lo, hi) for c in (lo, hi)])


def footprint(shape: Shape) -> tuple[float, float, float, float]:
    """(x, z, radius, height) of a solid's footprint on the ground, for contact shadows."""
    bounds = shape.bounds()
    if bounds is None:
        raise ValueError(f"{shape!r} is unbounded (a plane): it has no footprint")
    lo, hi = bounds
    return (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2, max(hi[0] - lo[0], hi[2] - lo[2]) / 2, hi[1]


# --------------------------------------------------------------------------------- textures
def _square(x: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Box-filtered square wave of period 1 (+1 then -1) over ``width`` periods: no aliasing."""
    tri = lambda v: 0.5 - np.abs(v - np.floor(v) - 0.5)  # noqa: E731  (its integral)
    width = np.maximum(width, F32(1e-3))
    return (tri(x + width / 2) - tri(x - width / 2)) / width


def _pulse(x: np.ndarray, duty: float, width: np.ndarray) -> np.ndarray:
    """Box-filtered coverage of a pulse of length ``duty`` at the start of every period."""
    integral = lambda v: np.floor(v) * duty + np.minimum(v - np.floor(v), duty)  # noqa: E731
    width = np.maximum(width, F32(1e-3))
    return (integral(x + width / 2) - integral(x - width / 2)) / width


def _value_noise(lattice: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Smooth value noise in [0, 1] from a wrapping lattice (LATTICE + 1 square, flattened, its
    last row and column repeating the first)."""
    xf, yf = np.floor(x), np.floor(y)
    fx, fy = x - xf, y - yf
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    m, side = LATTICE - 1, LATTICE + 1
    corner = (yf.astype(np.intp) & m) * side + (xf.astype(np.intp) & m)
    a, b = lattice.take(corner), lattice.take(corner + 1)
    c, d = lattice.take(corner + side), lattice.take(corner + side + 1)
    top = a + fx * (b - a)
    return top + fy * (c + fx * (d - c) - top)


def _fbm(lattice, uv, base: float, octaves: int, foot: np.ndarray) -> np.ndarray:
    """Fractal noise in [0, 1]; octaves finer than the pixel footprint fade to their mean."""
    total, weight = np.zeros(len(uv), F32), F32(0.0)
    amp, freq = F32(1.0), F32(base)
    for k in range(octaves):
        fade = np.clip(2.0 - 2.0 * foot * freq, 0.0, 1.0)
        if fade.any():
            shift = F32(17.31 * (k + 1))
            value = _value_noise(lattice, uv[:, 0] * freq + shift, uv[:, 1] * freq - shift)
            total += amp * (fade * (value - 0.5))
        weight += amp
        amp, freq = amp * F32(0.5), freq * F32(2.0)
    return F32(0.5) + total / weight * F32(1.6)


@dataclass(frozen=True, eq=False)
class Texture:
    """A procedural albedo over surface coordinates in metres.

    ``pattern``: checker, stripes, tiles (``colors[1]`` is the mortar), noise or plain.
    ``grain`` scales a fine fractal noise on top; ``lattice`` holds the noise's random values.
    """

    pattern: str
    colors: np.ndarray  # (2, 3) albedo in [0, 1]
    period_m: float
    angle: float  # radians, rotates the pattern on its surface
    grain: float
    lattice: np.ndarray  # (LATTICE, LATTICE) float32
    brick: bool = False  # tiles: half-offset rows of 2:1 bricks
    _wrapped: np.ndarray = field(init=False, repr=False)  # set by __post_init__

    def __post_init__(self) -> None:
        # The lattice padded with its first row and column, flattened: what _value_noise reads.
        wrapped = np.pad(self.lattice.astype(F32), ((0, 1), (0, 1)), mode="wrap").ravel()
        object.__setattr__(self, "_wrapped", wrapped)

    def albedo(self, uv: np.ndarray, foot: np.ndarray) -> np.ndarray:
        """(n, 3) albedo at texture coordinates uv (n, 2) seen with pixel footprints (n,) in m."""
        c, s = F32(math.cos(self.angle)), F32(math.sin(self.angle))
        u = (c * uv[:, 0] - s * uv[:, 1]) / F32(self.period_m)
        v = (s * uv[:, 0] + c * uv[:, 1]) / F32(self.period_m)
        w = (foot / self.period_m).astype(F32)
        mix = self._mix(u, v, w, uv, foot)
        color = self.colors[0] + mix[:, None] * (self.colors[1] - self.colors[0])
        detail = _fbm(self._wrapped, uv, 1.3 / self.period_m, 4, foot)
        return color * (1.0 + self.grain * (detail - 0.5) * 2.0)[:, None]

    def _mix(self, u, v, w, uv, foot) -> np.ndarray:
        """Where each point lies between colors[0] (0) and colors[1] (1); u, v and the footprint
        w are in pattern periods, uv and foot in metres."""
        if self.pattern == "checker":
            return 0.5 - 0.5 * _square(u, w) * _square(v, w)
        if self.pattern == "stripes":
            return 0.5 - 0.5 * _square(u, w)
        if self.pattern == "tiles":
            if self.brick:
                v = v * 2
                u = u + 0.5 * (np.floor(v) % 2)
                w = np.stack([w, 2 * w])
            else:
                w = np.stack([w, w])
            gap = 1.0 - (1.0 - _pulse(u, 0.08, w[0])) * (1.0 - _pulse(v, 0.08, w[1]))
            m = LATTICE - 1
            tint = self.lattice[np.floor(v).astype(np.int32) & m, np.floor(u).astype(np.int32) & m]
            tint = tint * np.clip(1.0 - w[0], 0.0, 1.0) * F32(0.3)  # each tile a little different
            return gap + (1.0 - gap) * tint
        if self.pattern == "noise":
            value = _fbm(self._wrapped, uv, 1.0 / self.period_m, 3, foot)
            return np.clip((value - 0.5) * 2.5 + 0.5, 0.0, 1.0)
        return np.zeros(len(u), F32)


# ---------------------------------------------------------------------------------- shading
@dataclass(frozen=True, eq=False)
class Light:
    """A directional light plus ambient, and the sky's colours (horizon, zenith)."""

    direction: np.ndarray  # (3,) unit vector towards the light
    ambient: float
    color: np.ndarray  # (3,)
    sky: np.ndarray  # (2, 3)


class Surface(NamedTuple):
    """A shape and how it looks."""

    shape: Shape
    texture: Texture


@dataclass(eq=False)
class Frame:
    """What a camera sees: z-depth in metres (inf for sky), the index of the surface seen at
    each pixel (-1 for sky) and which part of it; ``rgb`` (float, [0, 1]) once shaded."""

    depth_m: np.ndarray  # (h, w) float32
    label: np.ndarray  # (h, w) int16
    part: np.ndarray  # (h, w) int8
    rgb: np.ndarray | None = None  # (h, w, 3) float32


def cast(camera: Camera, shapes: Sequence[Shape]) -> Frame:
    """Nearest hit per pixel, unshaded."""
    rays = camera.rays()
    origin = camera.origin
    depth = np.full(camera.size, np.inf, F32)
    label = np.full(camera.size, -1, np.int16)
    part = np.zeros(camera.size, np.int8)
    for index, shape in enumerate(shapes):
        rows, cols = camera.window(shape.bounds())
        t, p = shape.intersect(origin, rays[rows, cols])
        closer = t < depth[rows, cols]
        np.copyto(depth[rows, cols], t, where=closer)
        np.copyto(label[rows, cols], np.int16(index), where=closer)
        np.copyto(part[rows, cols], p, where=closer)
    return Frame(depth, label, part)


def shade(
    camera: Camera,
    surfaces: Sequence[Surface],
    light: Light,
    frame: Frame,
    indices: Sequence[int] | None = None,
    haze_m: float = 60.0,
) -> None:
    """Colour the pixels of the given surfaces (all, and the sky, by default) into frame.rgb:
    texture, Lambert shading, and a haze that fades far surfaces to the horizon's colour."""
    if frame.rgb is None:
        frame.rgb = np.zeros((*camera.size, 3), F32)
    rays = camera.rays().reshape(-1, 3)
    rgb, label = frame.rgb.reshape(-1, 3), frame.label.ravel()
    depth, part = frame.depth_m.ravel(), frame.part.ravel()
    if indices is None:
        indices = range(len(surfaces))
        sky = np.flatnonzero(label < 0)
        up = np.clip(rays[sky, 1] / np.linalg.norm(rays[sky], axis=1) * 2.5, 0.0, 1.0)[:, None]
        rgb[sky] = light.sky[0] + up * (light.sky[1] - light.sky[0])
    for index in indices:
        shape, texture = surfaces[index]
        where = np.flatnonzero(label == index)
        if where.size == 0:
            continue
        d, t = rays[where], depth[where]
        length = np.sqrt(np.einsum("ij,ij->i", d, d))
        points = camera.origin + t[:, None] * d
        normal, uv = shape.geometry(points, part[where])
        facing = np.einsum("ij,ij->i", normal, d)
        normal[facing > 0] *= -1
        foot = t / F32(camera.focal_px) / np.maximum(np.abs(facing) / length, F32(0.15))
        lit = F32(light.ambient) + F32(1 - light.ambient) * np.maximum(normal @ light.direction, 0)
        color = texture.albedo(uv, foot) * (lit[:, None] * light.color)
        haze = np.clip(t * length / F32(haze_m), 0.0, 0.7)[:, None]
        rgb[where] = color + haze * (light.sky[0] - color)


def render(camera: Camera, surfaces: Sequence[Surface], light: Light) -> Frame:
    """Cast and shade everything."""
    frame = cast(camera, [s.shape for s in surfaces])
    shade(camera, surfaces, light, frame)
    return frame


def shifted(padded_rgb: np.ndarray, margin: int, shift_px: tuple[float, float]) -> np.ndarray:
    """What a camera with its principal point moved by ``shift_px`` sees, from a render of the
    unmoved camera padded by ``margin`` pixels: moving the principal point is an exact
    translation of the picture, so resampling it (bilinear) replaces shading it again."""
    h, w = padded_rgb.shape[0] - 2 * margin, padded_rgb.shape[1] - 2 * margin
    move = np.array([[1, 0, margin - shift_px[0]], [0, 1, margin - shift_px[1]]], F32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(padded_rgb, move, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)


def contact_shadows(
    camera: Camera, frame: Frame, casters: Sequence[Shape], light: Light, strength: float
) -> None:
    """Darken the ground (surface 0) under and beside solids in frame.rgb: a soft blob each,
    pushed away from the light, computed only in the window that can see it."""
    if frame.rgb is None:
        raise ValueError("contact_shadows: the frame is not shaded yet (frame.rgb is None)")
    rgb = frame.rgb
    lean = -light.direction[[0, 2]] / max(float(light.direction[1]), 0.3)
    rays = camera.rays()
    for shape in casters:
        x, z, radius, height = footprint(shape)
        x, z = np.array([x, z]) + lean * 0.35 * height
        spread = 1.4 * radius
        reach = np.array([3 * spread, 0.0, 3 * spread])
        rows, cols = camera.window((np.array([x, 0.0, z]) - reach, np.array([x, 0.0, z]) + reach))
        ground = frame.label[rows, cols] == 0
        if not ground.any():
            continue
        t = np.where(ground, frame.depth_m[rows, cols], 0)
        d = rays[rows, cols]
        dist2 = (camera.origin[0] + t * d[..., 0] - F32(x)) ** 2
        dist2 += (camera.origin[2] + t * d[..., 2] - F32(z)) ** 2
        dark = np.where(ground, F32(strength) * np.exp(dist2 / F32(-(spread**2) - 1e-6)), 0)
        rgb[rows, cols] *= (1 - dark)[..., None]
