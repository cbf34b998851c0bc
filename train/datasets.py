"""The data of a training run: its source, the train/val split, and the checkpoint's ``data``
record from which evaluation rebuilds the same source and split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo, RefineInfo

from .checkpoint import checkpoint_config
from .config import TrainConfig, normal_size
from .data.manifest import manifest_hash
from .data.sources import Source, open_source
from .data.split import split_indices
from .models import default_config


def open_data(
    spec: str, *, size: int | tuple[int, int], binarize: bool, skip_bad: bool, synth: dict | None
):
    """:func:`~.data.sources.open_source` with a run's record: ``synth`` is its synth count, seed
    and per_background (None when it was trained on a dataset folder)."""
    if spec == "synth" and synth is None:  # a folder-trained checkpoint, evaluated on synth
        raise MaskDepthError(
            "--data synth: no synth count, seed and per_background to render with "
            "(the checkpoint was not trained on synthetic data)"
        )
    if spec != "synth" and not Path(spec).is_dir():
        raise MaskDepthError(f"--data {spec}: no such dataset folder (or pass 'synth')")
    return open_source(spec, binarize_mask=binarize, skip_bad=skip_bad, size=size, **(synth or {}))


def synth_options(config: TrainConfig) -> dict | None:
    if config.data != "synth":
        return None
    return {
        "count": config.synth_count,
        "seed": config.synth_seed,
        "per_background": config.synth_per_background,
    }


def source_hash(source: Source, spec: str) -> str | None:
    """sha256 of the dataset's manifest.json, or of the synth source's manifest (None: none)."""
    if spec == "synth":
        text = json.dumps(source.manifest, sort_keys=True).encode()
        return hashlib.sha256(text).hexdigest()
    return manifest_hash(spec) if Path(spec).is_dir() else None


def data_record(config: TrainConfig, source: Source) -> dict:
    """The checkpoint's ``data`` entry."""
    spec = "synth" if config.data == "synth" else str(Path(config.data).resolve())
    return {
        "spec": spec,
        "manifest_hash": source_hash(source, spec),
        "binarize_mask": config.binarize,
        "synth": synth_options(config),
        "split": {
            "val_fraction": config.val_fraction,
            "seed": config.split_seed,
            "by": config.split_by,
        },
    }


def split(source: Source, record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of ``source`` as the record's split says."""
    options = record["split"]
    return split_indices(source, options["val_fraction"], options["seed"], options["by"])


def data_from_checkpoint(
    ckpt: dict, spec: str | None = None, skip_bad: bool = False
) -> tuple[Source, np.ndarray, np.ndarray]:
    """The source a checkpoint was trained on (or ``spec`` instead), at its training size, with
    its (train, val) split: what ``maskdepth eval --split val`` scores (a refined model's
    training size is its full resolution)."""
    record = ckpt["data"]
    size = normal_size(tuple(int(v) for v in checkpoint_config(ckpt).preprocessing.size))
    source = open_data(
        spec or record["spec"],
        size=size,
        binarize=record["binarize_mask"],
        skip_bad=skip_bad,
        synth=record["synth"],
    )
    return (source, *split(source, record))


def manifest_normalisation(manifest: dict | None) -> tuple[tuple, tuple] | None:
    """(mean, std) of the six input channels (bg RGB, scene RGB; images / 255) from a
    manifest's ``stats``; None when it has none (the seed's data, on-the-fly synth)."""
    stats = (manifest or {}).get("stats") or {}
    try:
        parts = [stats["bg"], stats["scene"]]
        mean = tuple(float(v) for part in parts for v in part["mean"])
        std = tuple(float(v) for part in parts for v in part["std"])
    except (KeyError, TypeError, ValueError):
        return None
    return (mean, std) if len(mean) == len(std) == 6 and min(std) > 0 else None


def manifest_depth_scale(manifest: dict | None) -> float | None:
    """Metres per depth unit from a manifest's ``depth.scale_m`` (None: no scale)."""
    scale = ((manifest or {}).get("depth") or {}).get("scale_m")
    return float(scale) if scale else None


# A refined model's full-resolution input range: from its base size up to this many times the
# full training size each way (the exported graph's and the TensorRT profile's min and max).
REFINE_RANGE = 2


def refine_info(kind: str, base: tuple[int, int], full: tuple[int, int]) -> RefineInfo:
    """The RefineInfo of a model refined from ``base`` to ``full`` (height, width)."""
    top = (REFINE_RANGE * full[0], REFINE_RANGE * full[1])
    return RefineInfo(kind=kind, base_size=base, min_size=base, max_size=top)


def training_config(
    name: str,
    size: tuple[int, int],
    source: Source,
    manifest_hash: str | None,
    refine: RefineInfo | None = None,
) -> ModelInfo:
    """The config a run writes into its checkpoints: the variant's default at the training
    size (height, width; a refined model's full size), with the data's mean/std when its
    manifest has them (else the seed's) and its depth scale, so that export never needs the
    training data again; ``refine`` only for a refined model."""
    config = default_config(name)
    pre = replace(config.preprocessing, size=(int(size[0]), int(size[1])))
    normalisation = manifest_normalisation(source.manifest)
    if normalisation is not None:
        pre = replace(pre, mean=normalisation[0], std=normalisation[1])
    scale = manifest_depth_scale(source.manifest)
    config = replace(config, preprocessing=pre, depth_scale_m=scale, manifest_hash=manifest_hash)
    return config if refine is None else replace(config, refine=refine)
