# long file: one build over one untyped API (parse, check, configure, build, write).
"""ONNX -> TensorRT plan, for two flavours of the same Python API:

- ``tensorrt`` (10.x, 11.x): data-centre GPUs and Jetson; builds on, and for, the GPU it runs on.
- ``tensorrt_rtx`` (TensorRT for RTX, ``pip install tensorrt-rtx-cu12``): builds ahead of time on
  any machine, even without a GPU, for chosen compute capabilities, and compiles the kernels just
  in time when the plan is loaded.

Precision lives in the ONNX graph: the network is strongly typed and the
builder compiles the fp32, fp16 or INT8 QDQ graph it is given. The one exception: tensorrt 10.x
may build an fp32 graph with the (deprecated) FP16 builder flag when asked for fp16.

Measured with tensorrt-rtx 1.7.1 on 2 CPU cores, no GPU, u2netp-md at 64x64 and 224x224:
fp32 ~1.2 s, fp16 ~1.2 s, INT8 QDQ ~5-6 s, as fast for one compute capability as for all six
(the kernels are compiled at load). Adding 7.5 (Turing) makes the plan ~7 % (fp32) to ~30 %
(INT8) larger, and NVIDIA advises separate Turing plans because portable plans that include it
can run slower, so 7.5 is opt-in (``compute_capabilities=["7.5"]``).
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from tqdm import tqdm

from maskdepth.runtime.engine_sidecar import FLAVOURS, make_sidecar, sidecar_path, write_sidecar
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.model_info import INPUT_NAMES, ModelInfo, read_onnx_info
from maskdepth.runtime.runners.cuda import GpuInfo, current_gpu, gpu_info
from maskdepth.runtime.runners.tensorrt import FlavourLogger, flavour_logger

from .targets import (  # noqa: F401 (the RTX targets: re-exported for callers)
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
    Profile,
    check_compute_capabilities,
)

INSTALL_HINT = (
    "pip install tensorrt-rtx-cu12 (builds on any machine, for RTX-class GPUs) or "
    "pip install tensorrt (builds on the target GPU)"
)


@dataclass(frozen=True)
class Flavour:
    """An imported TensorRT flavour, and the GPU that ``tensorrt`` builds for."""

    name: str
    trt: ModuleType
    gpu: GpuInfo | None = None

    @property
    def version(self) -> str:
        return self.trt.__version__

    def target(self, compute_capabilities: Sequence[str] | None = None) -> dict:
        """The sidecar's ``target``: the compute capabilities (rtx) or this GPU (tensorrt)."""
        if self.name == "tensorrt_rtx":
            return {"compute_capabilities": list(check_compute_capabilities(compute_capabilities))}
        gpu = self.build_gpu()
        return {"gpu": gpu.name, "compute_capability": gpu.compute_capability}

    def build_gpu(self) -> GpuInfo:
        """The GPU a ``tensorrt`` plan is built on and for (:func:`load_flavour` finds it)."""
        if self.gpu is None:
            raise MaskDepthError(
                f"{self.name} builds engines on the GPU they are for, and this flavour was "
                "loaded without one"
            )
        return self.gpu


def load_flavour(name: str = "auto", device: int = 0) -> Flavour:
    """Import a TensorRT flavour, or say in one line why none can build here.

    ``auto``: ``tensorrt`` when it is installed and a CUDA GPU is present (a plan tuned for that
    GPU), else ``tensorrt_rtx``.
    """
    if name not in ("auto", *FLAVOURS):
        raise MaskDepthError(f"TensorRT flavour {name!r}: expected auto, {', '.join(FLAVOURS)}")
    modules = {n: _try_import(n) for n in FLAVOURS if name in ("auto", n)}
    gpu = gpu_info(device)
    trt, rtx = modules.get("tensorrt"), modules.get("tensorrt_rtx")
    if trt and gpu:
        return Flavour("tensorrt", trt, gpu)
    if rtx:
        return Flavour("tensorrt_rtx", rtx, gpu)
    if trt:
        raise MaskDepthError(
            f"tensorrt builds engines on the GPU they are for, and this machine has no CUDA GPU "
            f"{device}: build on the target machine, or ahead of time with tensorrt-rtx-cu12"
        )
    wanted = "TensorRT" if name == "auto" else name
    raise MissingDependencyError(f"building engines needs {wanted}, not installed: {INSTALL_HINT}")


