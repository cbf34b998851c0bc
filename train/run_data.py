"""The data side of a training run: source, train/val datasets, their loaders and samplers,
and the validation scenes drawn into ``samples.png``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.preprocess import Preprocessing

from .config import TrainConfig, size_pair
from .data.augment import preset
from .data.loader import MaskDepthDataset, make_loader
from .data.sources import Source
from .datasets import (
    data_record,
    open_data,
    refine_info,
    split,
    synth_options,
    training_config,
)
from .distributed import Dist, EpochSampler, ShardSampler


@dataclass
class RunData:
    model_config: ModelInfo  # what the checkpoint, and every export of it, says of the model
    source: Source
    record: dict  # the checkpoint's ``data``
    train_set: MaskDepthDataset
    val_set: MaskDepthDataset
    sampler: EpochSampler  # the training order: a function of (seed, epoch)
    train_loader: DataLoader
    val_loader: DataLoader
    sample_indices: list[int]  # source indices of the samples.png scenes

    @property
    def pre(self) -> Preprocessing:
        return self.model_config.preprocessing

    @property
    def steps_per_epoch(self) -> int:
        return self.sampler.batches

    def set_epoch(self, epoch: int, done: int) -> None:
        """Start (or, after ``done`` steps, continue) epoch ``epoch``'s order and augmentation."""
        self.sampler.set_epoch(epoch, done)
        self.train_set.set_epoch(epoch)

    def bad_scenes(self) -> int:
        """Scenes left out by --skip-bad: at indexing (missing files) and when read (this
        rank's loaders; broken files)."""
        read = len(set(self.train_set.bad_indices()) | set(self.val_set.bad_indices()))
        return int(getattr(self.source, "skipped", 0)) + read


def build_data(
    config: TrainConfig, job: Dist, device: torch.device, source: Source | None = None
) -> RunData:
    """Open ``config.data`` (or use ``source``), split it and make the loaders."""
    source = source or open_data(
        config.data,
        size=config.data_size,
        binarize=config.binarize,
        skip_bad=config.skip_bad,
        synth=synth_options(config),
    )
    record = data_record(config, source)
    refine = None
    if config.refine is not None:
        refine = refine_info(config.refine, size_pair(config.size), config.data_size)
    model_config = training_config(
        config.model, config.data_size, source, record["manifest_hash"], refine
    )
    pre = model_config.preprocessing
    train_idx, val_idx = split(source, record)
    if not len(val_idx):
        raise MaskDepthError(
            f"--val-fraction {config.val_fraction} leaves no validation scenes out of {len(source)}"
        )
    train_set = MaskDepthDataset(
        source,
        train_idx,
        pre=pre,
        augment=preset(config.augment),
        seed=config.seed,
        skip_bad=config.skip_bad,
    )
    val_set = MaskDepthDataset(source, val_idx, pre=pre, seed=config.seed, skip_bad=config.skip_bad)
    sampler = EpochSampler(len(train_set), config.batch, config.seed, job, config.accumulate)
    if sampler.batches == 0:
        raise MaskDepthError(
            f"{len(train_set)} training scenes do not fill one step of --batch "
            f"{config.batch} x --accumulate {config.accumulate} x {job.world} "
            "process(es); lower --batch"
        )
    loaders = _loaders(config, job, device, train_set, val_set, sampler)
    picks = np.unique(np.linspace(0, len(val_idx) - 1, min(config.samples, len(val_idx))))
    indices = [int(val_idx[int(i)]) for i in picks]
    return RunData(model_config, source, record, train_set, val_set, sampler, *loaders, indices)


def _loaders(
    config: TrainConfig,
    job: Dist,
    device: torch.device,
    train_set: MaskDepthDataset,
    val_set: MaskDepthDataset,
    sampler: EpochSampler,
) -> tuple[DataLoader, DataLoader]:
    pin_memory = device.type == "cuda"
    train_loader = make_loader(
        train_set,
        config.batch,
        workers=config.workers,
        sampler=sampler,
        seed=config.seed,
        pin_memory=pin_memory,
    )
    val_loader = make_loader(
        val_set,
        config.batch,
        workers=config.workers,
        sampler=ShardSampler(len(val_set), job),
        pin_memory=pin_memory,
    )
    return train_loader, val_loader
