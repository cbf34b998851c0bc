"""Native TensorRT backend for plans built by ``maskdepth export --format engine``, in either
flavour (``tensorrt`` 10.x/11.x or ``tensorrt_rtx``): the sidecar is checked before the plan is
deserialised, I/O goes by tensor name (``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``) through pinned host buffers and one stream, and the buffers are kept
across calls and grown only when a larger batch comes.

TensorRT is imported when the runner is activated (the flavour the sidecar names), so
``import maskdepth.runtime`` never needs it.
"""

from __future__ import annotations

import importlib
import math
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, NamedTuple, Protocol, SupportsInt

import numpy as np

from maskdepth.runtime.engine_sidecar import (
    INSTALL,
    check_sidecar,
    read_sidecar,
    rebuild_command,
    sha256_of,
)
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.model_info import ModelInfo

from .base import Runner
from .cuda import CudaMemory, gpu_info, open_cuda_memory

AXES = ("batch", "channels", "height", "width")


class FlavourLogger(Protocol):
    """What maskdepth reads of the ``trt.ILogger`` that :func:`flavour_logger` makes."""

    errors: list[str]  # the error messages TensorRT logged, oldest first


_LOGGERS: dict[str, FlavourLogger] = {}


def flavour_logger(trt: ModuleType, flavour: str) -> FlavourLogger:
    """One logger per flavour for the process (TensorRT keeps the first it is given): it keeps
    the errors for our one-line messages (``.errors``) and passes warnings on as Python
    warnings; info and verbose messages are dropped."""
    if flavour not in _LOGGERS:
        # The base class comes from the flavour's module, imported at run time, and TensorRT
        # has no type information: to mypy it is Any (the subclass's own code is still checked).
        base: Any = trt.ILogger

        class Logger(base):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, severity, message: str) -> None:
                if int(severity) <= int(trt.ILogger.Severity.ERROR):
                    self.errors.append(" ".join(message.split()))
                elif int(severity) == int(trt.ILogger.Severity.WARNING):
                    warnings.warn(f"{flavour}: {message.strip()}", stacklevel=2)

        _LOGGERS[flavour] = Logger()
    return _LOGGERS[flavour]


@dataclass
class _Buffer:
    host: np.ndarray  # pinned, uint8
    device: SupportsInt  # pycuda DeviceAllocation or an int address; int() gives the address
    nbytes: int


class _Live(NamedTuple):
    """What an active runner works with (TensorRT has no type information: its objects are Any)."""

    trt: ModuleType
    engine: Any  # ICudaEngine
    context: Any  # IExecutionContext
    memory: CudaMemory


