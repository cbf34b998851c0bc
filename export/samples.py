"""Held-out samples for INT8 calibration and the parity gate, at the model's input size.

``--data DIR`` is a dataset in the seed's layout; when it is the checkpoint's own training data
(same manifest hash, or the same folder when it has no manifest) only its validation split is
used, so no training image decides the calibration or the verdict. Without ``--data``, the
checkpoint's training folder is that data when it is still there; otherwise (or for a model
trained on synthetic scenes) synthetic scenes are rendered from seeds the training run never
drew (``HELD_OUT_SEED``). :attr:`HeldOut.description` says which, and is printed and recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair, resize_map
from maskdepth.train.data.manifest import manifest_hash

HELD_OUT_SEED = 1_000_003  # synth seeds used by training are small integers


@dataclass
class Batch:
    feed: dict[str, np.ndarray]  # "bg", "scene": float32 (N, 3, H, W), normalised
    mask: np.ndarray  # float32 (N, 1, H, W)
    depth: np.ndarray


class HeldOut:
    """Samples kept as uint8 images and float targets; network inputs are made per batch."""

    def __init__(self, samples: list, pre: Preprocessing, kind: str) -> None:
        self.samples = samples
        self.pre = pre
        self.kind = kind  # where the samples come from, e.g. "validation scenes of DIR"

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def description(self) -> str:
        return f"{len(self)} {self.kind}"

    def subset(self, start: int, stop: int) -> HeldOut:
        return HeldOut(self.samples[start:stop], self.pre, self.kind)

    def batches(self, size: int = 8) -> Iterator[Batch]:
        for start in range(0, len(self.samples), size):
            chunk = self.samples[start : start + size]
            inputs = np.stack([prepare_pair(s.bg, s.scene, self.pre) for s in chunk])
            yield Batch(
                feed={"bg": inputs[:, :3].copy(), "scene": inputs[:, 3:].copy()},
                mask=np.stack([resize_map(s.mask, self.pre.size)[None] for s in chunk]),
                depth=np.stack([resize_map(s.depth, self.pre.size)[None] for s in chunk]),
            )


def held_out_samples(
    ckpt: dict, pre: Preprocessing, count: int, data: str | Path | None = None
) -> HeldOut:
    """``count`` samples (or as many as the held-out pool has) for ``ckpt``'s model."""
    source, indices, description = _pool(ckpt, pre, count, data)
    if not len(indices):
        raise MaskDepthError(f"{description}: no scenes to calibrate and check parity on")
    indices = indices[:count]
    samples = [
        source[int(i)] for i in tqdm(indices, desc="held-out samples", unit="scene", leave=False)
    ]
    return HeldOut(samples, pre, description)


def _pool(ckpt: dict, pre: Preprocessing, count: int, data):
    record = ckpt.get("data") or {}
    if data is not None:
        return _folder_pool(Path(data), record, f"--data {data}")
    spec = _training_folder(record)
    if spec is not None:  # trained on a folder: its validation split, when it is there
        if spec.is_dir():
            try:
                return _folder_pool(spec, record, f"the checkpoint's training folder {spec}")
            except MaskDepthError as exc:  # e.g. emptied since: say so, as for a moved one
                why = str(exc)
        else:
            why = f"the checkpoint's training folder {spec} is not there"
        return _synth_pool(pre, count, f"synthetic scenes ({why})")
    return _synth_pool(pre, count, "synthetic scenes never seen in training")


def _synth_pool(pre: Preprocessing, count: int, description: str):
    from maskdepth.train.data.synth import SynthSource

    synth = SynthSource(count, size=pre.size, seed=HELD_OUT_SEED)
    return synth, np.arange(len(synth)), description


def _folder_pool(path: Path, record: dict, name: str):
    """A dataset folder's scenes: its validation split when it is the training data."""
    if not path.is_dir():
        raise MaskDepthError(f"{name}: no such dataset folder")
    from maskdepth.train.data.sources import open_source
    from maskdepth.train.datasets import split

    try:
        source = open_source(path, binarize_mask=record.get("binarize_mask", True))
    except MaskDepthError as exc:
        raise MaskDepthError(f"{name}: {exc}") from None
    if not len(source):
        raise MaskDepthError(f"{name}: the dataset is empty")
    if "split" in record and _is_training_data(path, record):
        return source, split(source, record)[1], f"validation scenes of {path}"
    # Spread over the whole dataset rather than its first backgrounds.
    order = np.random.default_rng(0).permutation(len(source))
    if path.resolve() == _training_folder(record):
        return source, order, f"scenes of {path} (its manifest is not the one trained on)"
    return source, order, f"scenes of {path}"


def _training_folder(record: dict) -> Path | None:
    """The folder the checkpoint was trained on (its path as resolved then), if any."""
    spec = record.get("spec")
    return Path(spec) if spec and spec != "synth" else None


def _is_training_data(path: Path, record: dict) -> bool:
    """The same manifest as in training; for a folder without one (the seed's data), the same
    folder."""
    trained_on, digest = record.get("manifest_hash"), manifest_hash(path)
    if trained_on:
        return digest == trained_on
    return digest is None and path.resolve() == _training_folder(record)
