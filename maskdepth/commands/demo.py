"""``maskdepth demo``: the options are the output folder and
:class:`maskdepth.benchmarks.demo.DemoPlan`'s fields."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from maskdepth.benchmarks.demo import DemoPlan
from maskdepth.options import add_options, nested, option
from maskdepth.runtime.errors import MaskDepthError

from . import Command


@dataclass(kw_only=True)
class DemoCommand:
    out: Path = option(Path("runs/demo"), type=Path)
    plan: DemoPlan = nested(DemoPlan)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DemoCommand)


def run(command: DemoCommand) -> int:
    from maskdepth.benchmarks.demo import run_demo

    if not command.plan.minutes > 0:
        raise MaskDepthError(f"--minutes {command.plan.minutes}: expected a positive number")
    return run_demo(command.out, command.plan)


COMMAND = Command(
    "demo",
    "the whole story on this machine, no data needed",
    DemoCommand,
    run,
    description="Synthesise data, train u2netp-md, export ONNX fp32/fp16/INT8 (and an engine "
    "with TensorRT and CUDA), benchmark them against PyTorch, and write OUT/report.md.",
    add_arguments=add_arguments,
)