def _try_import(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except (ImportError, OSError):  # OSError: the wheel's shared libraries do not load
        return None


@dataclass(frozen=True)
class BuildSettings:
    """Everything a TensorRT build is asked for, passed whole through the build steps."""

    flavour: Flavour
    profile: Profile
    precision: str | None = None  # None: what the ONNX graph holds
    workspace_mb: int | None = None
    timing_cache: str | os.PathLike | None = None  # tensorrt only: loaded, then saved back
    compute_capabilities: Sequence[str] | None = None  # tensorrt_rtx only; None: the default
    checkpoint: str | os.PathLike | None = None  # recorded in the sidecar
    progress: bool = True  # a tqdm bar over the build's phases


def plan_precision(
    graph_precision: str, requested: str | None, flavour: Flavour, source: str | os.PathLike
) -> tuple[str, bool]:
    """(the plan's precision, whether the FP16 builder flag makes it): the graph's precision,
    or fp16 from an fp32 graph through tensorrt 10.x's builder flag."""
    if requested in (None, graph_precision):
        return graph_precision, False
    flag = flavour.name == "tensorrt" and hasattr(flavour.trt.BuilderFlag, "FP16")
    if requested == "fp16" and graph_precision == "fp32" and flag:
        return "fp16", True
    if requested not in ("fp32", "fp16", "int8"):
        raise MaskDepthError(f"--precision {requested}: expected fp32, fp16 or int8")
    raise MaskDepthError(
        f"--precision {requested}: {source} holds an {graph_precision} graph, and "
        f"{flavour.name} {flavour.version} builds the precision its graph holds; export an "
        f"{requested} ONNX first (maskdepth export CHECKPOINT --format onnx-{requested}) and "
        "build from it with --from"
    )


def _logger(flavour: Flavour) -> FlavourLogger:
    return flavour_logger(flavour.trt, flavour.name)


def _failure(logger: FlavourLogger, what: str) -> MaskDepthError:
    reason = "; ".join(logger.errors[-3:]) or "no reason given"
    return MaskDepthError(f"{what}: {reason}")


def network_from_onnx(
    builder, onnx_path: str | os.PathLike, flavour: Flavour, strongly_typed: bool = True
) -> tuple:
    """Parse ``onnx_path`` into a new network (strongly typed where the API has the flag).

    Returns ``(network, parser)``: the parser owns the weights, so keep it until the build ends.
    A refused graph raises one line naming each node the parser refused.
    """
    trt, logger = flavour.trt, _logger(flavour)
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(flag) if strongly_typed and flag is not None else 0)
    if network is None:
        raise _failure(logger, f"{flavour.name}: cannot create a network definition")
    parser = trt.OnnxParser(network, logger)
    if parser is None:
        raise _failure(logger, f"{flavour.name}: cannot create an ONNX parser")
    if not parser.parse_from_file(str(onnx_path)):
        raise MaskDepthError(_parser_errors(parser, logger, onnx_path))
    return network, parser


def _parser_errors(parser, logger: FlavourLogger, onnx_path: str | os.PathLike) -> str:
    refused, operators = [], set()
    for index in range(parser.num_errors):
        error = parser.get_error(index)
        where = f"node {error.node()}" if error.node() >= 0 else "graph"
        where += f" {error.node_name()!r}" if error.node_name() else ""
        where += f" ({error.node_operator()})" if error.node_operator() else ""
        refused.append(f"{where}: {' '.join(error.desc().split())}")
        operators.add(error.node_operator())
    message = f"{onnx_path}: TensorRT's ONNX parser refused it: "
    message += "; ".join(refused or logger.errors[-3:] or ["no reason given"])
    if operators & {"QuantizeLinear", "DequantizeLinear"}:
        message += (
            " (TensorRT takes INT8 graphs with symmetric int8 activations and weights and "
            "unquantized biases: export with --format onnx-int8 --int8-target tensorrt)"
        )
    return message


AXES = ("batch", "channels", "height", "width")


