"""``maskdepth predict``: the options are
:class:`maskdepth.runtime.predict_cli.PredictOptions`'s fields."""

from __future__ import annotations

import argparse

from maskdepth.runtime.options import add_options
from maskdepth.runtime.predict_cli import PredictOptions

from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, PredictOptions)


def run(options: PredictOptions) -> int:
    from maskdepth.runtime.predict_cli import run_predict

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
