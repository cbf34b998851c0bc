"""`maskdepth data compose`: the seed's preparation recipe on the user's own images.

Every background x every foreground cut-out x (original, horizontal flip) x ``positions`` random
places: ``scene = (1 - a) * bg + a * fg`` with ``a = alpha / 255``, the mask is the alpha pasted
on a zero image, and depth comes from a ground-plane rule or from an ONNX depth model (see
:mod:`.depth`). Written in the seed's layout (:mod:`.layout`) with a manifest.json, one worker
task per background. Scene ids and random positions are computed from (seed, k, f), never
counted, so the output is the same for any number of workers.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import IMAGE_SUFFIXES, as_rgb, from_unit, read_image
from maskdepth.runtime.preprocess import resize_image

from .depth import (
    GROUND_CAMERA,
    GROUND_SCALE_M,
    OnnxDepthModel,
    ground_plane_depth,
    stand_on_ground,
)
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

# --white-key: min(R, G, B) at or above WHITE_CLEAR is transparent, at or below WHITE_OPAQUE
# opaque, linear in between (a soft edge); only white regions that touch the border are keyed.
WHITE_OPAQUE, WHITE_CLEAR = 220, 245
SHOWN_SKIPPED = 5  # how many skipped paths the result lists


def list_images(folder: str | os.PathLike, option: str, expected: str) -> list[Path]:
    """The image files directly in ``folder``, sorted by name; error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MaskDepthError(
            f"{folder}: no such folder; expected {option} to be a folder of {expected}"
        )
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not paths:
        raise MaskDepthError(
            f"{folder}: no images found; expected {expected} ({', '.join(IMAGE_SUFFIXES)})"
        )
    return paths


def load_background(path: str | os.PathLike, size: int) -> np.ndarray:
    """Read any image, centre-crop it to a square and resize to ``size`` x ``size`` RGB uint8."""
    image = _read(path, "rgb")
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return resize_image(
        np.ascontiguousarray(image[top : top + side, left : left + side]), (size, size)
    )


def white_key_alpha(rgb: np.ndarray) -> np.ndarray:
    """Alpha (HxW uint8) that makes the near-white background of a plain cut-out transparent.

    Only near-white regions connected to the image border are keyed, so white inside the object
    stays; alpha ramps from opaque to clear between WHITE_OPAQUE and WHITE_CLEAR (a soft edge).
    """
    whiteness = rgb.min(axis=2)
    near = (whiteness >= WHITE_OPAQUE).astype(np.uint8)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    outside = np.isin(labels, border[border != 0])
    ramp = (WHITE_CLEAR - whiteness.astype(np.float32)) / (WHITE_CLEAR - WHITE_OPAQUE)
    return from_unit(np.where(outside, np.clip(ramp, 0, 1), 1))


def load_foreground(path: str | os.PathLike, fg_size: int, white_key: bool = False) -> np.ndarray:
    """Read a cut-out as RGBA uint8 that fits in ``fg_size`` x ``fg_size`` (aspect kept).

    An image without alpha needs ``white_key``, which makes its white background transparent.
    """
    image = _read(path, "unchanged")
    if image.dtype == np.uint16:
        image = np.rint(image / 257).astype(np.uint8)
    if image.ndim == 3 and image.shape[2] == 4:
        rgba = image
    elif white_key:
        rgb = as_rgb(image, str(path))
        rgba = np.dstack([rgb, white_key_alpha(rgb)])
    else:
        raise MaskDepthError(
            f"{path}: no alpha channel; expected an RGBA PNG cut-out "
            "(or pass --white-key to make a white background transparent)"
        )
    if not rgba[:, :, 3].any():
        raise MaskDepthError(f"{path}: fully transparent; expected a visible cut-out")
    return _fit(rgba, fg_size)


