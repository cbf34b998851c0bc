"""What a training run prints: its intro line, one line per validation, re-plans, and the
progress bar (rank 0 only, and only with ``--progress``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from tqdm import tqdm

from .config import TrainConfig, size_text
from .distributed import Dist
from .plan import UNBOUNDED

POSTFIX_EVERY = 10  # steps between progress-bar postfix updates (each one syncs the device)


class Console:
    """Lines above a tqdm bar of optimizer steps; silent on other ranks and without
    ``progress``."""

    def __init__(self, job: Dist, progress: bool) -> None:
        self.enabled = job.main and progress
        self.bar: tqdm | None = None

    def say(self, line: str) -> None:
        if self.enabled:
            tqdm.write(line)

    def open_bar(self, total: int | None, initial: int) -> None:
        self.bar = tqdm(
            total=total, initial=initial, unit="step", disable=not self.enabled, dynamic_ncols=True
        )

    def epoch_begins(self, epoch: int) -> None:
        if self.bar is not None:
            self.bar.set_description(f"epoch {epoch + 1}")

    def stepped(self, epoch_step: int, steps: int, running: Callable[[], dict]) -> None:
        """Step ``epoch_step`` of ``steps`` done; the ``running`` statistics are shown every
        POSTFIX_EVERY steps and at the epoch's end (each fetch syncs the device)."""
        assert self.bar is not None, "open_bar first"
        self.bar.update()
        if self.enabled and (epoch_step % POSTFIX_EVERY == 0 or epoch_step == steps):
            self.bar.set_postfix(running(), refresh=False)

    def replanned(self, total: int, line: str) -> None:
        if self.bar is not None:
            self.bar.total = total
        self.say(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def length_text(config: TrainConfig, total_steps: int, max_steps: int) -> str:
    """How long the run is: its steps, or what its time budget fits."""
    if config.max_minutes is None:
        return f"{total_steps} steps"
    limit = "" if max_steps == UNBOUNDED else f", at most {max_steps}"
    return f"as many steps as fit in {config.max_minutes:g} min{limit}"


def intro_line(
    config: TrainConfig,
    job: Dist,
    device: torch.device,
    dtype: torch.dtype | None,
    scenes: tuple[int, int],
    steps_per_epoch: int,
    length: str,
    step: int,
) -> str:
    """The run's first line: model, size, device, precision, data, batch and length.
    ``scenes``: (training, validation)."""
    world = f" x {job.world} processes" if job.active else ""
    accumulate = f" x {config.accumulate} accumulated" if config.accumulate > 1 else ""
    resumed = f", resuming after step {step}" if step else ""
    amp = f", amp {str(dtype).removeprefix('torch.')}" if dtype else ""
    return (
        f"training {config.model} at {_sizes(config)} on {device}{amp}: "
        f"{scenes[0]} train / {scenes[1]} val scenes, "
        f"batch {config.batch}{accumulate}{world}, {steps_per_epoch} steps per epoch, "
        f"{length} -> {Path(config.out)}{resumed}"
    )


def _sizes(config: TrainConfig) -> str:
    """The run's sizes: ``96 px``, ``64,96 px`` or ``128x224 px -> 512x896 px (guided refiner)``."""
    sizes = ",".join(map(size_text, config.sizes)) + " px"
    if config.full_size is None:
        return sizes
    return f"{sizes} -> {size_text(config.full_size)} px ({config.refine} refiner)"


def epoch_line(row: dict, total_steps: int) -> str:
    """One validation's line: the step, training loss, validation IoU, boundary F and RMSE,
    speed."""
    part = "" if row["epoch_fraction"] >= 1 else f" ({row['epoch_fraction']:.0%} of it)"
    return (
        f"epoch {row['epoch']}{part} step {row['step']}/{total_steps}: "
        f"loss {row['train_loss']:.4f}, val IoU {row['val_iou']:.4f} "
        f"BF {row['val_boundary_f']:.4f} RMSE {row['val_rmse']:.4f}"
        f" | {row['images_per_s']:.1f} images/s, data wait {row['data_wait']:.0%}"
    )
