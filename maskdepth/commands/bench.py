"""``maskdepth bench``: the options are :class:`maskdepth.benchmarks.bench.BenchOptions`'s
fields, after the model files and the output folder."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from maskdepth.benchmarks.bench import BenchOptions
from maskdepth.options import add_options, nested, option, positional

from . import Command


@dataclass(kw_only=True)
class BenchCommand:
    models: list[Path] = positional(
        nargs="+", type=Path, metavar="MODEL", help="exported files (.onnx, .engine)"
    )
    out: Path = option(type=Path, required=True, help="folder for bench.md/json/png")
    options: BenchOptions = nested(BenchOptions)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, BenchCommand)


def run(command: BenchCommand) -> int:
    from maskdepth.benchmarks.bench import bench, to_markdown

    report = bench(command.models, command.out, command.options)
    print(to_markdown(report))
    print(f"wrote {command.out / 'bench.md'}, bench.json, bench.png")
    failed = [r for r in report["rows"] if r["status"].startswith("failed")]
    return 1 if failed else 0


COMMAND = Command(
    "bench",
    "latency and accuracy parity of model files side by side",
    BenchCommand,
    run,
    description="One row per model file x backend x batch (and the PyTorch reference): "
    "latency, throughput, IoU/RMSE and their change; writes bench.md, bench.json, bench.png.",
    add_arguments=add_arguments,
)
