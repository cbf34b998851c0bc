# long file: one scene recipe read top to bottom; its steps share the random state.
"""Synthetic scenes with exact depth: a textured room seen by a pinhole camera, objects on the
ground, and a scene photo that differs from its background the way a second shot does.

Scenes are grouped by background: background b is a room (camera, ground, walls, textures,
light) drawn from ``default_rng([seed, b])``; its scene j adds objects and nuisances drawn from
``default_rng([seed, b, j])``. Every sample is therefore reproducible on its own, in any order
and in any process. The bg is the room without objects, shadows or nuisances. The scene gets
them all: contact shadows (a change that is not in the mask), camera shake of up to two pixels
(rendered, so its mask and depth stay exact), a global brightness and colour change with a
gentle uneven part (exposure, a passing cloud), sensor noise and a JPEG re-encode. A network
cannot score by ``scene != bg``; it has to learn what changed.

Depth is the camera's z-depth in metres divided by ``DEPTH_SCALE_M`` (constant across the
dataset, so depth is metric), clipped to 1 (sky and anything farther).
"""

from __future__ import annotations

import colorsys
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypedDict

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import from_unit

from .layout import SEED_JPEG_QUALITY, LayoutWriter, check_format, writing_dataset
from .manifest import DatasetStats, with_speed, write_manifest
from .parallel import run_tasks
from .render import (
    LATTICE,
    Box,
    Camera,
    Cylinder,
    Ellipsoids,
    Frame,
    Light,
    Plane,
    Solid,
    Surface,
    Texture,
    cast,
    contact_shadows,
    corners,
    footprint,
    render,
    shade,
    shifted,
)
from .sample import Sample

DEPTH_SCALE_M = 20.0


class GeneratorRanges(TypedDict):
    """The ranges the samplers draw from: [low, high] pairs, the choices, and probabilities."""

    version: int
    camera_height_m: list[float]
    pitch_deg: list[float]
    yaw_deg: list[float]
    fov_deg: list[float]
    walls: list[str]
    back_wall_m: list[float]
    side_wall_m: list[float]
    objects: list[int]
    object_size_m: list[float]
    shapes: list[str]
    patterns: list[str]
    shadow: list[float]
    mask_fraction: list[float]
    shake_px: list[float]
    brightness: list[float]
    tint: float
    uneven_light: list[float]
    noise_sigma: list[float]
    jpeg_probability: float
    jpeg_quality: list[int]


_Range = Literal[  # the entries that are a [low, high] float range
    "camera_height_m",
    "pitch_deg",
    "yaw_deg",
    "fov_deg",
    "back_wall_m",
    "side_wall_m",
    "object_size_m",
    "shadow",
    "mask_fraction",
    "shake_px",
    "brightness",
    "uneven_light",
    "noise_sigma",
]

# Every range the samplers draw from; written into the manifest as is.
GENERATOR: GeneratorRanges = {
    "version": 1,
    "camera_height_m": [1.2, 2.5],
    "pitch_deg": [10.0, 35.0],  # raised where needed so that at most ~8 deg of sky shows
    "yaw_deg": [-30.0, 30.0],
    "fov_deg": [50.0, 75.0],  # horizontal
    "walls": ["none", "back", "side", "back+side"],
    "back_wall_m": [3.5, 12.0],
    "side_wall_m": [1.5, 5.0],
    "objects": [1, 5],
    "object_size_m": [0.2, 1.2],  # log-uniform, per dimension
    "shapes": ["box", "cylinder", "sphere", "blob"],
    "patterns": ["checker", "stripes", "tiles", "noise", "plain"],
    "shadow": [0.25, 0.6],
    "mask_fraction": [0.002, 0.4],  # scenes outside are drawn again
    "shake_px": [0.0, 2.0],
    "brightness": [0.85, 1.15],
    "tint": 0.05,
    "uneven_light": [0.02, 0.12],  # amplitude of a smooth brightness field across the picture
    "noise_sigma": [1.0, 4.0],  # grey levels
    "jpeg_probability": 0.7,
    "jpeg_quality": [50, 95],
}
_G = GENERATOR
SHAKE_MARGIN = 3  # pixels rendered around each bg so that shaken scenes can be cut from it
_CACHE_BYTES = 64 << 20  # rendered backgrounds kept per process (thousands of scenes share one)


