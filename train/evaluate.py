"""`maskdepth eval`: a checkpoint's metrics on a dataset's val split (or all of it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_bytes_atomic

from .checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint
from .data.loader import MaskDepthDataset, make_loader
from .datasets import data_from_checkpoint
from .device import CHANNELS_LAST, pick_device
from .distributed import from_environment
from .validation import validate

SPLITS = ("val", "all")


def evaluate(
    checkpoint: str | Path,
    data: str | None = None,
    split: str = "val",
    *,
    batch: int = 16,
    workers: int = 2,
    device: str = "auto",
    skip_bad: bool = False,
    use_ema: bool = True,
    progress: bool = True,
    refine: bool = True,
) -> dict:
    """Score ``checkpoint`` on ``data`` (default: the data it was trained on) at its training size.

    ``split="val"`` takes the checkpoint's own train/val split (same fraction, seed and kind)
    of that data; ``"all"`` every scene. A refined model is scored at its full resolution;
    ``refine=False`` (``--no-refine``) scores its base's output upsampled bilinearly instead.
    Returns every metric of :class:`~maskdepth.runtime.metrics.MetricAccumulator` plus
    ``count``, ``split``, ``size`` (and, refined, ``refine``: the refiner's kind or "bilinear",
    and ``base_size``).
    """
    if split not in SPLITS:
        raise MaskDepthError(f"--split {split!r}: expected one of {', '.join(SPLITS)}")
    ckpt = load_checkpoint(checkpoint)
    info = checkpoint_config(ckpt).refine
    if info is None and not refine:
        raise MaskDepthError(f"--no-refine: {checkpoint} has no refiner")
    model, pre = model_from_checkpoint(ckpt, use_ema=use_ema)
    source, _, val = data_from_checkpoint(ckpt, data, skip_bad=skip_bad)
    indices = val if split == "val" else np.arange(len(source))
    if not len(indices):
        raise MaskDepthError(f"{data or ckpt['data']['spec']}: no scenes in the {split} split")
    dataset = MaskDepthDataset(source, indices, pre, augment=None, skip_bad=skip_bad)
    target = pick_device(device, from_environment())
    # Module.to takes memory_format (documented, and done at runtime); torch's overloads omit it.
    model = model.to(target, memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    loader = make_loader(dataset, batch, workers=min(workers, len(indices)), shuffle=False)
    batches = tqdm(loader, desc="eval", unit="batch", disable=not progress)
    result = validate(model, batches, target, output=0 if refine else 1)
    if info is not None:
        result.update(refine=info.kind if refine else "bilinear", base_size=list(info.base_size))
    result.update(
        split=split,
        size=list(pre.size),
        model=ckpt["model"]["name"],
        weights="ema" if use_ema and ckpt.get("ema_state_dict") is not None else "raw",
        data=str(data or ckpt["data"]["spec"]),
        skipped=dataset.bad_count,
    )
    return result


def format_result(result: dict) -> str:
    refined = ""
    if "refine" in result:
        base = result["base_size"]
        refined = f" (base {base[0]}x{base[1]}, {result['refine']} up)"
    lines = [
        f"{result['model']} ({result['weights']} weights) on {result['data']}, "
        f"{result['split']} split: {result['count']:,} scenes at {result['size'][0]}x"
        f"{result['size'][1]}{refined}",
        f"  mask   IoU {result['iou']:.4f}  (batch-summed {result['iou_summed']:.4f})  "
        f"Dice {result['dice']:.4f}  boundary F {result['boundary_f']:.4f} (2 px)",
        f"  depth  RMSE {result['rmse']:.4f}  (all pixels {result['rmse_pixels']:.4f})  "
        f"MAE {result['mae']:.4f}  AbsRel {result['absrel']:.4f}  "
        f"delta<1.25 {result['delta1']:.4f}",
    ]
    if result["skipped"]:
        lines.append(f"  skipped {result['skipped']} broken scenes")
    return "\n".join(lines)


def write_json(path: str | Path, result: dict) -> None:
    write_bytes_atomic(Path(path), (json.dumps(result, indent=2) + "\n").encode())
