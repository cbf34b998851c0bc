"""``maskdepth predict``: a model on one image, a folder of images or a video; the options are
:class:`PredictOptions`' fields.

Images go to ``OUT/<kind>/<name>.png`` for each kind asked for (the pictures of
:mod:`maskdepth.runtime.outputs`). A video runs through the stream loop
(:func:`maskdepth.runtime.stream.stream`) as one file source with its given, frozen background
(``bg_update="none"``): ``OUT/<stem>/<stem>.mp4`` (overlay | depth colour map side by side),
``OUT/<stem>/<kind>/NNNNNN.png``, ``OUT/<stem>/events.jsonl`` and ``OUT/summary.json``;
``maskdepth stream`` is the command for a live camera and the adaptive background. No torch
here: this runs where the runtime is installed alone.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from maskdepth.options import add_options, device_option, model_source, option, positional, positive
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.outputs import (
    DEFAULT_SAVE,
    check_threshold,
    list_images,
    output_names,
    parse_save,
    save_prediction,
)
from maskdepth.runtime.predictor import BACKENDS, DEFAULT_BATCH, Predictor

from . import Command


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


@dataclass(kw_only=True)
class PredictOptions:
    """What ``maskdepth predict`` is asked to do; exactly one of scene, scenes and video."""

    model: str | Path = positional(
        type=model_source,
        help="an exported model (.onnx or .engine), or a served one: grpc://HOST:8001/maskdepth",
    )
    bg: Path = option(type=Path, required=True, help="the empty scene (background)")
    scene: Path | None = option(None, type=Path, exclusive="scenes", help="one scene image")
    scenes: Path | None = option(
        None, type=Path, exclusive="scenes", metavar="DIR", help="a folder of scene images"
    )
    video: Path | None = option(
        None, type=Path, exclusive="scenes", metavar="FILE",
        help="a video of the scene, run through the stream loop with this frozen background "
        "(maskdepth stream: live cameras and a background that follows the light)",
    )  # fmt: skip
    out: Path = option(type=Path, required=True, help="folder for the results")
    save: str | None = option(
        None,
        help="what to write per scene, comma-separated from mask, depth, overlay, colormap "
        "(default: mask,depth,overlay for images; for a video, the mp4 and events only)",
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
    if o.video is not None and not Path(o.video).is_file():
        raise FileNotFoundError(f"{o.video}: no such video file")
    predictor = Predictor(o.model, device=o.device, threads=o.threads, backend=o.backend)
    with predictor:
        start = time.perf_counter()
        if o.video is not None:
            written = _predict_video(predictor, Path(o.video), Path(o.bg), out, kinds, o)
            count = written.pop("frames")
        else:
            predictor.set_background(o.bg)
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


# ------------------------------------------------------------------------------ video


def _predict_video(
    predictor: Predictor,
    path: Path,
    bg: Path,
    out: Path,
    kinds: tuple[str, ...],
    o: PredictOptions,
) -> dict:
    """One video file through the stream loop against the given, frozen background."""
    from maskdepth.runtime.stream import stream

    name = path.stem
    save = ",".join((*kinds, "video"))
    with stream(
        predictor, {name: path}, bg=bg, out=out, save=save, bg_update="none", batch=o.batch,
        threshold=o.threshold, progress=o.progress,
    ) as results:  # fmt: skip
        for _ in results:
            pass
    summary = results.summary or {}
    source = summary.get("sources", {}).get(name, {})
    problem = source.get("error") or (summary.get("write_errors") or [None])[0]
    if problem:
        raise MaskDepthError(f"{path}: {problem}")
    if not source.get("processed"):
        raise MaskDepthError(f"{path}: no frames could be read")
    return {"frames": source["processed"], "video": str(out / name / f"{name}.mp4")}


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
    "Images go to OUT/<kind>/<name>.png. A video runs through the stream loop with this "
    "frozen background: OUT/<stem>/<stem>.mp4 (overlay | depth), OUT/<stem>/<kind>/NNNNNN.png, "
    "events.jsonl and summary.json; use maskdepth stream for a live camera and a background "
    "that follows the light.",
    add_arguments=add_arguments,
)
