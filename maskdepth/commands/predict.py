"""``maskdepth predict``: a model on one image, a folder of images or a video; the options are
:class:`PredictOptions`' fields.

Images go to ``OUT/<kind>/<name>.png`` for each kind asked for (``mask``: 0/255 at the
threshold, or 8-bit probabilities with no threshold; ``depth``: 16-bit [0, 1]; ``overlay`` and
``colormap``: RGB pictures). A video gives ``OUT/<name>.mp4``: overlay | depth colour map side
by side. Every file is written under a temporary name and renamed, so an interrupted run leaves
no broken file. No torch here: this runs where the runtime is installed alone.

The command line's own code lives here, not in :mod:`maskdepth.runtime`, which holds only what
an application imports (:class:`~maskdepth.runtime.predictor.Predictor` and its parts).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from maskdepth.options import add_options, device_option, option, positional, positive
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import IMAGE_SUFFIXES, from_unit, write_image
from maskdepth.runtime.predictor import BACKENDS, DEFAULT_BATCH, Prediction, Predictor
from maskdepth.runtime.visualize import mask_overlay

from . import Command

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


def threshold_arg(text: str) -> float | None:
    """argparse type: a float in [0, 1] or 'none'."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1] or none, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def check_threshold(threshold: float | None) -> float | None:
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise MaskDepthError(f"--threshold {threshold}: expected a value in [0, 1]")
    return threshold


@dataclass(kw_only=True)
class PredictOptions:
    """What ``maskdepth predict`` is asked to do; exactly one of scene, scenes and video."""

    model: Path = positional(type=Path, help="an exported model (.onnx or .engine)")
    bg: Path = option(type=Path, required=True, help="the empty scene (background)")
    scene: Path | None = option(None, type=Path, exclusive="scenes", help="one scene image")
    scenes: Path | None = option(
        None, type=Path, exclusive="scenes", metavar="DIR", help="a folder of scene images"
    )
    video: Path | None = option(
        None, type=Path, exclusive="scenes", metavar="FILE", help="a video of the scene"
    )
    out: Path = option(type=Path, required=True, help="folder for the results")
    save: str | None = option(
        None,
        help="what to write per scene, comma-separated from mask, depth, overlay, colormap "
        "(default: mask,depth,overlay for images; only the video for a video)",
    )
    batch: int = option(DEFAULT_BATCH, type=positive, help="scenes per model run")
    threshold: float | None = option(
        0.5,
        type=threshold_arg,
        help="mask threshold in [0, 1] for the saved mask and overlay; 'none' saves probabilities",
    )
    device: str = device_option()
    threads: int | None = option(None, type=positive, help="CPU threads for onnxruntime")
    backend: str | None = option(None, choices=BACKENDS, help="default: by the model's suffix")
    progress: bool = option(True, "--quiet", action="store_false", help="no progress bar")


def run_predict(options: PredictOptions) -> dict:
    """Run the model on one scene, a folder or a video against the background; return a
    summary (count, seconds, device, provider, written paths for a video)."""
    o = options
    if sum(x is not None for x in (o.scene, o.scenes, o.video)) != 1:
        raise MaskDepthError("give exactly one of --scene IMG, --scenes DIR or --video FILE")
    kinds = parse_save(o.save if o.save is not None else ("" if o.video else DEFAULT_SAVE))
    threshold = check_threshold(o.threshold)
    out = Path(o.out)
    predictor = Predictor(o.model, device=o.device, threads=o.threads, backend=o.backend)
    with predictor:
        predictor.set_background(o.bg)
        start = time.perf_counter()
        if o.video is not None:
            video = Path(o.video)
            written = _predict_video(predictor, video, out, kinds, o.batch, threshold, o.progress)
            count = written.pop("frames")
        else:
            if o.scene is not None:
                paths = [Path(o.scene)]
            else:
                assert o.scenes is not None  # exactly one of scene, scenes, video: checked above
                paths = list_images(Path(o.scenes), exclude=o.bg)
            count = _predict_images(predictor, paths, out, kinds, o.batch, threshold, o.progress)
            written = {}
    seconds = time.perf_counter() - start
    return {
        "count": count,
        "seconds": seconds,
        "per_s": count / seconds if seconds > 0 else float("inf"),
        "device": predictor.device,
        "provider": predictor.provider,
        "out": str(out),
        **written,
    }


# ------------------------------------------------------------------------------ images


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


def _predict_images(
    predictor: Predictor,
    paths: list[Path],
    out: Path,
    kinds: tuple[str, ...],
    batch: int,
    threshold: float | None,
    progress: bool,
) -> int:
    for kind in kinds:
        (out / kind).mkdir(parents=True, exist_ok=True)
    results = predictor.predict_batch(paths, batch_size=batch)
    bar = tqdm(total=len(paths), unit="scene", desc="predict", disable=not progress)
    with bar:
        for name, result in zip(output_names(paths), results):
            save_prediction(result, out, name, kinds, threshold)
            bar.update()
    return len(paths)


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


# ------------------------------------------------------------------------------ video


def read_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    """RGB frames until the video ends."""
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def open_video(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MaskDepthError(f"{path}: OpenCV cannot read this video")
    return capture


def side_by_side(result: Prediction, threshold: float | None) -> np.ndarray:
    """One output frame: overlay | depth colour map."""
    return np.concatenate([overlay_image(result, threshold), result.depth_colormap()], axis=1)


def _predict_video(
    predictor: Predictor,
    path: Path,
    out: Path,
    kinds: tuple[str, ...],
    batch: int,
    threshold: float | None,
    progress: bool,
) -> dict:
    capture = open_video(path)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        out.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            (out / kind).mkdir(parents=True, exist_ok=True)
        target = out / f"{path.stem}.mp4"
        results = predictor.predict_batch(read_frames(capture), batch_size=batch)
        bar = tqdm(total=total, unit="frame", desc="predict", disable=not progress)
        with bar:
            frames = write_video(
                target, _frames(results, path.stem, out, kinds, threshold, bar), fps
            )
    finally:
        capture.release()
    if frames == 0:
        raise MaskDepthError(f"{path}: no frames could be read")
    return {"frames": frames, "video": str(target)}


def _frames(
    results: Iterable[Prediction],
    stem: str,
    out: Path,
    kinds: tuple[str, ...],
    threshold: float | None,
    bar: tqdm,
) -> Iterator[np.ndarray]:
    for index, result in enumerate(results, 1):
        if kinds:
            save_prediction(result, out, f"{stem}_{index:06d}", kinds, threshold)
        bar.update()
        yield side_by_side(result, threshold)


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


# ------------------------------------------------------------------------------ command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, PredictOptions)


def run(options: PredictOptions) -> int:
    result = run_predict(options)
    if "video" in result:
        what = f"{result['video']} ({result['count']} frames)"
    else:
        what = f"{result['count']} scenes to {result['out']}"
    print(
        f"wrote {what} in {result['seconds']:.1f} s ({result['per_s']:.1f}/s) "
        f"on {result['device']} via {result['provider']}"
    )
    return 0


COMMAND = Command(
    "predict",
    "run a model on images or video",
    PredictOptions,
    run,
    description="Mask and depth of the scenes against one background (a fixed camera). "
    "Images go to OUT/<kind>/<name>.png; a video gives OUT/<name>.mp4 (overlay | depth).",
    add_arguments=add_arguments,
)
