"""`maskdepth data compose`: the seed's preparation recipe on the user's own images.

Every background x every foreground cut-out x (original, horizontal flip) x ``positions`` random
places: ``scene = (1 - a) * bg + a * fg`` with ``a = alpha / 255``, the mask is the alpha pasted
on a zero image, and depth comes from a ground-plane rule or from an ONNX depth model (see
:mod:`.depth`). Written in the seed's layout (:mod:`.layout`) with a manifest.json, one worker
task per background. Scene ids and random positions are computed from (seed, k, f), never
counted, so the output is the same for any number of workers.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from maskdepth.runtime.errors import MaskDepthError

from .cutouts import list_images, load_backgrounds, load_foregrounds
from .depth import (
    GROUND_CAMERA,
    GROUND_SCALE_M,
    OnnxDepthModel,
    ground_plane_depth,
    stand_on_ground,
)
from .depth_presets import DepthInput, depth_input
from .layout import (
    SEED_JPEG_QUALITY,
    LayoutWriter,
    check_format,
    check_output,
    writing_dataset,
)
from .manifest import DatasetStats, with_speed, write_manifest
from .parallel import run_tasks
from .sample import Sample

SHOWN_SKIPPED = 5  # how many skipped paths the result lists


def paste(bg: np.ndarray, fg: np.ndarray, x: int, y: int) -> tuple[np.ndarray, np.ndarray]:
    """Alpha-composite RGBA ``fg`` on ``bg`` with its top-left at (x, y): (scene, mask)."""
    h, w = fg.shape[:2]
    a = fg[:, :, 3:].astype(np.float32) / 255
    scene = bg.copy()
    region = scene[y : y + h, x : x + w]
    region[...] = np.rint((1 - a) * region + a * fg[:, :, :3])
    mask = np.zeros(bg.shape[:2], np.float32)
    mask[y : y + h, x : x + w] = a[:, :, 0]
    return scene, mask


def draw_positions(
    seed: int, k: int, f: int, fg_shape: tuple[int, int], size: int, variants: int, positions: int
) -> np.ndarray:
    """Top-left (x, y) per (variant, position), uniform in [0, size - fg] so the cut-out fits.

    The generator depends only on (seed, k, f), so the draw is the same in any worker.
    """
    h, w = fg_shape
    rng = np.random.default_rng([seed, k, f])
    return rng.integers(0, [size - w + 1, size - h + 1], size=(variants, positions, 2))


def scene_number(k: int, f: int, v: int, p: int, fgs: int, variants: int, positions: int) -> int:
    """Running scene id n (from 1) in the order (k, f, flip, position); k, f from 1, v, p from 0."""
    return (((k - 1) * fgs + (f - 1)) * variants + v) * positions + p + 1


@dataclass(frozen=True)
class _Task:
    """One background and everything a worker needs to write all its scenes."""

    k: int
    bg: np.ndarray
    fgs: tuple[np.ndarray, ...]
    root: Path
    image_format: str
    jpeg_quality: int
    seed: int
    variants: int  # 2 with flip, else 1
    positions: int
    model: OnnxDepthModel | None


def _scenes(task: _Task) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(n, scene, mask) for every scene of the task's background, in the order of n."""
    size = task.bg.shape[0]
    for f, fg in enumerate(task.fgs, start=1):
        xy = draw_positions(task.seed, task.k, f, fg.shape[:2], size, task.variants, task.positions)
        for v in range(task.variants):
            cutout = fg if v == 0 else np.ascontiguousarray(fg[:, ::-1])
            for p, (x, y) in enumerate(xy[v]):
                scene, mask = paste(task.bg, cutout, int(x), int(y))
                n = scene_number(task.k, f, v, p, len(task.fgs), task.variants, task.positions)
                yield n, scene, mask


