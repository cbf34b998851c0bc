"""The parity gate, the one step every export passes through: run the new file through the
runtime's runner, compare with the PyTorch fp32 reference, and give it its final name only when
it passed (``NAME.parity-failed.EXT`` when not), with ``NAME.parity.json`` beside it."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from maskdepth.runtime.compare import Comparison
from maskdepth.runtime.engine_sidecar import sidecar_path
from maskdepth.runtime.runners.base import Runner

from .options import ExportOptions
from .parity import Recorded, compare_runner, tolerance_for, write_report
from .samples import HeldOut


@dataclass
class ExportResult:
    path: Path  # where the file is (the failed name when parity failed)
    passed: bool | None  # None: parity could not be checked here (an engine without CUDA)
    comparison: Comparison | None
    seconds: dict[str, float] = field(default_factory=dict)
    note: str = ""
    parity_report: Path | None = None

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True)
class Reference:
    """The held-out samples and the PyTorch fp32 model's outputs on them."""

    samples: HeldOut
    outputs: Recorded


def failed_name(out: Path) -> Path:
    return out.with_name(f"{out.stem}.parity-failed{out.suffix}")


@contextlib.contextmanager
def pending(out: Path) -> Iterator[Path]:
    """The name a new file is written under until the gate has judged it (``.NAME.pending``
    beside ``out``); whatever is still there when the block ends, an engine's sidecar too, is
    removed, so a failed or crashed gate never leaves an unchecked file at ``out``."""
    path = out.with_name(f".{out.name}.pending")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        sidecar_path(path).unlink(missing_ok=True)


def gate(
    candidate: Path, out: Path, runner: Runner, reference: Reference, precision: str,
    options: ExportOptions, seconds: dict, **report,
) -> ExportResult:  # fmt: skip
    """Compare ``runner`` (which runs ``candidate``) with ``reference``; move ``candidate`` (and
    its engine sidecar, when it has one) to ``out`` when it passed, to the failed name when not.
    ``report``: more entries for the parity report."""
    start = time.perf_counter()
    tolerance = tolerance_for(precision, options.tolerance)
    comparison = compare_runner(runner, reference.samples, reference.outputs, precision, tolerance)
    seconds["parity"] = time.perf_counter() - start
    final = out if comparison else failed_name(out)
    move(candidate, final)
    if comparison:  # an older failure of the same export
        failed_name(out).unlink(missing_ok=True)
        sidecar_path(failed_name(out)).unlink(missing_ok=True)
    path = write_report(
        out, comparison, file=str(final), samples=reference.samples.description,
        seconds=seconds, **report,
    )  # fmt: skip
    return ExportResult(final, bool(comparison), comparison, seconds, parity_report=path)


def move(source: Path, target: Path) -> None:
    """Rename ``source`` (and its engine sidecar, when it has one) to ``target``; ``target``'s
    old sidecar goes first, so it never describes the new file."""
    if source == target:
        return
    sidecar_path(target).unlink(missing_ok=True)
    os.replace(source, target)
    if sidecar_path(source).exists():
        os.replace(sidecar_path(source), sidecar_path(target))