def check_network_inputs(network, profile: Profile, source: str | os.PathLike) -> None:
    """Every network input is one the profile shapes, and its fixed sides are the profile's."""
    shapes = profile.shapes()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        if tensor.name not in shapes:
            raise MaskDepthError(
                f"{source}: input {tensor.name!r}: expected inputs {', '.join(INPUT_NAMES)}"
            )
        for axis, dim in enumerate(tensor.shape):
            low, high = shapes[tensor.name]["min"][axis], shapes[tensor.name]["max"][axis]
            if dim >= 0 and (low, high) != (dim, dim):
                hint = "a dynamic batch" if axis == 0 else "--dynamic or at this --size"
                raise MaskDepthError(
                    f"{source}: input {tensor.name!r} has a fixed {AXES[axis]} of {dim} and the "
                    f"engine profile asks for {low} to {high}; export the ONNX with {hint}, or "
                    f"build for its {AXES[axis]}"
                )


def build_plan(
    onnx_path: str | os.PathLike, settings: BuildSettings, info: ModelInfo | None = None
) -> bytes:
    """Build a serialized plan from ``onnx_path`` as ``settings`` say (``info``: the file's
    metadata when the caller has read it already).

    ``timing_cache`` (tensorrt only) is loaded when it exists and saved back after the build,
    so later builds reuse the measured tactics. ``compute_capabilities`` (tensorrt_rtx only):
    default :data:`RTX_DEFAULT_COMPUTE_CAPABILITIES`.
    """
    path, flavour = Path(onnx_path), settings.flavour
    info = info or read_onnx_info(path)
    precision, fp16_flag = plan_precision(info.precision, settings.precision, flavour, path)
    logger = _logger(flavour)
    logger.errors.clear()
    builder = flavour.trt.Builder(logger)
    if builder is None:
        raise _failure(logger, f"{flavour.name}: cannot create a builder")
    network, parser = network_from_onnx(builder, path, flavour, strongly_typed=not fp16_flag)
    check_network_inputs(network, settings.profile, path)
    config = _builder_config(builder, settings)
    set_precision_flags(config, flavour, precision, fp16_flag)
    cache = _attach_timing_cache(config, flavour, settings.timing_cache)
    monitor = _progress_monitor(flavour, settings.progress)
    if monitor is not None:
        config.progress_monitor = monitor
    try:
        plan = builder.build_serialized_network(network, config)
    finally:
        if monitor is not None:
            monitor.close()
    if plan is None or not plan.nbytes:
        raise _failure(logger, f"{path}: {flavour.name} {flavour.version} could not build a plan")
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache, bytes(config.get_timing_cache().serialize()))
    del parser  # only now: the network's weights live in the parser until the build is done
    return bytes(plan)


def set_precision_flags(config, flavour: Flavour, precision: str, fp16_flag: bool) -> None:
    """The builder flags of the plan's precision. fp32 means fp32: TF32 (on by default, the
    tensor-core math of Ampere and newer, 10 mantissa bits) is cleared, so an fp32 plan meets
    the gate's fp32 bound on the GPU as on the CPU (fp16 plans are the fast ones). tensorrt
    10.x's fp16 from an fp32 graph: the FP16 flag (:func:`plan_precision`)."""
    trt = flavour.trt
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)
    if fp16_flag:
        config.set_flag(trt.BuilderFlag.FP16)


def _builder_config(builder, settings: BuildSettings):
    flavour, profile, compute_capabilities = (
        settings.flavour, settings.profile, settings.compute_capabilities
    )  # fmt: skip
    trt, logger = flavour.trt, _logger(flavour)
    config = builder.create_builder_config()
    if config is None:
        raise _failure(logger, f"{flavour.name}: cannot create a builder config")
    if settings.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(settings.workspace_mb) << 20)
    if flavour.name == "tensorrt_rtx":
        wanted = check_compute_capabilities(compute_capabilities)
        config.num_compute_capabilities = len(wanted)
        for index, cc in enumerate(wanted):
            value = getattr(trt.ComputeCapability, "SM" + cc.replace(".", ""))
            if not config.set_compute_capability(value, index):
                raise _failure(logger, f"{flavour.name}: compute capability {cc} refused")
    elif compute_capabilities:
        gpu = flavour.build_gpu()
        raise MaskDepthError(
            f"--compute-capability: tensorrt builds for the GPU it runs on ({gpu.name}, "
            f"{gpu.compute_capability}); choosing targets needs tensorrt_rtx"
        )
    optimisation = builder.create_optimization_profile()
    for name, shapes in profile.shapes().items():
        optimisation.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
    if not optimisation or config.add_optimization_profile(optimisation) < 0:
        raise _failure(logger, f"engine profile {profile.shapes()} refused")
    return config