def _uniform(rng: np.random.Generator, key: _Range) -> float:
    low, high = _G[key]
    return float(rng.uniform(low, high))


# ----------------------------------------------------------------------------- appearance
def _color(rng: np.random.Generator, saturation: float = 0.6) -> np.ndarray:
    h, s, v = rng.uniform(), rng.uniform(0.0, saturation), rng.uniform(0.25, 0.9)
    return np.array(colorsys.hsv_to_rgb(h, s, v), np.float32)


def random_texture(rng: np.random.Generator, period_m: tuple[float, float]) -> Texture:
    """A random pattern, two random colours that contrast more or less, random grain."""
    pattern = str(rng.choice(_G["patterns"]))
    first = _color(rng)
    if rng.uniform() < 0.5:
        second = _color(rng)
    else:  # a lighter or darker shade of the first
        second = np.clip(first * rng.uniform(0.45, 1.6), 0.02, 0.95).astype(np.float32)
    if pattern == "tiles" and rng.uniform() < 0.7:  # mortar: light or dark grey
        second = np.full(3, rng.choice([0.2, 0.75]) * rng.uniform(0.8, 1.2), np.float32)
    return Texture(
        pattern=pattern,
        colors=np.stack([first, second]),
        period_m=float(np.exp(rng.uniform(*np.log(period_m)))),
        angle=float(rng.uniform(0, math.pi)),
        grain=float(rng.uniform(0.03, 0.3)),
        lattice=rng.random((LATTICE, LATTICE), dtype=np.float32),
        brick=bool(rng.uniform() < 0.5),
    )


def random_light(rng: np.random.Generator) -> Light:
    """Sun from 25-80 degrees up in any direction, slightly warm or cool; a pale blue sky."""
    elevation, azimuth = math.radians(rng.uniform(25, 80)), rng.uniform(0, 2 * math.pi)
    direction = np.array(
        [
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation),
            math.cos(elevation) * math.cos(azimuth),
        ],
        np.float32,
    )
    warmth = rng.uniform(-0.08, 0.08)
    color = np.array([1 + warmth, 1.0, 1 - warmth], np.float32) * rng.uniform(0.9, 1.25)
    horizon = np.array([0.78, 0.82, 0.86], np.float32) * rng.uniform(0.85, 1.1)
    zenith = np.array([0.35, 0.55, 0.85], np.float32) * rng.uniform(0.8, 1.1)
    return Light(
        direction, float(rng.uniform(0.3, 0.55)), color, np.clip(np.stack([horizon, zenith]), 0, 1)
    )


# ----------------------------------------------------------------------------------- rooms
@dataclass(eq=False)
class Room:
    """What a background fixes: camera, ground and walls (surface 0 is the ground), light."""

    camera: Camera
    surfaces: list[Surface]
    light: Light
    shadow: float  # strength of the objects' contact shadows

    def free(self, x: float, z: float, radius: float) -> bool:
        """Whether a footprint at (x, z) stays in front of every wall."""
        for shape, _ in self.surfaces[1:]:
            if not isinstance(shape, Plane) or shape.axis == 1:
                continue  # only walls (planes x = offset or z = offset) bound the room
            position = x if shape.axis == 0 else z
            if shape.offset > 0 and position + radius >= shape.offset:
                return False
            if shape.offset < 0 and position - radius <= shape.offset:
                return False
        return True


def sample_room(rng: np.random.Generator, size: tuple[int, int]) -> Room:
    """Camera, ground and none, one or two walls, light: what all scenes of a background share."""
    h, w = size
    fov = _uniform(rng, "fov_deg")
    half_vfov = math.degrees(math.atan(math.tan(math.radians(fov) / 2) * h / w))
    low, high = _G["pitch_deg"]
    low = max(low, half_vfov - 8.0)
    camera = Camera.with_fov(
        (h, w),
        fov,
        height_m=_uniform(rng, "camera_height_m"),
        pitch_deg=float(rng.uniform(low, max(low, high))),
        yaw_deg=_uniform(rng, "yaw_deg"),
    )
    surfaces = [Surface(Plane(1), random_texture(rng, (0.25, 2.0)))]
    walls = str(rng.choice(_G["walls"]))
    if "back" in walls:
        plane = Plane(2, _uniform(rng, "back_wall_m"), float(rng.uniform(2.5, 6.0)))
        surfaces.append(Surface(plane, random_texture(rng, (0.15, 1.5))))
    if "side" in walls:
        side = _uniform(rng, "side_wall_m") * float(rng.choice([-1.0, 1.0]))
        plane = Plane(0, side, float(rng.uniform(2.5, 6.0)))
        surfaces.append(Surface(plane, random_texture(rng, (0.15, 1.5))))
    return Room(camera, surfaces, random_light(rng), _uniform(rng, "shadow"))


