"""`maskdepth export`: checkpoint -> ONNX fp32 / fp16 / INT8 or a TensorRT engine, each file
checked against the PyTorch fp32 model before it gets its final name.

Everything that can be refused (checkpoint, size, opset, output path, TensorRT) is checked
before any slow work. A file over tolerance is kept as ``NAME.parity-failed.EXT``; the final
name only ever holds a file that passed.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from maskdepth import __version__
from maskdepth.runtime.compare import Comparison
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.preprocess import Preprocessing
from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

from .arguments import FORMATS, MIN_PARITY_SAMPLES, ExportOptions
from .onnx_fp32 import check_opset, check_size, export_graph, save_model
from .parity import Recorded, compare_runner, reference_runner, tolerance_for, write_report
from .samples import HeldOut, held_out_samples

PRECISION_OF = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}


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


def export(checkpoint: str | Path, out: str | Path, options: ExportOptions) -> ExportResult:
    """Export ``checkpoint`` as ``options.format`` to ``out``, gated by parity."""
    if options.format not in FORMATS:
        raise MaskDepthError(f"--format {options.format}: expected one of {', '.join(FORMATS)}")
    out = check_output(Path(out))
    flavour = None
    if options.format == "engine":
        from .tensorrt_build import load_flavour

        flavour = load_flavour()  # no TensorRT (or no GPU for it): one line, before any work
    ckpt = load_checkpoint(checkpoint)
    model, trained = model_from_checkpoint(ckpt, use_ema=options.use_ema)
    if options.from_onnx:
        from .tensorrt_build import onnx_model_info

        info = onnx_model_info(options.from_onnx)
        if info.model != ckpt["model"]["name"]:
            raise MaskDepthError(
                f"--from {options.from_onnx}: holds {info.model}, but the checkpoint holds "
                f"{ckpt['model']['name']}"
            )
    else:
        info = ModelInfo(
            model=ckpt["model"]["name"],
            preprocessing=Preprocessing(
                size=check_size(options.size or trained.size), mean=trained.mean, std=trained.std
            ),
            depth_scale_m=depth_scale(ckpt),
            manifest_hash=(ckpt.get("data") or {}).get("manifest_hash"),
            dynamic=("batch", "height", "width") if options.dynamic else ("batch",),
            version=__version__,
        )
    check_opset(options.opset)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    precision = PRECISION_OF.get(options.format, options.precision or "fp16")
    calibrating = precision == "int8" and not options.from_onnx
    parity, calibration, reference = None, None, None
    if _checks_parity_here(options):
        parity, calibration = _samples(ckpt, info, options, calibrating)
        reference = reference_runner(model, parity)
        seconds["samples"] = time.perf_counter() - start
    if options.format != "engine":
        assert parity is not None and reference is not None  # _checks_parity_here: always
        return export_onnx(
            model, info, out, precision, options, parity, calibration, reference, seconds
        )
    from .engine import export_engine

    assert flavour is not None  # loaded first thing for --format engine
    onnx_path = options.from_onnx
    if onnx_path is None:  # export the graph the engine compiles, gated like any ONNX export
        assert parity is not None and reference is not None  # _checks_parity_here: no --from
        onnx_path = out.with_name(f"{out.stem}.{precision}.onnx")
        made = export_onnx(
            model, info, onnx_path, precision, options, parity, calibration, reference, seconds
        )
        if not made.passed:
            return made
    return export_engine(
        Path(onnx_path), out, options, flavour, parity, reference, seconds, str(checkpoint)
    )


def export_onnx(
    model,
    info: ModelInfo,
    out: Path,
    precision: str,
    options: ExportOptions,
    parity: HeldOut,
    calibration: HeldOut | None,
    reference: Recorded,
    seconds: dict,
) -> ExportResult:
    """Make the ONNX graph at ``precision``, then gate it and give it its name."""
    start = time.perf_counter()
    graph = export_graph(model, info, options.opset)
    seconds["export_fp32"] = time.perf_counter() - start
    if precision != "fp32":
        start = time.perf_counter()
        graph = convert(graph, info, precision, options, calibration)
        seconds[f"convert_{precision}"] = time.perf_counter() - start
    pending = out.with_name(f".{out.name}.pending")
    try:
        save_model(graph, pending)
        return gate_onnx(pending, out, precision, options, parity, reference, seconds)
    finally:
        pending.unlink(missing_ok=True)


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
    from .onnx_int8 import AUTO_EXCLUDE, to_int8

    if calibration is None:
        raise MaskDepthError("an INT8 graph is calibrated on held-out samples, and none were given")
    feeds = (batch.feed for batch in calibration.batches(1))
    exclude = AUTO_EXCLUDE if options.int8_exclude is None else options.int8_exclude
    return to_int8(
        graph, info, feeds, len(calibration), options.calib_method, options.int8_target, exclude
    )


def gate_onnx(
    pending: Path,
    out: Path,
    precision: str,
    options: ExportOptions,
    parity: HeldOut,
    reference: Recorded,
    seconds: dict,
) -> ExportResult:
    """Compare ``pending`` with the reference through onnxruntime; rename it to ``out`` when it
    passes, to the failed name when not."""
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

    start = time.perf_counter()
    tolerance = tolerance_for(precision, options.tolerance)
    comparison = compare_runner(
        OnnxRuntimeRunner(pending, device=options.device), parity, reference, precision, tolerance
    )
    seconds["parity"] = time.perf_counter() - start
    final = out if comparison else failed_name(out)
    os.replace(pending, final)
    if comparison:
        failed_name(out).unlink(missing_ok=True)  # an older failure of the same export
    report = write_report(
        out,
        comparison,
        file=str(final),
        samples=parity.description,
        seconds=seconds,
        int8_target=_int8_target(precision, options),
        **_float_blocks(precision, options),
    )
    note = INT8_FOR_TENSORRT_NOTE if _int8_target(precision, options) == "tensorrt" else ""
    return ExportResult(final, bool(comparison), comparison, seconds, note, parity_report=report)


# The default INT8 file is for TensorRT (where it pays); said on every such export, since the
# CPU is where a user tries it first. Figures: benchmarks/runtime_latency.py, 224 px, batch 1,
# 2 cores, AMD EPYC (README, Export).
INT8_FOR_TENSORRT_NOTE = (
    "note: this INT8 file is for TensorRT (Q/DQ pairs around each convolution); onnxruntime on "
    "the CPU runs it about as fast as fp32 (0.92x measured). For the CPU, export with "
    "--int8-target cpu (0.44x fp32)."
)


def _checks_parity_here(options: ExportOptions) -> bool:
    """Everything but an engine built from a given ONNX file on a machine without CUDA."""
    if options.format != "engine" or options.from_onnx is None:
        return True
    from maskdepth.runtime.runners.cuda import gpu_info

    return gpu_info() is not None


def _float_blocks(precision: str, options: ExportOptions) -> dict:
    """For the parity report: which blocks an INT8 file keeps in float, and why."""
    from .onnx_int8 import AUTO_EXCLUDE

    if precision != "int8":
        return {}
    chosen = options.int8_exclude is not None
    blocks = options.int8_exclude if chosen else AUTO_EXCLUDE
    why = "--int8-exclude" if chosen else "--int8-exclude auto: the sensitivity sweep's choice"
    return {"float_blocks": list(blocks or ()), "float_blocks_why": why}


def _int8_target(precision: str, options: ExportOptions) -> str | None:
    return options.int8_target if precision == "int8" else None


def _samples(
    ckpt: dict, info: ModelInfo, options: ExportOptions, calibrating: bool
) -> tuple[HeldOut, HeldOut | None]:
    """Disjoint parity and calibration samples (parity first); when the held-out pool is too
    small for both, calibration reuses the parity samples, and says so."""
    wanted = options.parity_count + (options.calib_count if calibrating else 0)
    pool = held_out_samples(ckpt, info.preprocessing, wanted, options.data)
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


def depth_scale(ckpt: dict) -> float | None:
    """Metres per depth unit of the training data, when it has one."""
    record = ckpt.get("data") or {}
    if record.get("spec") == "synth":
        from maskdepth.train.data.synth import DEPTH_SCALE_M

        return DEPTH_SCALE_M
    spec = record.get("spec")
    if spec and Path(spec).is_dir():
        from maskdepth.train.data.manifest import read_manifest

        try:
            scale = ((read_manifest(spec) or {}).get("depth") or {}).get("scale_m")
        except MaskDepthError:
            return None
        return float(scale) if scale else None
    return None


def failed_name(out: Path) -> Path:
    return out.with_name(f"{out.stem}.parity-failed{out.suffix}")


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
