"""`maskdepth export`: checkpoint -> ONNX fp32 / fp16 / INT8 or a TensorRT engine, each file
checked against the PyTorch fp32 model before it gets its final name.

Everything that can be refused (checkpoint, size, opset, output path, TensorRT) is checked
before any slow work. A file over tolerance is kept as ``NAME.parity-failed.EXT``; the final
name only ever holds a file that passed.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

import onnx
from torch import nn

from maskdepth import __version__
from maskdepth.runtime.engine_sidecar import engine_info, sidecar_path
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.model_info import ModelInfo, read_onnx_info
from maskdepth.runtime.runners.cuda import parse_device
from maskdepth.train.checkpoint import checkpoint_config, load_checkpoint, model_from_checkpoint

from .engine import check_engine_request, export_engine
from .gate import ExportResult, Reference, failed_name, gate, pending
from .onnx_fp32 import check_opset, export_graph, save_model
from .options import (
    AUTO_EXCLUDE,
    AUTO_EXCLUDE_REFINED,
    FORMATS,
    MIN_PARITY_SAMPLES,
    ExportOptions,
)
from .parity import reference_runner
from .samples import HeldOut, held_out_samples
from .triton import TritonSettings

__all__ = ["ExportOptions", "ExportResult", "export", "failed_name", "format_result"]


def export(checkpoint: str | Path, out: str | Path, options: ExportOptions) -> ExportResult:
    """Export ``checkpoint`` as ``options.format`` to ``out``, gated by parity."""
    if options.format not in FORMATS:
        raise MaskDepthError(f"--format {options.format}: expected one of {', '.join(FORMATS)}")
    if options.format == "triton":
        return export_triton(checkpoint, Path(out), options)
    out = check_output(Path(out))
    flavour = None
    if options.format == "engine":
        from .tensorrt_build import load_flavour

        # no TensorRT (or no GPU for it): one line, before any work
        flavour = load_flavour(device=parse_device(options.device)[1])
        check_engine_request(options, flavour)
    ckpt = load_checkpoint(checkpoint)
    model, _ = model_from_checkpoint(ckpt, use_ema=options.use_ema)
    info = model_info(ckpt, options)
    check_opset(options.opset)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    reference, calibration = None, None
    if _checks_parity_here(options):
        calibrating = options.precision_of_graph == "int8" and not options.from_onnx
        parity, calibration = _samples(ckpt, info, options, calibrating)
        reference = Reference(parity, reference_runner(model, parity))
        seconds["samples"] = time.perf_counter() - start
    if options.format != "engine":
        assert reference is not None  # _checks_parity_here: always
        return export_onnx(model, info, out, options, reference, calibration, seconds)
    assert flavour is not None  # loaded first thing for --format engine
    onnx_path = options.from_onnx
    if onnx_path is None:  # export the graph the engine compiles, gated like any ONNX export
        assert reference is not None  # _checks_parity_here: no --from
        onnx_path = out.with_name(f"{out.stem}.{options.precision_of_graph}.onnx")
        made = export_onnx(model, info, onnx_path, options, reference, calibration, seconds)
        if not made.passed:
            return made
    return export_engine(
        Path(onnx_path), out, options, flavour, reference, seconds, str(checkpoint)
    )


# The graph a Triton network is exported as, by --precision: onnxruntime's TensorRT accelerator
# makes fp16 from an fp32 graph itself and runs INT8 from a Q/DQ graph; the python network runs
# the graph of that precision; a plan is compiled (--format engine) at that precision.
TRITON_GRAPHS = {"onnxruntime": {"fp32": "onnx", "fp16": "onnx", "int8": "onnx-int8"},
                 "python": {"fp32": "onnx", "fp16": "onnx-fp16", "int8": "onnx-int8"}}  # fmt: skip


def export_triton(checkpoint: str | Path, out: Path, options: ExportOptions) -> ExportResult:
    """A Triton repository (:mod:`.triton`) at ``out``: its network file exported and gated like
    any other, then the rest written around it, all under ``.OUT.partial`` until it passed
    (``OUT.parity-failed`` when it did not)."""
    from .triton import check_repository_out, network_path, write_repository

    out = check_repository_out(out)
    network = options.triton_network
    precision = options.precision or ("fp16" if network == "tensorrt" else "fp32")
    settings = TritonSettings(network, options.max_batch, options.instances, precision)
    flavour = None
    if network == "tensorrt":  # the TensorRT (and GPU) the plan is checked against, first
        from .tensorrt_build import load_flavour

        try:
            flavour = load_flavour("tensorrt", device=parse_device(options.device)[1])
        except (MaskDepthError, MissingDependencyError) as exc:
            raise type(exc)(
                "--triton-network tensorrt: Triton runs plans that tensorrt built on the "
                f"server's GPU, so the plan is built here with tensorrt ({exc})"
            ) from None
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    target = network_path(staging, network)
    target.parent.mkdir(parents=True)
    try:
        made, info = _triton_network(checkpoint, target, options, settings)
        if made.passed is False:
            failed = out.with_name(f"{out.name}.parity-failed")
            shutil.rmtree(failed, ignore_errors=True)
            os.replace(staging, failed)
            made.path = failed / made.path.relative_to(staging)
            return made
        if flavour is not None:
            from .triton import check_plan

            check_plan(target, settings.max_batch, flavour.version, flavour.gpu)
        write_repository(staging, info, settings)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    made.path = out / made.path.relative_to(staging)
    if made.parity_report is not None:
        made.parity_report = out / made.parity_report.relative_to(staging)
    made.note = "\n".join(filter(None, [made.note, f"Triton repository {out} ({network}): "
                                         f"tritonserver --model-repository {out}; see "
                                         f"{out / 'README.md'}"]))  # fmt: skip
    return made


def _triton_network(
    checkpoint: str | Path, target: Path, options: ExportOptions, settings: TritonSettings
) -> tuple[ExportResult, ModelInfo]:
    """The network file at ``target``: exported (and gated) at the settings' precision, or
    ``--from``'s file copied (an ONNX file, or for tensorrt a plan with its sidecar)."""
    given = options.from_onnx
    plan_given = given is not None and Path(given).suffix.lower() in (".engine", ".plan")
    if given is not None and (plan_given or settings.network != "tensorrt"):
        if plan_given != (settings.network == "tensorrt"):
            raise MaskDepthError(
                f"--from {given}: --triton-network {settings.network} serves "
                f"{'a TensorRT plan' if settings.network == 'tensorrt' else 'an ONNX file'}"
            )
        ckpt = None if plan_given else load_checkpoint(checkpoint)
        info = engine_info(given) if ckpt is None else model_info(ckpt, options)
        shutil.copyfile(given, target)
        if plan_given:
            shutil.copyfile(sidecar_path(given), sidecar_path(target))
        note = f"parity not checked: {given} is served as it is"
        return ExportResult(target, None, None, {}, note), info
    fmt = TRITON_GRAPHS.get(settings.network, {}).get(settings.precision, "engine")
    engine = fmt == "engine"  # --from an ONNX file: the plan is built from it
    precision = settings.precision if engine else None
    made = export(checkpoint, target, replace(options, format=fmt, precision=precision))
    reader = engine_info if made.path.suffix == target.suffix == ".plan" else read_onnx_info
    return made, reader(made.path)