# -------------------------------------------------------------------------------- objects
def random_shape(rng: np.random.Generator, x: float, z: float) -> Solid:
    """A box, cylinder, sphere or blob standing on the ground at (x, z), 0.2-1.2 m across."""
    kind = str(rng.choice(_G["shapes"]))
    low, high = _G["object_size_m"]

    def size() -> float:  # log-uniform
        return float(np.exp(rng.uniform(math.log(low), math.log(high))))

    def sizes(n: int) -> np.ndarray:
        return np.exp(rng.uniform(math.log(low), math.log(high), n))

    if kind == "box":
        hx, hy, hz = (float(v) for v in sizes(3) / 2)
        return Box(x, z, (hx, hy, hz), float(rng.uniform(0, math.pi)))
    if kind == "cylinder":
        return Cylinder(x, z, float(size() / 2), float(size()))
    if kind == "sphere":
        radius = float(size() / 2)
        return Ellipsoids(np.array([[x, radius, z]]), np.full((1, 3), radius))
    if rng.uniform() < 0.4:  # an egg
        radii = sizes(3)[None] / 2
        return Ellipsoids(np.array([[x, radii[0, 1], z]]), radii, float(rng.uniform(0, math.pi)))
    count = int(rng.integers(2, 5))  # overlapping balls, the lowest resting on the ground
    radii = rng.uniform(low / 2, high / 3.5, count)
    centres = np.zeros((count, 3))
    for k in range(1, count):
        direction = rng.normal(size=3) * [1.0, 0.6, 1.0]
        direction /= np.linalg.norm(direction)
        anchor = centres[rng.integers(0, k)]
        centres[k] = anchor + direction * rng.uniform(0.4, 0.8) * (radii[k] + radii.mean())
    centres[:, 1] -= (centres[:, 1] - radii).min()
    centres[:, [0, 2]] += [x, z]
    return Ellipsoids(centres, np.repeat(radii[:, None], 3, axis=1))


def _place(rng: np.random.Generator, room: Room, placed: list[Solid]) -> Solid | None:
    """An object on ground that the camera sees, in front of the walls, touching no other."""
    h, w = room.camera.size
    for _ in range(30):
        point = room.camera.ground_point(rng.uniform(0.08, 0.92) * w, rng.uniform(0.35, 0.95) * h)
        if point is None:
            continue
        shape = random_shape(rng, float(point[0]), float(point[2]))
        x, z, radius, _ = footprint(shape)
        nearest = room.camera.project(corners(shape.bounds()))[2].min()
        if nearest < 0.3 or not room.free(x, z, radius):
            continue
        if all(math.dist((x, z), f[:2]) > radius + f[2] for f in map(footprint, placed)):
            return shape
    return None


# --------------------------------------------------------------------------------- scenes
@dataclass(eq=False)
class Staging:
    """What one scene adds to its room: objects, camera shake and the photo's nuisances."""

    objects: list[Surface]
    shake_px: tuple[float, float]
    gain: np.ndarray  # (3,) brightness times a colour tint
    light_field: np.ndarray  # (3, 3) smooth brightness factors around 1, stretched over the picture
    noise_sigma: float  # grey levels
    jpeg_quality: int  # 0: no re-encode


def sample_staging(rng: np.random.Generator, room: Room) -> Staging:
    """1-5 objects where there is room for them, then the shot's shake, colour, noise, JPEG."""
    placed: list[Solid] = []
    for _ in range(int(rng.integers(_G["objects"][0], _G["objects"][1] + 1))):
        shape = _place(rng, room, placed)
        if shape is not None:
            placed.append(shape)
    objects = [Surface(shape, random_texture(rng, (0.04, 0.5))) for shape in placed]
    radius, angle = _uniform(rng, "shake_px"), rng.uniform(0, 2 * math.pi)
    tint = rng.uniform(-_G["tint"], _G["tint"], 3)
    quality = int(rng.integers(_G["jpeg_quality"][0], _G["jpeg_quality"][1] + 1))
    return Staging(
        objects=objects,
        shake_px=(radius * math.cos(angle), radius * math.sin(angle)),
        gain=(_uniform(rng, "brightness") * (1 + tint - tint.mean())).astype(np.float32),
        light_field=(1 + _uniform(rng, "uneven_light") * rng.uniform(-1, 1, (3, 3))).astype(
            np.float32
        ),
        noise_sigma=_uniform(rng, "noise_sigma"),
        jpeg_quality=quality if rng.uniform() < _G["jpeg_probability"] else 0,
    )


