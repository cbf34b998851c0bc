"""Reading :func:`~.compose.compose`'s inputs: background photos (centre-cropped squares) and
foreground cut-outs (RGBA, or white-keyed), each bad file one MaskDepthError naming it."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import IMAGE_SUFFIXES, as_rgb, from_unit, read_image
from maskdepth.runtime.preprocess import resize_image

from .parallel import run_tasks

# --white-key: min(R, G, B) at or above WHITE_CLEAR is transparent, at or below WHITE_OPAQUE
# opaque, linear in between (a soft edge); only white regions that touch the border are keyed.
WHITE_OPAQUE, WHITE_CLEAR = 220, 245


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


def load_foregrounds(
    paths: list[Path], fg_size: int, white_key: bool, skip_bad: bool, skipped: list[str]
) -> list[np.ndarray]:
    """The cut-outs of ``paths`` (see :func:`load_foreground`); with ``skip_bad`` a bad one is
    added to ``skipped`` instead of raised."""
    fgs = []
    for path in paths:
        try:
            fgs.append(load_foreground(path, fg_size, white_key))
        except MaskDepthError:
            if not skip_bad:
                raise
            skipped.append(str(path))
    return fgs


def load_backgrounds(
    paths: list[Path], size: int, skip_bad: bool, skipped: list[str], **run
) -> list[np.ndarray]:
    """The backgrounds of ``paths`` read in worker processes (``run``: ``run_tasks``'s workers
    and progress); with ``skip_bad`` a bad one is added to ``skipped`` instead of raised."""
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
