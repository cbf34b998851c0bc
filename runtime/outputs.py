"""The pictures and video that ``maskdepth predict`` and ``maskdepth stream`` write: the kinds
(``mask``: 0/255 at the threshold, or 8-bit probabilities with no threshold; ``depth``: 16-bit
[0, 1]; ``overlay`` and ``colormap``: RGB pictures), one result's files
``<folder>/<kind>/<name>.png`` and the side-by-side mp4 (overlay | depth colour map). Every
file is written under a temporary name and renamed, so an interrupted run leaves no broken
file. No argparse and no torch here: the commands parse, this writes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import IMAGE_SUFFIXES, from_unit, write_image
from maskdepth.runtime.predictor import Prediction
from maskdepth.runtime.visualize import mask_overlay

KINDS = ("mask", "depth", "overlay", "colormap")
DEFAULT_SAVE = "mask,depth,overlay"
VIDEO_FOURCC = "mp4v"


def parse_save(text: str | None) -> tuple[str, ...]:
    """``"mask,depth"`` -> ("mask", "depth"); an unknown kind is one clear error."""
    kinds = tuple(dict.fromkeys(k.strip() for k in (text or "").split(",") if k.strip()))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise MaskDepthError(
            f"--save {text}: unknown {', '.join(unknown)}; expected some of {', '.join(KINDS)}"
        )
    return kinds


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MaskDepthError(f"--threshold {threshold}: expected a value in [0, 1]")
    return threshold


def list_images(folder: Path, exclude: str | os.PathLike | None = None) -> list[Path]:
    """The image files directly in ``folder``, sorted by name, without ``exclude`` (the bg
    may sit in the same folder)."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    skip = Path(exclude).resolve() if exclude is not None else None
    paths = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.resolve() != skip
    )
    if not paths:
        raise MaskDepthError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    return paths


def output_names(paths: list[Path]) -> list[str]:
    """One output name per input: its stem, or its full name where two stems collide."""
    stems = [p.stem for p in paths]
    return [p.stem if stems.count(p.stem) == 1 else p.name for p in paths]


def mask_image(result: Prediction, threshold: float | None) -> np.ndarray:
    """uint8 mask picture: 0/255 at ``threshold``, or 8-bit probabilities when None."""
    if threshold is None:
        return from_unit(result.mask)
    return result.binary(threshold).astype(np.uint8) * np.uint8(255)


def overlay_image(result: Prediction, threshold: float | None) -> np.ndarray:
    mask = result.mask if threshold is None else result.binary(threshold).astype(np.float32)
    return mask_overlay(result.scene, mask)


def save_prediction(
    result: Prediction, out: Path, name: str, kinds: tuple[str, ...], threshold: float | None
) -> None:
    """Write the asked-for pictures of one result as ``out/<kind>/<name>.png`` (atomically)."""
    pictures = {
        "mask": lambda: mask_image(result, threshold),
        "depth": lambda: from_unit(result.depth, 16),
        "overlay": lambda: overlay_image(result, threshold),
        "colormap": result.depth_colormap,
    }
    for kind in kinds:
        write_image(out / kind / f"{name}.png", pictures[kind]())


def side_by_side(result: Prediction, threshold: float | None) -> np.ndarray:
    """One output frame: overlay | depth colour map."""
    return np.concatenate([overlay_image(result, threshold), result.depth_colormap()], axis=1)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: float) -> int:
    """Write RGB frames as an mp4 under a temporary name, then rename; returns the count.
    Nothing is left behind when it fails or is interrupted, or when there are no frames."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.part{path.suffix}")
    writer, count = None, 0
    try:
        for frame in frames:
            if writer is None:
                height, width = frame.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*VIDEO_FOURCC)
                writer = cv2.VideoWriter(str(tmp), fourcc, float(fps), (width, height))
                if not writer.isOpened():
                    raise MaskDepthError(f"{path}: OpenCV cannot write an {VIDEO_FOURCC} video")
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            count += 1
        if writer is not None:
            writer.release()
            writer = None
            os.replace(tmp, path)
    finally:
        if writer is not None:
            writer.release()
        tmp.unlink(missing_ok=True)
    return count