def photograph(rgb: np.ndarray, staging: Staging, rng: np.random.Generator) -> np.ndarray:
    """The scene as a second shot: colour gain, sensor noise, 8 bits, maybe a JPEG round trip."""
    h, w = rgb.shape[:2]
    field = cv2.resize(staging.light_field, (w, h), interpolation=cv2.INTER_LINEAR)
    rgb = rgb * (field[:, :, None] * staging.gain * np.float32(255))
    rgb += rng.standard_normal(rgb.shape, dtype=np.float32) * np.float32(staging.noise_sigma)
    image = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    if staging.jpeg_quality:
        _, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, staging.jpeg_quality])
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    return image


@dataclass(eq=False)
class SynthScene:
    """One sample with what made it: the room, the staging and the scene's exact frame."""

    sample: Sample
    room: Room
    staging: Staging
    frame: Frame  # what ``camera`` sees, before the nuisances

    @property
    def camera(self) -> Camera:
        return replace(self.room.camera, shift_px=self.staging.shake_px)


def render_background(room: Room) -> tuple[np.ndarray, np.ndarray]:
    """The bg (uint8) and the backdrop: the room's float render with a SHAKE_MARGIN border,
    from which every shaken scene of the room takes its room pixels (see render.shifted)."""
    frame = render(room.camera.padded(SHAKE_MARGIN), room.surfaces, room.light)
    assert frame.rgb is not None  # render shades every pixel
    m = SHAKE_MARGIN
    return from_unit(frame.rgb[m:-m, m:-m]), frame.rgb


def render_scene(
    room: Room, bg: np.ndarray, backdrop: np.ndarray, rng: np.random.Generator, name: str = ""
) -> SynthScene:
    """Stage objects until the mask covers a sensible part of the picture, shade them over the
    shifted backdrop with their contact shadows, then photograph."""
    low, high = _G["mask_fraction"]
    for attempt in range(50):
        staging = sample_staging(rng, room)
        camera = replace(room.camera, shift_px=staging.shake_px)
        surfaces = room.surfaces + staging.objects
        frame = cast(camera, [s.shape for s in surfaces])
        mask = frame.label >= len(room.surfaces)
        if low <= mask.mean() <= high or (attempt >= 20 and mask.any()):
            break
    else:
        raise RuntimeError(f"synth scene {name}: no visible object after 50 stagings")
    frame.rgb = shifted(backdrop, SHAKE_MARGIN, staging.shake_px)
    shade(camera, surfaces, room.light, frame, range(len(room.surfaces), len(surfaces)))
    casters = [s.shape for s in staging.objects]
    contact_shadows(camera, frame, casters, room.light, room.shadow)
    depth = np.minimum(frame.depth_m / np.float32(DEPTH_SCALE_M), 1.0).astype(np.float32)
    scene = photograph(frame.rgb, staging, rng)
    return SynthScene(Sample(bg, scene, mask.astype(np.float32), depth, name), room, staging, frame)


# --------------------------------------------------------------------------------- source
def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    sides = np.ravel(size)  # one side for both, or (h, w)
    h, w = (int(sides[0]), int(sides[0])) if np.ndim(size) == 0 else (int(sides[0]), int(sides[1]))
    if h < 16 or w < 16:
        raise MaskDepthError(f"synth size {size}: expected at least 16 pixels each way")
    return h, w