def model_info(ckpt: dict, options: ExportOptions) -> ModelInfo:
    """What the exported file says about itself: the checkpoint's model config (never the
    training data) at the export size, or the ``--from`` ONNX file's own."""
    if options.from_onnx:
        info = read_onnx_info(options.from_onnx)
        if info.model != ckpt["model"]["name"]:
            raise MaskDepthError(
                f"--from {options.from_onnx}: holds {info.model}, but the checkpoint holds "
                f"{ckpt['model']['name']}"
            )
        return info
    config = checkpoint_config(ckpt)
    dynamic = options.dynamic or config.refine is not None  # a refined graph: always
    return replace(
        _at_size(config, options.size or config.size),
        precision="fp32",
        dynamic=("batch", "height", "width") if dynamic else ("batch",),
        version=__version__,
    )


def _at_size(config: ModelInfo, size: tuple[int, int]) -> ModelInfo:
    """``config`` at ``--size``: a multiple of the stride, or for a refined model (whose base
    runs at its constant base size) any full-resolution size inside its range."""
    refine = config.refine
    if refine is None:
        return config.with_size(size)
    if not refine.fits(size):
        low, high = refine.min_size, refine.max_size
        raise MaskDepthError(
            f"--size {size[0]} {size[1]}: outside {config.model}'s full-resolution range, "
            f"{low[0]}x{low[1]} to {high[0]}x{high[1]} (height x width)"
        )
    at = (int(size[0]), int(size[1]))
    return replace(config, preprocessing=replace(config.preprocessing, size=at))


def export_onnx(
    model: nn.Module, info: ModelInfo, out: Path, options: ExportOptions, reference: Reference,
    calibration: HeldOut | None, seconds: dict,
) -> ExportResult:  # fmt: skip
    """Make the ONNX graph at the options' precision, then gate it and give it its name."""
    precision = options.precision_of_graph
    start = time.perf_counter()
    graph = export_graph(model, info, options.opset)
    seconds["export_fp32"] = time.perf_counter() - start
    if precision != "fp32":
        start = time.perf_counter()
        graph = convert(graph, info, precision, options, calibration)
        seconds[f"convert_{precision}"] = time.perf_counter() - start
    with pending(out) as path:
        save_model(graph, path)
        return gate_onnx(path, out, options, reference, seconds, _float_blocks(info, options))


def convert(
    graph: onnx.ModelProto,
    info: ModelInfo,
    precision: str,
    options: ExportOptions,
    calibration: HeldOut | None,
) -> onnx.ModelProto:
    if precision == "fp16":
        from .onnx_fp16 import to_fp16

        return to_fp16(graph, info)
    from .onnx_int8 import to_int8

    if calibration is None:
        raise MaskDepthError("an INT8 graph is calibrated on held-out samples, and none were given")
    feeds = (batch.feed for batch in calibration.batches(1))
    exclude = int8_float_blocks(info, options)[0]
    return to_int8(
        graph, info, feeds, len(calibration), options.calib_method, options.int8_target, exclude
    )