def _fit(rgba: np.ndarray, fg_size: int) -> np.ndarray:
    """Resize RGBA to fit ``fg_size``, with premultiplied colour so clear pixels do not bleed."""
    h, w = rgba.shape[:2]
    scale = fg_size / max(h, w)
    shape = (max(1, round(h * scale)), max(1, round(w * scale)))
    if shape == (h, w):
        return rgba
    alpha = rgba[:, :, 3:].astype(np.float32)
    premultiplied = np.dstack([rgba[:, :, :3] * (alpha / 255), alpha])
    small = resize_image(premultiplied, shape)
    alpha = small[:, :, 3:]
    rgb = small[:, :, :3] * 255 / np.maximum(alpha, 1e-6)
    return np.clip(np.rint(np.dstack([rgb, alpha])), 0, 255).astype(np.uint8)


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


def _compose_background(task: _Task) -> tuple[int, DatasetStats]:
    writer = LayoutWriter(task.root, task.image_format, task.jpeg_quality)
    writer.write_background(task.k, task.bg)
    stats = DatasetStats()
    stats.add_background(task.bg)
    size = task.bg.shape[0]
    ground = ground_plane_depth(size, size) if task.model is None else None
    for f, fg in enumerate(task.fgs, start=1):
        xy = draw_positions(task.seed, task.k, f, fg.shape[:2], size, task.variants, task.positions)
        for v in range(task.variants):
            cutout = fg if v == 0 else np.ascontiguousarray(fg[:, ::-1])
            for p, (x, y) in enumerate(xy[v]):
                scene, mask = paste(task.bg, cutout, int(x), int(y))
                if task.model is not None:
                    depth = task.model(scene)
                else:
                    assert ground is not None  # made above for a task without a depth model
                    depth = stand_on_ground(ground, mask)
                n = scene_number(task.k, f, v, p, len(task.fgs), task.variants, task.positions)
                writer.write_scene(task.k, n, Sample(task.bg, scene, mask, depth, f"{task.k}/{n}"))
                stats.add_scene(scene, mask, depth)
    return len(task.fgs) * task.variants * task.positions, stats


def _load_background_task(job: tuple[Path, int]) -> tuple[int, np.ndarray | str]:
    path, size = job
    try:
        return 1, load_background(path, size)
    except MaskDepthError as exc:  # reported (or raised) by the parent
        return 1, str(exc)


def _read(path: str | os.PathLike, mode: str) -> np.ndarray:
    try:
        return read_image(path, mode)
    except FileNotFoundError as exc:  # vanished since listing
        raise MaskDepthError(f"{path}: no such image file") from exc


def _refuse_inputs_inside(out: Path, *inputs: str | os.PathLike) -> None:
    """--overwrite clears --out: refuse when the user's own images live in there."""
    for folder in inputs:
        if Path(folder).resolve().is_relative_to(out.resolve()):
            raise MaskDepthError(
                f"{folder}: input folder inside --out {out}; choose an --out outside your images"
            )


def _check_options(size: int, positions: int, fg_size: int, image_format: str, seed: int) -> None:
    if seed < 0:
        raise MaskDepthError(f"--seed {seed}: expected a number >= 0")
    if size < 8:
        raise MaskDepthError(f"--size {size}: expected at least 8 pixels")
    if not 1 <= fg_size <= size:
        raise MaskDepthError(f"--fg-size {fg_size}: expected 1 to --size ({size})")
    if positions < 1:
        raise MaskDepthError(f"--positions {positions}: expected at least 1")
    check_format(image_format)


def _load_foregrounds(
    paths: list[Path], fg_size: int, white_key: bool, skip_bad: bool, skipped: list[str]
) -> list[np.ndarray]:
    fgs = []
    for path in paths:
        try:
            fgs.append(load_foreground(path, fg_size, white_key))
        except MaskDepthError:
            if not skip_bad:
                raise
            skipped.append(str(path))
    return fgs