class SynthSource:
    """``count`` synthetic samples, ``per_background`` per room, rendered when asked for.

    Sample i is scene ``i % per_background`` of background ``i // per_background``; its name is
    ``k/n`` (k = background id from 1, n = i + 1), the names ``synthesize`` writes it under.
    """

    kind = "synth"

    def __init__(
        self,
        count: int,
        size: int | tuple[int, int] = 224,
        seed: int = 0,
        per_background: int = 20,
    ) -> None:
        if count < 1 or per_background < 1:
            raise MaskDepthError(
                f"synth: count {count} and per_background {per_background}: expected both >= 1"
            )
        if seed < 0:
            raise MaskDepthError(f"synth seed {seed}: expected a non-negative integer")
        self.count, self.size, self.seed = int(count), _size(size), int(seed)
        self.per_background = int(per_background)
        self.backgrounds = -(-self.count // self.per_background)
        self.depth_scale_m = DEPTH_SCALE_M
        self.manifest = {
            "kind": self.kind,
            "scenes": self.count,
            "backgrounds": self.backgrounds,
            "size": list(self.size),
            "seed": self.seed,
            "per_background": self.per_background,
            "depth": {
                "source": "synthetic (exact z-depth)",
                "scale_m": DEPTH_SCALE_M,
                "meaning": "0 = nearest, 1 = farthest; metres = value * scale_m",
            },
            "generator": GENERATOR,
        }
        h, w = self.size
        entry_bytes = (h + 2 * SHAKE_MARGIN) * (w + 2 * SHAKE_MARGIN) * 12 + h * w * 3
        self._cache_size = max(2, _CACHE_BYTES // entry_bytes)
        self._cache: OrderedDict[int, tuple[Room, np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> Sample:
        return self.scene(index).sample

    def background_ids(self) -> np.ndarray:
        return np.arange(self.count, dtype=np.int64) // self.per_background + 1

    def indices(self, background: int) -> range:
        """Sample indices of background ``background`` (from 0)."""
        start = background * self.per_background
        return range(start, min(start + self.per_background, self.count))

    def background(self, background: int) -> tuple[Room, np.ndarray, np.ndarray]:
        """Room, bg and backdrop of background ``background`` (from 0), cached."""
        if background in self._cache:
            self._cache.move_to_end(background)
            return self._cache[background]
        room = sample_room(np.random.default_rng([self.seed, background]), self.size)
        entry = (room, *render_background(room))
        self._cache[background] = entry
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return entry

    def scene(self, index: int) -> SynthScene:
        """Sample ``index`` with its room, staging and exact render (for checks and pictures)."""
        if not -self.count <= index < self.count:
            raise IndexError(f"synth index {index} out of range for {self.count} samples")
        index %= self.count
        b, j = divmod(index, self.per_background)
        room, bg, backdrop = self.background(b)
        rng = np.random.default_rng([self.seed, b, j])
        return render_scene(room, bg, backdrop, rng, name=f"{b + 1}/{index + 1}")

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}


# ----------------------------------------------------------------------------- synthesize
def _write_background(task: tuple[SynthSource, int, str, str, int]) -> tuple[int, DatasetStats]:
    source, b, out, image_format, jpeg_quality = task
    writer = LayoutWriter(out, image_format, jpeg_quality)
    stats = DatasetStats()
    bg = source.background(b)[1]
    writer.write_background(b + 1, bg)
    stats.add_background(bg)
    indices = source.indices(b)
    for i in indices:
        sample = source[i]
        writer.write_scene(b + 1, i + 1, sample)
        stats.add_scene(sample.scene, sample.mask, sample.depth)
    return len(indices), stats


def synthesize(
    out: str | Path,
    count: int,
    size: int | tuple[int, int] = 224,
    seed: int = 0,
    per_background: int = 20,
    image_format: str = "png",
    workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    jpeg_quality: int = SEED_JPEG_QUALITY,
) -> dict:
    """Write ``count`` synthetic scenes in the seed's layout under ``out`` with a manifest.

    The files hold exactly what ``SynthSource(count, size, seed, per_background)`` yields (PNG:
    lossless, depth in 16 bits). Returns the manifest plus ``seconds`` and ``scenes_per_s``.
    """
    source = SynthSource(count, size, seed, per_background)
    check_format(image_format)  # before anything is touched
    with writing_dataset(out, overwrite) as root:
        tasks = [
            (source, b, str(root), image_format, jpeg_quality) for b in range(source.backgrounds)
        ]
        results, seconds = run_tasks(
            _write_background, tasks, workers=workers, desc="synth", total=count, progress=progress
        )
        manifest = write_manifest(
            root,
            **source.manifest,
            image_format=image_format,
            jpeg_quality=jpeg_quality if image_format == "jpg" else None,
            stats=DatasetStats.merged(results).as_dict(),
        )
    return with_speed(manifest, seconds)
