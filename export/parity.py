"""The parity gate: an exported file against the PyTorch fp32 model on the same held-out
samples, through the runtime's own runners, judged by the one comparison helper."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from maskdepth.runtime.compare import DEFAULT_TOLERANCES, Comparison, DiffAccumulator
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.runners.base import Runner
from maskdepth.train.models.u2net import InferenceModel

from .samples import HeldOut

BATCH = 8


def reference_outputs(model: nn.Module, held_out: HeldOut) -> list[dict[str, np.ndarray]]:
    """The PyTorch fp32 model's outputs per batch (kept: every export is compared with them)."""
    wrapped = InferenceModel(model).eval()
    outputs = []
    with torch.inference_mode():
        for batch in tqdm(held_out.batches(BATCH), desc="reference (PyTorch fp32)", leave=False):
            mask, depth = wrapped(*(torch.from_numpy(batch.feed[k]) for k in ("bg", "scene")))
            outputs.append({"mask": mask.numpy(), "depth": depth.numpy()})
    return outputs


def compare_runner(
    runner: Runner,
    held_out: HeldOut,
    reference: list[dict[str, np.ndarray]],
    precision: str,
    tolerance: dict | None = None,
) -> Comparison:
    """Run ``runner`` on the held-out samples and compare with ``reference``."""
    diffs = DiffAccumulator()
    with runner:
        batches = zip(held_out.batches(BATCH), reference)
        for batch, expected in tqdm(
            batches, desc=f"parity ({precision})", leave=False, total=len(reference)
        ):
            diffs.update(expected, runner.infer(batch.feed), batch.mask, batch.depth)
    return diffs.result(precision, tolerance)


def tolerance_for(precision: str, override: dict | None) -> dict:
    """The default tolerances of ``precision`` with ``override``'s keys replaced."""
    tolerance = dict(DEFAULT_TOLERANCES[precision])
    for key, value in (override or {}).items():
        if key == "*":
            tolerance = dict.fromkeys(tolerance, value)
        elif key in ("max_abs", "iou", "rmse"):
            tolerance[key] = value
        else:
            raise MaskDepthError(f"--tolerance {key}: expected max_abs, iou or rmse")
    return tolerance


def write_report(path: Path, comparison: Comparison | None, **extra) -> Path:
    """``PATH.parity.json``: the comparison (or why there is none) and what was checked."""
    report = Path(f"{path}.parity.json")
    payload = (comparison.to_dict() if comparison is not None else {"passed": None}) | extra
    write_bytes_atomic(report, (json.dumps(payload, indent=2) + "\n").encode())
    return report