class TensorRTRunner(Runner):
    """A TensorRT plan ``X.engine`` (with its sidecar ``X.engine.json``) on CUDA GPU ``device``."""

    device = "cuda"

    def __init__(self, engine_path: str | os.PathLike, device: int = 0) -> None:
        super().__init__()
        self.path = Path(engine_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such engine file")
        self.sidecar = read_sidecar(self.path)
        self.info = ModelInfo.from_dict(self.sidecar["model"], f"{self.path}.json")
        self.provider = self.name = self.sidecar["flavour"]
        self.device_index = int(device)
        self._lock = threading.Lock()
        # Set by activate(), None before it and after deactivate(). TensorRT has no type
        # information, so its IRuntime, ICudaEngine and IExecutionContext are Any to mypy.
        self._trt: ModuleType | None = None
        self._runtime: Any | None = None
        self._engine: Any | None = None
        self._context: Any | None = None
        self._memory: CudaMemory | None = None
        self._buffers: dict[str, _Buffer] = {}
        self._tensors: dict[str, tuple[bool, np.dtype]] = {}

    # activation: every check before the plan is deserialised

    def activate_impl(self) -> None:
        trt = self._import_flavour()
        gpu = gpu_info(self.device_index)
        check_sidecar(
            self.sidecar,
            trt.__version__,
            gpu.compute_capability if gpu else None,
            gpu_name=gpu.name if gpu else None,
            engine_path=self.path,
            device=self.device_index,
        )
        plan = self._read_plan()
        if gpu is None:
            raise MaskDepthError(
                f"{self.path}: a TensorRT engine runs on a CUDA GPU, and there is no GPU "
                f"{self.device_index} here; on the CPU, use the ONNX file instead"
            )
        self._memory = open_cuda_memory(self.device_index)
        try:
            with self._memory.current():
                self._load(trt, plan)
        except BaseException:
            self.deactivate_impl()
            raise
        self._trt = trt

    def _import_flavour(self) -> ModuleType:
        flavour, built = self.provider, self.sidecar["flavour_version"]
        try:
            return importlib.import_module(flavour)
        except (ImportError, OSError):
            raise MissingDependencyError(
                f"{self.path}: running this engine needs {flavour} {built}, which is not "
                f"installed: pip install {INSTALL[flavour]}=={built}"
            ) from None

    def _read_plan(self) -> bytes:
        plan = self.path.read_bytes()
        if sha256_of(plan) != self.sidecar.get("plan", {}).get("sha256"):
            command = rebuild_command(self.sidecar, self.path, device=self.device_index)
            raise MaskDepthError(
                f"{self.path}: the plan does not match its sidecar (changed since it was "
                f"built); rebuild with: {command}"
            )
        return plan

    def _load(self, trt: ModuleType, plan: bytes) -> None:
        logger = flavour_logger(trt, self.provider)
        logger.errors.clear()
        self._runtime = trt.Runtime(logger)
        if self._runtime is None:
            raise self._failure(logger, "cannot create a TensorRT runtime")
        self._check_validity(trt, self._runtime, plan)
        self._engine = self._runtime.deserialize_cuda_engine(plan)
        if self._engine is None:
            raise self._failure(logger, "cannot deserialise the plan", rebuild=True)
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise self._failure(logger, "cannot create an execution context")
        for index in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(index)
            is_input = self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name)))
            self._tensors[name] = (is_input, dtype)

    def _check_validity(self, trt: ModuleType, runtime: Any, plan: bytes) -> None:
        """TensorRT-RTX reads the plan's header and says whether it can run here."""
        if not hasattr(runtime, "get_engine_validity"):
            return
        validity, diagnostics = runtime.get_engine_validity(plan)
        if validity == trt.EngineValidity.VALID:
            return
        reasons = [
            name.lower().replace("_", " ")
            for name, flag in trt.EngineInvalidityDiagnostics.__members__.items()
            if int(diagnostics) & int(flag)
        ]
        if validity == trt.EngineValidity.SUBOPTIMAL:
            warnings.warn(f"{self.path}: {self.provider} says it may run slowly here", stacklevel=4)
            return
        raise MaskDepthError(
            f"{self.path}: {self.provider} says the plan cannot run here "
            f"({', '.join(reasons) or 'no reason given'}); rebuild with: "
            f"{rebuild_command(self.sidecar, self.path, device=self.device_index)}"
        )

    def _failure(self, logger: FlavourLogger, what: str, rebuild: bool = False) -> MaskDepthError:
        reason = "; ".join(logger.errors[-3:]) or "no reason given"
        hint = (
            f"; rebuild with: {rebuild_command(self.sidecar, self.path, device=self.device_index)}"
            if rebuild
            else ""
        )
        return MaskDepthError(f"{self.path}: {what}: {reason}{hint}")

    # inference

    def _live(self) -> _Live:
        trt, engine, context, memory = self._trt, self._engine, self._context, self._memory
        if trt is None or engine is None or context is None or memory is None:
            raise MaskDepthError(f"{self.path}: call activate() (or use 'with') before inference")
        return _Live(trt, engine, context, memory)

    def get_input_metadata_impl(self) -> dict[str, tuple[np.dtype, tuple]]:
        engine = self._live().engine
        return {
            name: (dtype, self._shape_of(engine, name))
            for name, (is_input, dtype) in self._tensors.items()
            if is_input
        }

    def _shape_of(self, engine: Any, name: str) -> tuple:
        shape = tuple(engine.get_tensor_shape(name))
        return tuple(AXES[axis] if dim < 0 else dim for axis, dim in enumerate(shape))

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        live = self._live()
        with self._lock, live.memory.current():
            for name, (is_input, _) in self._tensors.items():
                if is_input:
                    self._set_input(live, name, feed[name])
            outputs = {
                name: self._bind_output(live, name)
                for name, (is_input, _) in self._tensors.items()
                if not is_input
            }
            if not live.context.execute_async_v3(live.memory.stream_handle):
                raise self._failure(flavour_logger(live.trt, self.provider), "inference failed")
            for name, host in outputs.items():
                live.memory.to_host(host, self._buffers[name].device)
            live.memory.synchronize()
            return {name: host.copy() for name, host in outputs.items()}

    def _set_input(self, live: _Live, name: str, values: np.ndarray) -> None:
        dtype = self._tensors[name][1]
        values = np.ascontiguousarray(values, dtype=dtype)
        if not live.context.set_input_shape(name, values.shape):
            low, _, high = (tuple(s) for s in live.engine.get_tensor_profile_shape(name, 0))
            raise MaskDepthError(
                f"{self.path}: input {name!r} of shape {values.shape}: the engine takes "
                f"{low} to {high}; rebuild it for this shape (--max-batch, --size, --dynamic)"
            )
        buffer = self._buffer(live.memory, name, values.nbytes)
        host = buffer.host[: values.nbytes].view(dtype).reshape(values.shape)
        np.copyto(host, values)
        live.memory.to_device(buffer.device, host)
        self._bind(live.context, name, buffer)

    def _bind_output(self, live: _Live, name: str) -> np.ndarray:
        shape = tuple(live.context.get_tensor_shape(name))
        if any(dim < 0 for dim in shape):
            raise MaskDepthError(f"{self.path}: output {name!r} has no shape yet: {shape}")
        dtype = self._tensors[name][1]
        nbytes = math.prod(shape) * dtype.itemsize
        buffer = self._buffer(live.memory, name, nbytes)
        self._bind(live.context, name, buffer)
        return buffer.host[:nbytes].view(dtype).reshape(shape)

    def _bind(self, context: Any, name: str, buffer: _Buffer) -> None:
        if not context.set_tensor_address(name, int(buffer.device)):
            raise MaskDepthError(f"{self.path}: TensorRT refused the address of {name!r}")

    def _buffer(self, memory: CudaMemory, name: str, nbytes: int) -> _Buffer:
        """The buffers of tensor ``name``, reallocated only when ``nbytes`` outgrows them."""
        buffer = self._buffers.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            if buffer is not None:
                self._free(memory, buffer)
            buffer = _Buffer(memory.pinned(nbytes), memory.device_alloc(nbytes), nbytes)
            self._buffers[name] = buffer
        return buffer

    def _free(self, memory: CudaMemory, buffer: _Buffer) -> None:
        memory.device_free(buffer.device)
        memory.pinned_free(buffer.host)

    def deactivate_impl(self) -> None:
        if self._memory is None:
            return
        with self._memory.current():
            for buffer in self._buffers.values():
                self._free(self._memory, buffer)
            self._buffers.clear()
            self._context = self._engine = self._runtime = None
        self._memory.close()
        self._memory = None