def _compose_background(task: _Task) -> tuple[int, DatasetStats]:
    """Write the background and all its scenes; a depth model runs on ``batch`` scenes at once."""
    writer = LayoutWriter(task.root, task.image_format, task.jpeg_quality)
    writer.write_background(task.k, task.bg)
    stats = DatasetStats()
    stats.add_background(task.bg)
    size = task.bg.shape[0]
    ground = ground_plane_depth(size, size) if task.model is None else None
    scenes = _scenes(task)
    step = 1 if task.model is None else task.model.batch
    while chunk := list(itertools.islice(scenes, step)):
        if task.model is not None:
            depths = task.model.predict([scene for _, scene, _ in chunk])
        else:
            assert ground is not None  # made above for a task without a depth model
            depths = [stand_on_ground(ground, mask) for _, _, mask in chunk]
        for (n, scene, mask), depth in zip(chunk, depths):
            writer.write_scene(task.k, n, Sample(task.bg, scene, mask, depth, f"{task.k}/{n}"))
            stats.add_scene(scene, mask, depth)
    return len(task.fgs) * task.variants * task.positions, stats


def _refuse_inputs_inside(out: Path, *inputs: str | os.PathLike) -> None:
    """--overwrite clears --out: refuse when the user's own images live in there."""
    for folder in inputs:
        if Path(folder).resolve().is_relative_to(out.resolve()):
            raise MaskDepthError(
                f"{folder}: input folder inside --out {out}; choose an --out outside your images"
            )


def _depth_field(model: OnnxDepthModel | None) -> dict:
    if model is not None:
        return {
            "source": model.source,
            "scale_m": None,
            "meaning": "0 = nearest, 1 = farthest",
            "input": model.interface.as_dict(),
        }
    return {
        "source": "geometry (ground plane)",
        "scale_m": round(GROUND_SCALE_M, 4),
        "meaning": "0 = nearest, 1 = farthest",
        "camera": {
            "height_m": GROUND_CAMERA.height_m,
            "vertical_fov_deg": GROUND_CAMERA.vertical_fov_deg,
            "horizon_above_top": GROUND_CAMERA.horizon_margin,
        },
    }


@dataclass(frozen=True)
class ComposeOptions:
    """How :func:`compose` makes a dataset; the defaults are the seed's recipe."""

    size: int = 224  # square side of every written picture
    positions: int = 20  # random places per (background, cut-out, flip)
    flip: bool = True  # also the horizontally flipped cut-out
    fg_size: int = 112  # a cut-out fits in fg_size x fg_size (aspect kept)
    seed: int = 0
    white_key: bool = False  # key out the white background of cut-outs without alpha
    image_format: str = "jpg"
    jpeg_quality: int = SEED_JPEG_QUALITY
    depth_model: str | os.PathLike | None = None  # an ONNX depth model; None: the ground plane
    depth_preset: str = "raw"  # how the depth model wants its input (see .depth_presets)
    depth_size: tuple[int, int] | None = None  # overrides of the preset's; None: the preset's
    depth_multiple: int | None = None
    depth_mean: tuple[float, float, float] | None = None
    depth_std: tuple[float, float, float] | None = None
    depth_output: str | None = None  # "depth" or "disparity"
    depth_batch: int = 8  # scenes per depth-model run when its batch dimension is dynamic
    workers: int | None = None  # None: every core
    overwrite: bool = False
    skip_bad: bool = False  # skip (and count) unreadable inputs instead of failing
    progress: bool = True

    @property
    def variants(self) -> int:
        return 2 if self.flip else 1

    def check(self) -> None:
        if self.seed < 0:
            raise MaskDepthError(f"--seed {self.seed}: expected a number >= 0")
        if self.size < 8:
            raise MaskDepthError(f"--size {self.size}: expected at least 8 pixels")
        if not 1 <= self.fg_size <= self.size:
            raise MaskDepthError(f"--fg-size {self.fg_size}: expected 1 to --size ({self.size})")
        if self.positions < 1:
            raise MaskDepthError(f"--positions {self.positions}: expected at least 1")
        check_format(self.image_format)
        self.depth_input()  # a bad preset or override fails before any work

    def depth_input(self) -> DepthInput:
        """The depth model's interface: the preset with the overrides."""
        return depth_input(
            self.depth_preset,
            self.depth_size,
            self.depth_multiple,
            self.depth_mean,
            self.depth_std,
            self.depth_output,
        )


@dataclass
class _Inputs:
    """Everything read before the first scene is written."""

    bgs: list[np.ndarray]
    fgs: list[np.ndarray]
    model: OnnxDepthModel | None
    skipped: list[str]  # paths skipped with skip_bad


