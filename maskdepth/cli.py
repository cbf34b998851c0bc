"""The `maskdepth` command: one entry point, a subcommand per module of
:mod:`maskdepth.commands`, and one error handler.

User errors (MaskDepthError, a missing file or optional dependency) print one line and exit 2;
heavy modules are imported only by the subcommand that runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from maskdepth import __version__
from maskdepth.commands import NAMES, Command
from maskdepth.options import options_from
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.runners.cuda import check_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdepth",
        description="Mask and dense depth of what is new in a fixed camera's scene.",
    )
    parser.add_argument("--version", action="version", version=f"maskdepth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in NAMES:
        importlib.import_module(f"maskdepth.commands.{name}").COMMAND.add_to(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_opencv()
    command: Command = args.handler
    name = " ".join(filter(None, ["maskdepth", args.command, getattr(args, "verb", None)]))
    assert command.options is not None and command.run is not None  # verbs are required
    try:
        if getattr(args, "device", None):
            check_device(args.device)
        return command.run(options_from(command.options, args))
    except (MaskDepthError, MissingDependencyError, FileNotFoundError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
    except OSError as exc:  # a folder that is a file, a disk that is full, no permission, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 2


def _quiet_opencv() -> None:
    """OpenCV prints its own warnings (a truncated PNG) before ours; our errors say it once."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
