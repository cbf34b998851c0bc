"""The ``maskdepth`` subcommands, one module each: an options dataclass whose fields are the
command's options (:mod:`maskdepth.options`), ``add_arguments(parser)``,
``run(options) -> exit code`` and ``COMMAND``, which :mod:`maskdepth.cli` dispatches to.

A command module imports only what building its parser needs; the work's modules (torch,
onnx, TensorRT) are imported inside ``run``, so ``maskdepth --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from maskdepth.options import add_options


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    options: type | None = None  # the dataclass that run() takes; None: a group of verbs
    run: Callable[[Any], int] | None = None
    description: str | None = None
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None  # default: options'

    def add_to(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """This command's parser in ``subparsers``; parsing it sets ``handler`` to self."""
        parser = subparsers.add_parser(self.name, help=self.help, description=self.description)
        if self.add_arguments is not None:
            self.add_arguments(parser)
        elif self.options is not None:
            add_options(parser, self.options)
        parser.set_defaults(handler=self)
        return parser


# In the order ``maskdepth --help`` lists them.
NAMES = ("data", "train", "evaluate", "export", "predict", "stream", "bench", "demo", "doctor")
