"""``python -m maskdepth.train ...``: the same options as ``maskdepth train``; this form is
the one ``torchrun`` launches (see :mod:`maskdepth.train.distributed`)::

    torchrun --nproc_per_node 4 -m maskdepth.train --data DIR --size 224 --out runs/x
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError

from .config import add_train_arguments, config_from_args


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m maskdepth.train", description="Train a mask + depth model."
    )
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        from .stages import train_stages

        train_stages(config_from_args(args))
    except (MaskDepthError, MissingDependencyError, FileNotFoundError) as exc:
        if os.environ.get("RANK", "0") == "0":  # every rank fails alike; one says so
            print(f"maskdepth train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("maskdepth train: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
