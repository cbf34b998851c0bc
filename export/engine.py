"""`maskdepth export --format engine`: an ONNX file (given with ``--from`` or exported first, at
``--precision``) compiled into a TensorRT plan + sidecar, then checked through the runtime's
TensorRT runner where a CUDA GPU can run it."""

from __future__ import annotations

import time
from pathlib import Path

from maskdepth.runtime.engine_sidecar import engine_info, read_sidecar, target_problem
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo, read_onnx_info

from .gate import ExportResult, Reference, gate, move, pending
from .options import ExportOptions
from .parity import write_report
from .tensorrt_build import (
    BuildSettings,
    Flavour,
    Profile,
    build_engine,
    load_flavour,
    plan_precision,
)


def export_engine(
    onnx_path: Path, out: Path, options: ExportOptions, flavour: Flavour,
    reference: Reference | None, seconds: dict, checkpoint: str | None,
) -> ExportResult:  # fmt: skip
    """Build ``out`` from ``onnx_path`` under a pending name and gate it on ``flavour.gpu``
    (the GPU it was loaded for) when there is one to run it on; ``reference`` is None when the
    caller found no GPU to check it on. Without a GPU the plan takes its name unchecked (the
    ONNX file it was compiled from was checked)."""
    info = read_onnx_info(onnx_path)
    settings = BuildSettings(
        flavour, profile_for(info, options), precision=options.precision,
        workspace_mb=options.workspace_mb, timing_cache=options.timing_cache,
        compute_capabilities=options.compute_capabilities, checkpoint=checkpoint,
    )  # fmt: skip
    with pending(out) as candidate:
        start = time.perf_counter()
        build_engine(onnx_path, candidate, settings, info)
        seconds["build_engine"] = time.perf_counter() - start
        elsewhere = None if reference is None else _not_for_this_gpu(flavour, candidate)
        if reference is None or flavour.gpu is None or elsewhere:
            move(candidate, out)
            why = elsewhere or "no CUDA GPU here"
            note = (f"engine parity not checked: {why}; {onnx_path.name}, the graph it was "
                    "compiled from, is what was checked")  # fmt: skip
            report = write_report(out, None, file=str(out), onnx=str(onnx_path), note=note,
                                  seconds=seconds)  # fmt: skip
            return ExportResult(out, None, None, seconds, note, report)
        from maskdepth.runtime.runners.tensorrt import TensorRTRunner

        runner = TensorRTRunner(candidate, device=flavour.gpu.index)
        precision = engine_info(candidate).precision  # the plan's (tensorrt 10.x: FP16 flag)
        return gate(candidate, out, runner, reference, precision, options, seconds)


def _not_for_this_gpu(flavour: Flavour, plan: Path) -> str | None:
    """Why a plan built ahead of time for other GPUs (TensorRT-RTX ``--compute-capability``)
    cannot be checked on this one, by the target its sidecar records (what the runner checks);
    None when it can (or there is no GPU here)."""
    if flavour.gpu is None:
        return None
    target = read_sidecar(plan)["target"]
    problem = target_problem(flavour.name, target, flavour.gpu.compute_capability)
    return f"the plan cannot run on this GPU ({problem})" if problem else None


def check_engine_request(options: ExportOptions, flavour: Flavour) -> None:
    """Refuse in one line, before any slow work, a ``--precision`` that the ``--from`` file's
    plan cannot have with this flavour (TensorRT-RTX compiles the precision the graph holds;
    tensorrt 10.x also makes fp16 from fp32 with its FP16 flag)."""
    if options.from_onnx is not None:
        source = Path(options.from_onnx)
        plan_precision(read_onnx_info(source).precision, options.precision, flavour, source)


def profile_for(info: ModelInfo, options: ExportOptions) -> Profile:
    if options.dynamic and "height" not in info.dynamic:
        raise MaskDepthError(
            "--dynamic: the ONNX file has a fixed height and width; export it with --dynamic"
        )
    return model_profile(info, options.dynamic or "height" in info.dynamic, options.max_batch)


def model_profile(info: ModelInfo, dynamic: bool, max_batch: int) -> Profile:
    """The profile of a plan of ``info``'s graph: a refined model's full-resolution range
    (RefineInfo's min_size, the training resolution, max_size) whatever ``dynamic`` says;
    otherwise ``--size`` alone or, ``dynamic``, from one stride to twice it."""
    if info.refine is not None:
        refine = info.refine
        return Profile.for_range(info.size, refine.min_size, refine.max_size, max_batch)
    return Profile.for_export(info.size, dynamic, max_batch, info.stride)


def build_engine_from_onnx(onnx_path: Path, out: Path, max_batch: int = 8) -> ExportResult:
    """An engine from an exported ONNX file with default settings (for benchmarks and the demo);
    parity is not checked here."""
    flavour = load_flavour()
    start = time.perf_counter()
    info = read_onnx_info(onnx_path)
    profile = model_profile(info, False, max_batch)
    build_engine(onnx_path, out, BuildSettings(flavour, profile, progress=False), info)
    seconds = {"build_engine": time.perf_counter() - start}
    return ExportResult(out, None, None, seconds, f"{flavour.name} {flavour.version}")