def gate_onnx(
    candidate: Path, out: Path, options: ExportOptions, reference: Reference, seconds: dict,
    report: dict,
) -> ExportResult:  # fmt: skip
    """Gate ``candidate`` through onnxruntime (see :func:`gate.gate`); ``report``: more
    entries for the parity report."""
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

    precision = options.precision_of_graph
    target = options.int8_target if precision == "int8" else None
    runner = OnnxRuntimeRunner(candidate, device=options.device, tf32=False)  # fp32 is fp32
    result = gate(
        candidate, out, runner, reference, precision, options, seconds,
        int8_target=target, **report,
    )  # fmt: skip
    result.note = INT8_FOR_TENSORRT_NOTE if target == "tensorrt" else ""
    return result


# The default INT8 file is for TensorRT (where it pays); said on every such export, since the
# CPU is where a user tries it first. No figures here: they are measured per machine by
# benchmarks/scripts/runtime_latency.py and `maskdepth bench` (README, Export, has this one's).
INT8_FOR_TENSORRT_NOTE = (
    "note: this INT8 file is for TensorRT (Q/DQ pairs around each convolution); onnxruntime on "
    "the CPU runs it hardly faster than fp32. For the CPU, export with --int8-target cpu "
    "(`maskdepth bench` measures both here)."
)


def _checks_parity_here(options: ExportOptions) -> bool:
    """Everything but an engine built from a given ONNX file on a machine without CUDA."""
    if options.format != "engine" or options.from_onnx is None:
        return True
    from maskdepth.runtime.runners.cuda import gpu_info

    return gpu_info(parse_device(options.device)[1]) is not None


def int8_float_blocks(info: ModelInfo, options: ExportOptions) -> tuple[tuple[str, ...], str]:
    """The blocks an INT8 file keeps in float, and why: ``--int8-exclude``'s, or auto's (a
    refined model's its own, :data:`AUTO_EXCLUDE_REFINED`)."""
    if options.int8_exclude is not None:
        return options.int8_exclude, "--int8-exclude"
    if info.refine is not None:
        return AUTO_EXCLUDE_REFINED, (
            "--int8-exclude auto: a refined model's refiner and outputs in float"
        )
    return AUTO_EXCLUDE, "--int8-exclude auto: the sensitivity sweep's choice"


def _float_blocks(info: ModelInfo, options: ExportOptions) -> dict:
    """For the parity report: which blocks an INT8 file keeps in float, and why."""
    if options.precision_of_graph != "int8":
        return {}
    blocks, why = int8_float_blocks(info, options)
    return {"float_blocks": list(blocks), "float_blocks_why": why}


def _samples(
    ckpt: dict, info: ModelInfo, options: ExportOptions, calibrating: bool
) -> tuple[HeldOut, HeldOut | None]:
    """Disjoint parity and calibration samples (parity first); when the held-out pool is too
    small for both, calibration reuses the parity samples, and says so."""
    wanted = options.parity_count + (options.calib_count if calibrating else 0)
    pool = held_out_samples(ckpt, info.preprocessing, wanted, options.data)
    print(f"held-out samples: {pool.description}")  # which data decides the verdict
    parity = pool.subset(0, options.parity_count)
    if len(parity) < MIN_PARITY_SAMPLES:
        print(
            f"warning: only {len(parity)} held-out samples for the parity check "
            f"(at least {MIN_PARITY_SAMPLES} recommended)"
        )
    if not calibrating:
        return parity, None
    calibration = pool.subset(options.parity_count, wanted)
    if not len(calibration):
        print(
            "warning: no held-out samples left for calibration; calibrating on the parity samples"
        )
        calibration = parity
    return parity, calibration


def check_output(out: Path) -> Path:
    """Refuse an output path that cannot be written, before any work."""
    if out.is_dir():
        raise MaskDepthError(f"--out {out}: is a folder; give a file name such as model.onnx")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskDepthError(f"--out {out}: cannot create {parent}: {exc.strerror}") from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MaskDepthError(f"--out {out}: {parent} is not writable")
    return out


def format_result(result: ExportResult) -> str:
    """What `maskdepth export` prints: the parity table, the file and where the time went."""
    lines = []
    if result.comparison is not None:
        lines.append(result.comparison.table(f"parity against PyTorch fp32 ({result.path.name})"))
    if result.note:
        lines.append(result.note)
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())
    verdict = {True: "wrote", False: "PARITY FAILED, kept as", None: "wrote (parity not checked)"}
    lines.append(f"{verdict[result.passed]} {result.path} ({result.size_bytes / 1e6:.2f} MB)")
    lines.append(f"time: {timing}")
    if result.parity_report:
        lines.append(f"parity report: {result.parity_report}")
    return "\n".join(lines)
