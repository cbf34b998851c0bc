"""``maskdepth data compose|synth|info|show``: make, inspect and look at datasets."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from maskdepth.options import nested, option, parse_size, positional, positive
from maskdepth.train.data.depth_presets import DEPTH_OUTPUTS, PRESETS

from . import Command


@dataclass(kw_only=True)
class Generation:
    seed: int = option(0, type=int)
    workers: int | None = option(None, type=positive, help="processes (default: every core)")
    overwrite: bool = option(False, action="store_true", help="replace a dataset in --out")


@dataclass(kw_only=True)
class ComposeOptions:
    backgrounds: Path = option(type=Path, required=True, help="folder of empty scenes")
    foregrounds: Path = option(type=Path, required=True, help="folder of RGBA PNG cut-outs")
    out: Path = option(type=Path, required=True)
    size: int = option(224, type=int, help="square side of every image")
    positions: int = option(20, type=positive, help="places per cut-out")
    flip: bool = option(True, action=argparse.BooleanOptionalAction)
    fg_size: int | None = option(
        None, type=positive, help="cut-outs fit in this square (default: --size / 2)"
    )
    white_key: bool = option(False, action="store_true", help="white backgrounds -> alpha")
    png: bool = option(False, action="store_true", help="lossless PNG instead of the seed's JPG")
    depth_model: Path | None = option(None, type=Path, help="a monocular depth network as ONNX")
    depth_preset: str = option(
        "raw",
        choices=tuple(PRESETS),
        metavar="PRESET",
        help="how --depth-model wants its input: "
        + "; ".join(f"{name}: {preset.source}" for name, preset in PRESETS.items()),
    )
    depth_size: tuple[int, int] | None = option(
        None,
        type=positive,
        nargs=2,
        metavar=("H", "W"),
        convert=tuple,
        help="the size the depth model runs at when its input size is dynamic (default: the "
        "preset's, or the scene's)",
    )
    depth_multiple: int | None = option(
        None, type=positive, metavar="N", help="round the sides to multiples of N (dynamic size)"
    )
    depth_mean: tuple[float, float, float] | None = option(
        None, type=float, nargs=3, metavar=("R", "G", "B"), convert=tuple,
        help="subtract from RGB/255 (default: the preset's)",
    )  # fmt: skip
    depth_std: tuple[float, float, float] | None = option(
        None, type=float, nargs=3, metavar=("R", "G", "B"), convert=tuple,
        help="then divide by this (default: the preset's)",
    )  # fmt: skip
    depth_output: str | None = option(
        None,
        choices=DEPTH_OUTPUTS,
        help="what the depth model outputs; disparity (larger is nearer) is inverted "
        "(default: the preset's)",
    )
    depth_batch: int = option(
        8, type=positive, help="scenes per depth-model run when its batch dimension is dynamic"
    )
    skip_bad: bool = option(False, action="store_true", help="skip unreadable input images")
    generation: Generation = nested(Generation)


@dataclass(kw_only=True)
class SynthOptions:
    out: Path = option(type=Path, required=True)
    count: int = option(type=positive, required=True, help="number of scenes")
    size: int | tuple[int, int] = option(
        224, type=parse_size, metavar="PX|HxW", help="side of every image, or HxW"
    )
    per_background: int = option(20, type=positive, help="scenes per bg")
    jpg: bool = option(False, action="store_true", help="the seed's JPG instead of lossless PNG")
    generation: Generation = nested(Generation)


@dataclass(kw_only=True)
class Reading:
    """A dataset to read, as ``info`` and ``show`` take it."""

    data: str = positional(metavar="DIR", help="dataset in the seed's layout (folders/zips)")
    skip_bad: bool = option(
        False, action="store_true", help="skip broken or incomplete scenes, count them"
    )
    binarize: bool = option(
        True,
        "--no-binarize",
        action="store_false",
        help="keep masks as stored instead of thresholding them at 0.5",
    )


@dataclass(kw_only=True)
class InfoOptions(Reading):
    json: bool = option(False, action="store_true", help="print one JSON object")
    sample: int = option(200, type=positive, help="scenes decoded for stats")


@dataclass(kw_only=True)
class ShowOptions(Reading):
    out: Path = option(type=Path, required=True, help="picture to write (.png or .jpg)")
    count: int = option(8, type=positive, help="scenes (rows) in the grid")


def _report(result: dict, out: Path) -> None:
    print(
        f"wrote {result['scenes']:,} scenes ({result['backgrounds']} backgrounds) to {out} "
        f"in {result['seconds']:.1f} s: {result['scenes_per_s']:.1f} scenes/s"
    )
    if result.get("skipped"):
        shown = ", ".join(result.get("skipped_paths", []))
        print(f"skipped {result['skipped']} unusable input images: {shown}", file=sys.stderr)


def run_compose(o: ComposeOptions) -> int:
    from maskdepth.train.data.compose import compose

    result = compose(
        o.out,
        o.backgrounds,
        o.foregrounds,
        size=o.size,
        positions=o.positions,
        flip=o.flip,
        fg_size=o.fg_size or o.size // 2,
        seed=o.generation.seed,
        white_key=o.white_key,
        image_format="png" if o.png else "jpg",
        depth_model=o.depth_model,
        depth_preset=o.depth_preset,
        depth_size=o.depth_size,
        depth_multiple=o.depth_multiple,
        depth_mean=o.depth_mean,
        depth_std=o.depth_std,
        depth_output=o.depth_output,
        depth_batch=o.depth_batch,
        workers=o.generation.workers,
        overwrite=o.generation.overwrite,
        skip_bad=o.skip_bad,
    )
    _report(result, o.out)
    return 0


def run_synth(o: SynthOptions) -> int:
    from maskdepth.train.data.synth import synthesize

    result = synthesize(
        o.out,
        o.count,
        size=o.size,
        seed=o.generation.seed,
        per_background=o.per_background,
        image_format="jpg" if o.jpg else "png",
        workers=o.generation.workers,
        overwrite=o.generation.overwrite,
    )
    _report(result, o.out)
    return 0


def _open(o: Reading):
    from maskdepth.train.data.sources import open_source

    return open_source(o.data, binarize_mask=o.binarize, skip_bad=o.skip_bad)


def run_info(o: InfoOptions) -> int:
    from maskdepth.train.data.inspect import describe, format_info

    info = describe(_open(o), sample_count=o.sample, skip_bad=o.skip_bad)
    print(json.dumps(info) if o.json else format_info(info))
    return 0


def run_show(o: ShowOptions) -> int:
    from maskdepth.train.data.inspect import show

    print(f"wrote {show(_open(o), o.out, o.count, skip_bad=o.skip_bad)}")
    return 0


VERBS = (
    Command("compose", "the seed's recipe on your images", ComposeOptions, run_compose),
    Command("synth", "procedural scenes with exact depth", SynthOptions, run_synth),
    Command("info", "what a dataset holds", InfoOptions, run_info),
    Command("show", "a bg | scene | mask | depth grid as a picture", ShowOptions, run_show),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for verb in VERBS:
        verb.add_to(verbs)


COMMAND = Command("data", "make, inspect and look at datasets", add_arguments=add_arguments)