def _load_backgrounds(
    paths: list[Path], size: int, skip_bad: bool, skipped: list[str], **run
) -> list[np.ndarray]:
    loaded, _ = run_tasks(
        _load_background_task,
        [(p, size) for p in paths],
        desc="backgrounds",
        unit="image",
        total=len(paths),
        **run,
    )
    bgs = []
    for path, result in zip(paths, loaded):
        if isinstance(result, str):
            if not skip_bad:
                raise MaskDepthError(result)
            skipped.append(str(path))
        else:
            bgs.append(result)
    return bgs


def _depth_field(model: OnnxDepthModel | None) -> dict:
    if model is not None:
        return {"source": model.source, "scale_m": None, "meaning": "0 = nearest, 1 = farthest"}
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


def compose(
    out: str | os.PathLike,
    backgrounds: str | os.PathLike,
    foregrounds: str | os.PathLike,
    *,
    size: int = 224,
    positions: int = 20,
    flip: bool = True,
    fg_size: int = 112,
    seed: int = 0,
    white_key: bool = False,
    image_format: str = "jpg",
    jpeg_quality: int = SEED_JPEG_QUALITY,
    depth_model: str | os.PathLike | None = None,
    depth_output: str = "depth",
    workers: int | None = None,
    overwrite: bool = False,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict:
    """Compose every background with every foreground cut-out into ``out`` (the seed's layout).

    All inputs are read and checked before the first scene is written, so a bad one fails fast
    with a MaskDepthError naming it; with ``skip_bad`` it is skipped and counted instead.
    Returns the manifest plus ``seconds`` and ``scenes_per_s`` (and ``skipped_paths``, the first
    few, when anything was skipped).
    """
    start = time.perf_counter()
    _check_options(size, positions, fg_size, image_format, seed)
    out = Path(out)
    check_output(out, overwrite)  # before any slow work; a usable ``out`` is left untouched
    _refuse_inputs_inside(out, backgrounds, foregrounds)
    bg_paths = list_images(backgrounds, "--backgrounds", "background images")
    fg_paths = list_images(foregrounds, "--foregrounds", "RGBA PNG cut-outs")
    skipped: list[str] = []
    fgs = _load_foregrounds(fg_paths, fg_size, white_key, skip_bad, skipped)
    model = OnnxDepthModel(depth_model, depth_output) if depth_model is not None else None
    if model is not None:
        model.check((size, size))  # closes its session again: workers open their own
    bgs = _load_backgrounds(bg_paths, size, skip_bad, skipped, workers=workers, progress=progress)
    if not fgs or not bgs:
        folder = foregrounds if not fgs else backgrounds
        raise MaskDepthError(f"{folder}: every image was unreadable; expected at least one")

    variants = 2 if flip else 1
    template = _Task(
        0, bgs[0], tuple(fgs), out, image_format, jpeg_quality, seed, variants, positions, model
    )
    tasks = [replace(template, k=k, bg=bg) for k, bg in enumerate(bgs, start=1)]
    scenes = len(bgs) * len(fgs) * variants * positions
    with writing_dataset(out, overwrite):
        results, _ = run_tasks(
            _compose_background,
            tasks,
            workers=workers,
            desc="composing",
            unit="scene",
            total=scenes,
            progress=progress,
        )
        if model is not None:
            model.close()
        manifest = write_manifest(
            out,
            kind="compose",
            scenes=scenes,
            backgrounds=len(bgs),
            foregrounds=len(fgs),
            positions=positions,
            flip=flip,
            fg_size=fg_size,
            size=[size, size],
            seed=seed,
            white_key=white_key,
            image_format=image_format,
            jpeg_quality=jpeg_quality if image_format == "jpg" else None,
            stats=DatasetStats.merged(results).as_dict(),
            depth=_depth_field(model),
            skipped=len(skipped),
        )
    result = with_speed(manifest, time.perf_counter() - start)
    if skipped:
        result["skipped_paths"] = skipped[:SHOWN_SKIPPED]
    return result
