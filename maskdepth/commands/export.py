"""``maskdepth export``: the options are :class:`maskdepth.export.options.ExportOptions`'s
fields, after the checkpoint and the output file."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from maskdepth.export.options import ExportOptions  # no torch: --help stays fast
from maskdepth.options import add_options, nested, option, positional

from . import Command


@dataclass(kw_only=True)
class ExportCommand:
    checkpoint: Path = positional(type=Path, help="a maskdepth checkpoint (.pt)")
    out: Path = option(
        type=Path, required=True, help="file to write (--format triton: a new folder)"
    )
    options: ExportOptions = nested(ExportOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, ExportCommand)


def run(command: ExportCommand) -> int:
    from maskdepth.export.pipeline import export, format_result

    result = export(command.checkpoint, command.out, command.options)
    print(format_result(result))
    return 0 if result.passed is not False else 1


COMMAND = Command(
    "export",
    "export to ONNX fp32/fp16/INT8 or a TensorRT engine, checked for parity",
    ExportCommand,
    run,
    description="Export a checkpoint; every file is compared with the PyTorch fp32 model "
    "on held-out samples and kept as NAME.parity-failed.EXT (exit 1) when over tolerance.",
    add_arguments=add_arguments,
)
