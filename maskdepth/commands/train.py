"""``maskdepth train``: the options are :class:`maskdepth.train.config.TrainConfig`'s fields."""

from __future__ import annotations

import argparse

from maskdepth.train.config import TrainConfig, add_train_arguments  # no torch: --help stays fast

from . import Command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_train_arguments(parser)


def run(options: TrainConfig) -> int:
    from maskdepth.train.stages import train_stages

    train_stages(options)
    return 0


COMMAND = Command(
    "train",
    "train a model",
    TrainConfig,
    run,
    description="Train a mask + depth model; on several GPUs run "
    "'torchrun --nproc_per_node N -m maskdepth.train' with the same options.",
    add_arguments=add_arguments,
)