def _attach_timing_cache(config, flavour: Flavour, path: str | os.PathLike | None) -> Path | None:
    """Load ``path`` into the config (an empty cache when it does not exist yet)."""
    if path is None:
        return None
    if flavour.name == "tensorrt_rtx":
        # TensorRT-RTX does no autotuning: its timing cache calls are no-ops (deprecated since
        # 1.2) that would also query a GPU at build time. Its JIT kernels are cached at run time.
        warnings.warn(
            f"--timing-cache {path}: not used, TensorRT-RTX has no timing cache", stacklevel=3
        )
        return None
    path = Path(path)
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    if cache is None or not config.set_timing_cache(cache, False):
        warnings.warn(
            f"--timing-cache {path}: TensorRT refused it (another TensorRT version or GPU?); "
            "starting a new one",
            stacklevel=3,
        )
        if not config.set_timing_cache(config.create_timing_cache(b""), False):
            raise _failure(_logger(flavour), f"--timing-cache {path}: cannot attach a timing cache")
    return path


def _progress_monitor(flavour: Flavour, enabled: bool):
    """A tqdm bar over the build's top-level phases, the current sub-phase beside it; None
    when disabled or the flavour has no IProgressMonitor (TensorRT < 10)."""
    trt = flavour.trt
    if not enabled or not hasattr(trt, "IProgressMonitor"):
        return None
    # The base class comes from the flavour's module, imported at run time, and TensorRT has no
    # type information: to mypy it is Any (the subclass's own code is still checked).
    base: Any = trt.IProgressMonitor

    class Monitor(base):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bar: tqdm | None = None
            self.top: str | None = None  # the top-level phase the bar counts the steps of

        def phase_start(self, phase: str, parent: str | None, steps: int) -> None:
            if parent is None and self.bar is None:
                self.top = phase
                self.bar = tqdm(total=steps, desc=f"build engine ({flavour.name})", unit="phase")
            elif self.bar is not None:
                self.bar.set_postfix_str(phase[:40], refresh=False)

        def step_complete(self, phase: str, step: int) -> bool:
            if phase == self.top and self.bar is not None:
                self.bar.update(1)
            return True

        def phase_finish(self, phase: str) -> None:
            if phase == self.top and self.bar is not None:
                self.bar.update(self.bar.total - self.bar.n)  # TensorRT skips reporting some
                self.close()

        def close(self) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return Monitor()


def write_plan_with_sidecar(
    plan: bytes,
    engine_path: str | os.PathLike,
    onnx_path: str | os.PathLike,
    settings: BuildSettings,
    info: ModelInfo,
) -> Path:
    """Write ``plan`` to ``engine_path`` and its sidecar beside it, each under a temporary name
    then renamed; an older sidecar goes first, so it never describes the new plan. ``info``:
    the ONNX file's metadata, copied into the sidecar."""
    sidecar = make_sidecar(
        flavour=settings.flavour.name,
        flavour_version=settings.flavour.version,
        target=settings.flavour.target(settings.compute_capabilities),
        profile=settings.profile.shapes(),
        precision=settings.precision or info.precision,
        onnx_path=onnx_path,
        plan=plan,
        info=info,
        checkpoint=settings.checkpoint,
    )
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar_path(engine_path).unlink(missing_ok=True)
    write_bytes_atomic(engine_path, plan)
    write_sidecar(engine_path, sidecar)
    return engine_path


def build_engine(
    onnx_path: str | os.PathLike,
    engine_path: str | os.PathLike,
    settings: BuildSettings,
    info: ModelInfo | None = None,
) -> Path:
    """:func:`build_plan` then :func:`write_plan_with_sidecar`: ``X.engine`` + ``X.engine.json``.
    ``info``: the ONNX file's metadata when the caller has read it already."""
    info = info or read_onnx_info(onnx_path)
    precision = plan_precision(info.precision, settings.precision, settings.flavour, onnx_path)[0]
    settings = replace(settings, precision=precision)
    gpu = settings.flavour.gpu if settings.flavour.name == "tensorrt" else None
    with current_gpu(gpu.index if gpu else 0):  # tensorrt builds on the current device
        plan = build_plan(onnx_path, settings, info)
    return write_plan_with_sidecar(plan, engine_path, onnx_path, settings, info)
