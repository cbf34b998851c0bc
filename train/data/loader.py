"""The PyTorch side of the data: a Dataset over any source, and a DataLoader that keeps a GPU fed.

The only data module that imports torch. Pre-processing is the runtime's ``prepare_pair``, so
training sees exactly what the exported model will see.
"""

from __future__ import annotations

import multiprocessing as mp
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair, resize_map

from .augment import Augment
from .parallel import limit_opencv_threads
from .sample import Sample
from .sources import Source

_SEED_PRE = Preprocessing()  # frozen, so one shared default is safe


class MaskDepthDataset(Dataset):
    """Samples of ``source`` (those at ``indices``, default all) as tensors.

    Each item is ``{"input": (6,H,W), "mask": (1,H,W), "depth": (1,H,W), "index": int}`` with
    float32 tensors at ``pre.size``; ``index`` is the source index the item came from.
    The augmentation RNG is seeded from (seed, epoch, source index), so a batch does not depend
    on which worker made it. The epoch and the bad-sample flags live in shared memory, so
    :meth:`set_epoch` and :attr:`bad_count` work with persistent worker processes.

    With ``skip_bad`` a sample whose source raises MaskDepthError is replaced by the next one
    and remembered; without it the error reaches the caller unchanged.
    """

    def __init__(
        self,
        source: Source,
        indices: Sequence[int] | np.ndarray | None = None,
        pre: Preprocessing = _SEED_PRE,
        augment: Augment | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        total = len(source)
        self.source = source
        self.indices = np.arange(total, dtype=np.int64) if indices is None else np.asarray(indices)
        self.indices = self.indices.astype(np.int64, copy=False)
        if self.indices.ndim != 1 or (
            len(self.indices) and not 0 <= self.indices.min() <= self.indices.max() < total
        ):
            raise MaskDepthError(f"indices: expected a 1-d list of indices in [0, {total})")
        self.pre = pre
        self.augment = augment
        self.seed = int(seed)
        self.skip_bad = skip_bad
        self._epoch = mp.RawValue("q", 0)
        self._bad = mp.RawArray("B", total) if skip_bad else None  # one flag per source index

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def epoch(self) -> int:
        return self._epoch.value

    def set_epoch(self, epoch: int) -> None:
        """Choose the augmentation draws of this epoch (call before iterating the loader)."""
        self._epoch.value = int(epoch)

    @property
    def bad_count(self) -> int:
        """How many distinct source samples were skipped as broken, over all workers."""
        return int(self.bad_indices().size)

    def bad_indices(self) -> np.ndarray:
        """The source indices skipped as broken so far (empty without ``skip_bad``)."""
        if self._bad is None:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(np.frombuffer(self._bad, dtype=np.uint8)).astype(np.int64)

    def _load(self, item: int) -> tuple[int, Sample]:
        if not self.skip_bad:
            index = int(self.indices[item])
            try:
                return index, self.source[index]
            except MaskDepthError as error:
                raise MaskDepthError(f"{error} (--skip-bad skips broken scenes)") from None
        bad = self._bad
        assert bad is not None  # allocated with skip_bad
        for step in range(len(self.indices)):
            index = int(self.indices[(item + step) % len(self.indices)])
            if bad[index]:
                continue
            try:
                return index, self.source[index]
            except MaskDepthError:
                bad[index] = 1
        raise MaskDepthError(f"all {len(self.indices)} samples of the dataset are broken")

    def __getitem__(self, item: int) -> dict:
        index, sample = self._load(item)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            sample = self.augment(sample, rng, size=self.pre.size)
        mask = resize_map(sample.mask, self.pre.size)[None]
        depth = resize_map(sample.depth, self.pre.size)[None]
        return {
            "input": torch.from_numpy(prepare_pair(sample.bg, sample.scene, self.pre)),
            "mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32)),
            "depth": torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32)),
            "index": index,
        }


def make_loader(
    dataset: MaskDepthDataset,
    batch_size: int,
    *,
    workers: int = 2,
    shuffle: bool = True,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool | None = None,
    persistent_workers: bool | None = None,
    prefetch_factor: int = 4,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader whose batches depend only on ``seed``, the epoch count and the dataset's
    epoch, not on ``workers``.

    The shuffle has its own generator: DataLoader also draws its workers' base seed from
    ``generator``, once per iterator, which with persistent workers would shift the order of
    later epochs compared with ``workers=0``. A ``sampler`` given replaces ``shuffle``'s (training
    passes its own, whose order is a function of (seed, epoch) and which shards over ranks).
    """
    if batch_size < 1 or workers < 0:
        raise MaskDepthError(f"batch size {batch_size}, workers {workers}: expected >= 1 and >= 0")
    if sampler is None and shuffle:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    elif sampler is None:
        sampler = SequentialSampler(dataset)
    pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
    persistent_workers = workers > 0 if persistent_workers is None else persistent_workers
    return _Loader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        drop_last=drop_last,
        pin_memory=pin_memory,
        worker_init_fn=limit_opencv_threads,
        generator=torch.Generator().manual_seed(seed + 1),
        persistent_workers=persistent_workers and workers > 0,
        prefetch_factor=prefetch_factor if workers > 0 else None,
    )


class _Loader(DataLoader):
    """A DataLoader whose workers' MaskDepthErrors reach the caller as the worker's own one-line
    message: torch re-raises them with the worker's traceback pasted into the message."""

    # torch types DataLoader.__iter__ as returning its private _BaseDataLoaderIter; callers here
    # only iterate, and a generator is the one place to catch what the workers raise.
    def __iter__(self) -> Iterator:  # type: ignore[override]
        batches = super().__iter__()
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except MaskDepthError as error:
                raise MaskDepthError(_worker_message(error)) from None
            yield batch


def _worker_message(error: MaskDepthError) -> str:
    """The message raised inside the worker: the last line of torch's "Caught ... Original
    Traceback ..." text, after the exception's name."""
    text = str(error)
    marker = f"{type(error).__name__}: "
    last = text.rstrip().splitlines()[-1] if "Original Traceback" in text else ""
    return last.split(marker, 1)[1] if marker in last else text
