"""`maskdepth export --format engine`: an ONNX file (given with ``--from`` or exported first, at
``--precision``) compiled into a TensorRT plan + sidecar, then checked through the runtime's
TensorRT runner where a CUDA GPU can run it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from maskdepth.runtime.engine_sidecar import sidecar_path
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.runners.cuda import gpu_info

from .parity import Recorded, compare_runner, tolerance_for, write_report
from .pipeline import ExportOptions, ExportResult, failed_name
from .samples import HeldOut
from .tensorrt_build import Flavour, Profile, build_engine, load_flavour, onnx_model_info


def export_engine(
    onnx_path: Path, out: Path, options: ExportOptions, flavour: Flavour, parity: HeldOut | None,
    reference: Recorded | None, seconds: dict, checkpoint: str | None,
) -> ExportResult:  # fmt: skip
    """Build ``out`` from ``onnx_path`` and gate it when this machine can run it (``parity`` and
    ``reference`` are None when the caller found no GPU to check it on)."""
    info = onnx_model_info(onnx_path)
    start = time.perf_counter()
    build_engine(
        onnx_path, out, flavour=flavour, profile=profile_for(info, options),
        precision=None, workspace_mb=options.workspace_mb, timing_cache=options.timing_cache,
        compute_capabilities=options.compute_capabilities, checkpoint=checkpoint,
    )  # fmt: skip
    seconds["build_engine"] = time.perf_counter() - start
    if parity is None or reference is None or gpu_info() is None:
        note = (f"engine parity not checked: no CUDA GPU here; {onnx_path.name}, the graph it was "
                "compiled from, is what was checked")  # fmt: skip
        report = write_report(out, None, file=str(out), onnx=str(onnx_path), note=note,
                              seconds=seconds)  # fmt: skip
        return ExportResult(out, None, None, seconds, note, report)
    return gate_engine(out, info, options, parity, reference, seconds)


def gate_engine(
    out: Path, info: ModelInfo, options: ExportOptions, parity: HeldOut, reference: Recorded,
    seconds: dict,
) -> ExportResult:  # fmt: skip
    from maskdepth.runtime.runners.tensorrt import TensorRTRunner

    start = time.perf_counter()
    tolerance = tolerance_for(info.precision, options.tolerance)
    comparison = compare_runner(TensorRTRunner(out), parity, reference, info.precision, tolerance)
    seconds["parity"] = time.perf_counter() - start
    final = out
    if not comparison:
        final = failed_name(out)
        os.replace(out, final)
        os.replace(sidecar_path(out), sidecar_path(final))
    report = write_report(out, comparison, file=str(final), samples=parity.description,
                          seconds=seconds)  # fmt: skip
    return ExportResult(final, bool(comparison), comparison, seconds, parity_report=report)


def profile_for(info: ModelInfo, options: ExportOptions) -> Profile:
    if options.dynamic and "height" not in info.dynamic:
        raise MaskDepthError(
            "--dynamic: the ONNX file has a fixed height and width; export it with --dynamic"
        )
    dynamic = options.dynamic or "height" in info.dynamic
    return Profile.for_export(info.size, dynamic, options.max_batch)


def build_engine_from_onnx(onnx_path: Path, out: Path, max_batch: int = 8) -> ExportResult:
    """An engine from an exported ONNX file with default settings (for benchmarks and the demo);
    parity is not checked here."""
    flavour = load_flavour()
    start = time.perf_counter()
    info = onnx_model_info(onnx_path)
    build_engine(
        onnx_path,
        out,
        flavour=flavour,
        profile=Profile.for_export(info.size, False, max_batch),
        progress=False,
    )
    seconds = {"build_engine": time.perf_counter() - start}
    return ExportResult(out, None, None, seconds, f"{flavour.name} {flavour.version}")