def compose(
    out: str | os.PathLike,
    backgrounds: str | os.PathLike,
    foregrounds: str | os.PathLike,
    options: ComposeOptions | None = None,
    **changes: Any,
) -> dict:
    """Compose every background with every foreground cut-out into ``out`` (the seed's layout).

    ``options`` (default :class:`ComposeOptions`), with ``changes`` to its fields (e.g.
    ``size=96``). All inputs are read and checked before the first scene is written, so a bad
    one fails fast with a MaskDepthError naming it; with ``skip_bad`` it is skipped and counted
    instead. Returns the manifest plus ``seconds`` and ``scenes_per_s`` (and ``skipped_paths``,
    the first few, when anything was skipped).
    """
    start = time.perf_counter()
    options = replace(options or ComposeOptions(), **changes)
    options.check()
    out = Path(out)
    check_output(out, options.overwrite)  # before any slow work; a usable ``out`` is left untouched
    _refuse_inputs_inside(out, backgrounds, foregrounds)
    inputs = _read_inputs(backgrounds, foregrounds, options)
    with writing_dataset(out, options.overwrite):
        stats = _write_scenes(out, inputs, options)
        manifest = _write_manifest(out, inputs, options, stats)
    result = with_speed(manifest, time.perf_counter() - start)
    if inputs.skipped:
        result["skipped_paths"] = inputs.skipped[:SHOWN_SKIPPED]
    return result


def _read_inputs(
    backgrounds: str | os.PathLike, foregrounds: str | os.PathLike, options: ComposeOptions
) -> _Inputs:
    """Read every cut-out and background and check the depth model; fail on the first bad one
    (without ``skip_bad``) or when none is usable."""
    bg_paths = list_images(backgrounds, "--backgrounds", "background images")
    fg_paths = list_images(foregrounds, "--foregrounds", "RGBA PNG cut-outs")
    skipped: list[str] = []
    fgs = load_foregrounds(fg_paths, options.fg_size, options.white_key, options.skip_bad, skipped)
    model = None
    if options.depth_model is not None:
        model = OnnxDepthModel(options.depth_model, options.depth_input(), options.depth_batch)
        # check() closes its session again: the workers open their own
        model.check((options.size, options.size))
    bgs = load_backgrounds(
        bg_paths,
        options.size,
        options.skip_bad,
        skipped,
        workers=options.workers,
        progress=options.progress,
    )
    if not fgs or not bgs:
        folder = foregrounds if not fgs else backgrounds
        raise MaskDepthError(f"{folder}: every image was unreadable; expected at least one")
    return _Inputs(bgs, fgs, model, skipped)


def _scene_count(inputs: _Inputs, options: ComposeOptions) -> int:
    return len(inputs.bgs) * len(inputs.fgs) * options.variants * options.positions


def _write_scenes(out: Path, inputs: _Inputs, options: ComposeOptions) -> DatasetStats:
    """Every scene, one worker task per background; the merged statistics."""
    o = options
    template = _Task(
        0, inputs.bgs[0], tuple(inputs.fgs), out, o.image_format, o.jpeg_quality, o.seed,
        o.variants, o.positions, inputs.model,
    )  # fmt: skip
    tasks = [replace(template, k=k, bg=bg) for k, bg in enumerate(inputs.bgs, start=1)]
    results, _ = run_tasks(
        _compose_background,
        tasks,
        workers=o.workers,
        desc="composing",
        unit="scene",
        total=_scene_count(inputs, o),
        progress=o.progress,
    )
    if inputs.model is not None:
        inputs.model.close()
    return DatasetStats.merged(results)


def _write_manifest(
    out: Path, inputs: _Inputs, options: ComposeOptions, stats: DatasetStats
) -> dict:
    o = options
    return write_manifest(
        out,
        kind="compose",
        scenes=_scene_count(inputs, o),
        backgrounds=len(inputs.bgs),
        foregrounds=len(inputs.fgs),
        positions=o.positions,
        flip=o.flip,
        fg_size=o.fg_size,
        size=[o.size, o.size],
        seed=o.seed,
        white_key=o.white_key,
        image_format=o.image_format,
        jpeg_quality=o.jpeg_quality if o.image_format == "jpg" else None,
        stats=stats.as_dict(),
        depth=_depth_field(inputs.model),
        skipped=len(inputs.skipped),
    )
