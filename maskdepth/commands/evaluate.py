"""``maskdepth eval``: score a checkpoint on a dataset."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from maskdepth.options import add_options, device_option, option, positional, positive

from . import Command

SPLITS = ("val", "all")  # maskdepth.train.evaluate.SPLITS, which imports torch (a test compares)


@dataclass(kw_only=True)
class EvalOptions:
    checkpoint: Path = positional(type=Path, help="a maskdepth checkpoint (.pt)")
    data: str | None = option(None, help="dataset folder or 'synth' (default: the training data)")
    split: str = option("val", choices=SPLITS)
    json: Path | None = option(None, type=Path, help="also write the metrics here")
    batch: int = option(16, type=positive)
    workers: int = option(2, type=int, help="loader processes (0: none)")
    device: str = device_option()
    skip_bad: bool = option(False, action="store_true", help="skip broken scenes, count them")
    use_ema: bool = option(
        True, "--raw-weights", action="store_false", help="the trained weights, not their EMA"
    )
    refine: bool = option(
        True,
        "--no-refine",
        action="store_false",
        help="a refined model: score its base's output upsampled bilinearly, not the refiner's",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, EvalOptions)


def run(options: EvalOptions) -> int:
    from maskdepth.train.evaluate import evaluate, format_result, write_json

    o = options
    result = evaluate(
        o.checkpoint,
        o.data,
        o.split,
        batch=o.batch,
        workers=o.workers,
        device=o.device,
        skip_bad=o.skip_bad,
        use_ema=o.use_ema,
        refine=o.refine,
    )
    print(format_result(result))
    if o.json:
        write_json(o.json, result)
    return 0


COMMAND = Command(
    "eval", "score a checkpoint on a dataset", EvalOptions, run, add_arguments=add_arguments
)
