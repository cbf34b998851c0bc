"""The parity gate: an exported file against the PyTorch fp32 model on the same held-out
samples, both behind the runner interface, judged by the one ``compare()``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from torch import nn
from tqdm import tqdm

from maskdepth.runtime.compare import Comparison, Recorded, compare
from maskdepth.runtime.compare import resolve_tolerance as tolerance_for
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.runners.base import Runner
from maskdepth.train.torch_runner import TorchRunner

from .samples import HeldOut

__all__ = ["Recorded", "compare_runner", "reference_runner", "tolerance_for", "write_report"]


def reference_runner(model: nn.Module, held_out: HeldOut) -> Recorded:
    """The PyTorch fp32 model on the CPU, its outputs on ``held_out`` recorded now (every export
    is compared with them)."""
    with TorchRunner(model, device="cpu") as runner:
        return Recorded(runner).record(held_out, progress=_progress("reference (PyTorch fp32)"))


def compare_runner(
    runner: Runner,
    held_out: HeldOut,
    reference: Recorded,
    precision: str,
    tolerance: dict | None = None,
) -> Comparison:
    """Run ``runner`` on the held-out samples and compare with ``reference``."""
    with runner:
        return compare(
            reference,
            runner,
            held_out,
            tolerance,
            precision=precision,
            progress=_progress(f"parity ({precision})"),
        )


def _progress(desc: str):
    def bar(batches: Iterable, total: int) -> Iterable:
        return tqdm(batches, desc=desc, leave=False, total=total)

    return bar


def write_report(path: Path, comparison: Comparison | None, **extra) -> Path:
    """``PATH.parity.json``: the comparison (or why there is none) and what was checked."""
    report = Path(f"{path}.parity.json")
    payload = (comparison.to_dict() if comparison is not None else {"passed": None}) | extra
    write_bytes_atomic(report, (json.dumps(payload, indent=2) + "\n").encode())
    return report
