"""CUDA for the TensorRT builder and runner: which GPU is here (through the driver library with
ctypes, so no CUDA Python package is needed to ask), and device memory, pinned host memory and
one stream through pycuda when importable, else cuda-python (pycuda does not build against
CUDA 13; cuda-python does)."""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np

from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError

DEVICES = ("auto", "cpu", "cuda")  # what every --device accepts, and cuda:N for GPU N
DEVICE_METAVAR = "auto|cpu|cuda[:N]"
EXPECTED_DEVICE = f"expected one of {', '.join(DEVICES)} or cuda:N"
_CC_MAJOR, _CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    compute_capability: str  # "8.6"


def gpu_info(index: int = 0) -> GpuInfo | None:
    """The CUDA GPU ``index`` (after CUDA_VISIBLE_DEVICES), or None when there is no driver or
    no such GPU."""
    driver = _driver()
    if driver is None or driver.cuInit(0) != 0:
        return None
    count, device = ctypes.c_int(0), ctypes.c_int(0)
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or not 0 <= index < count.value:
        return None
    if driver.cuDeviceGet(ctypes.byref(device), index) != 0:
        return None
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    driver.cuDeviceGetName(name, len(name), device)
    driver.cuDeviceGetAttribute(ctypes.byref(major), _CC_MAJOR, device)
    driver.cuDeviceGetAttribute(ctypes.byref(minor), _CC_MINOR, device)
    return GpuInfo(index, name.value.decode(errors="replace"), f"{major.value}.{minor.value}")


def parse_device(choice: str) -> tuple[str, int]:
    """``choice`` as (kind, GPU index): "auto" -> ("auto", 0), "cuda:1" -> ("cuda", 1), "cpu"
    -> ("cpu", 0); anything else: one line naming what is accepted."""
    kind, colon, index = str(choice).partition(":")
    if kind in DEVICES and not colon:
        return kind, 0
    if kind == "cuda" and index.isdigit():
        return kind, int(index)
    raise MaskDepthError(f"device {choice!r}: {EXPECTED_DEVICE}")


def check_device(choice: str, gpu: GpuInfo | None | Literal["probe"] = "probe") -> None:
    """Refuse ``--device cuda`` (or ``cuda:N``) in one line, before any work, on a machine
    without that CUDA GPU (``gpu``: the GPU to go by, by default the one found here). Whether a
    library can use the GPU (torch's CUDA build, onnxruntime's CUDA provider) is checked where
    it is used."""
    try:
        kind, index = parse_device(choice)
    except MaskDepthError:
        raise MaskDepthError(f"--device {choice}: {EXPECTED_DEVICE}") from None
    if kind == "cuda" and (gpu_info(index) if gpu == "probe" else gpu) is None:
        which = "no CUDA GPU on this machine" if index == 0 else f"no CUDA GPU {index} here"
        raise MaskDepthError(
            f"--device {choice}: {which} (no NVIDIA driver, or no GPU visible "
            "through CUDA_VISIBLE_DEVICES); use --device cpu, or auto to take a GPU when there "
            "is one (maskdepth doctor says what this machine has)"
        )


def _driver() -> ctypes.CDLL | None:
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


class CudaMemory(Protocol):
    """Device and pinned host buffers and one stream on one GPU. Copies are asynchronous on
    that stream; :meth:`synchronize` waits for them."""

    library: str
    stream_handle: int  # what TensorRT's execute_async_v3 takes

    def current(self) -> contextlib.AbstractContextManager:
        """Make this GPU current on the calling thread for the duration."""

    def device_alloc(self, nbytes: int): ...

    def device_free(self, buffer) -> None: ...

    def pinned(self, nbytes: int) -> np.ndarray: ...

    def pinned_free(self, host: np.ndarray) -> None: ...

    def to_device(self, buffer, host: np.ndarray) -> None: ...

    def to_host(self, host: np.ndarray, buffer) -> None: ...

    def synchronize(self) -> None: ...

    def close(self) -> None: ...


def open_cuda_memory(device: int) -> CudaMemory:
    """pycuda when importable, else cuda-python; neither: one line naming what to install."""
    try:
        import pycuda.driver  # noqa: F401
    except ImportError:
        pass
    else:
        return _PyCuda(device)
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
    except ImportError:
        raise MissingDependencyError(
            "running TensorRT engines needs pycuda or cuda-python for GPU memory, and neither "
            "is installed: pip install cuda-python"
        ) from None
    return _CudaPython(cudart, device)


@contextlib.contextmanager
def current_gpu(index: int) -> Iterator[None]:
    """GPU ``index`` as this thread's current CUDA device for the duration (what the TensorRT
    builder builds on). GPU 0, current by default, needs no CUDA Python package."""
    if index == 0:
        yield
        return
    memory = open_cuda_memory(index)
    try:
        with memory.current():
            yield
    finally:
        memory.close()


class _PyCuda:
    """pycuda on the device's primary context, the one TensorRT's runtime API uses."""

    library = "pycuda"

    def __init__(self, device: int) -> None:
        import pycuda.driver as cuda

        self.cuda = cuda
        cuda.init()
        self.context = cuda.Device(device).retain_primary_context()
        with self.current():
            self.stream = cuda.Stream()
        self.stream_handle = self.stream.handle

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        self.context.push()
        try:
            yield
        finally:
            self.cuda.Context.pop()

    def device_alloc(self, nbytes: int):
        return self.cuda.mem_alloc(max(nbytes, 1))

    def device_free(self, buffer) -> None:
        buffer.free()

    def pinned(self, nbytes: int) -> np.ndarray:
        return self.cuda.pagelocked_empty(max(nbytes, 1), np.uint8)

    def pinned_free(self, host: np.ndarray) -> None:
        # pagelocked_empty's array views a pycuda HostAllocation, its .base (pycuda is untyped)
        allocation: Any = host.base
        allocation.free()

    def to_device(self, buffer, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(buffer, host, self.stream)

    def to_host(self, host: np.ndarray, buffer) -> None:
        self.cuda.memcpy_dtoh_async(host, buffer, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def close(self) -> None:
        self.stream = None
        self.context.detach()


class _CudaPython:
    """cuda-python's runtime API (``cuda.bindings.runtime``); every call's error is checked."""

    library = "cuda-python"

    def __init__(self, cudart, device: int) -> None:
        self.rt, self.device = cudart, device
        with self.current():
            self.stream = self._call("cudaStreamCreate")
        self.stream_handle = int(self.stream)

    def _call(self, function: str, *args):
        result = getattr(self.rt, function)(*args)
        error = result[0]
        if error != self.rt.cudaError_t.cudaSuccess:
            text = self.rt.cudaGetErrorString(error)[1].decode(errors="replace")
            raise MaskDepthError(f"CUDA {function} on GPU {self.device} failed: {text}")
        return result[1] if len(result) == 2 else None

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        self._call("cudaSetDevice", self.device)
        yield

    def device_alloc(self, nbytes: int) -> int:
        return int(self._call("cudaMalloc", max(nbytes, 1)))

    def device_free(self, buffer: int) -> None:
        self._call("cudaFree", buffer)

    def pinned(self, nbytes: int) -> np.ndarray:
        nbytes = max(nbytes, 1)
        address = int(self._call("cudaMallocHost", nbytes))
        return np.ctypeslib.as_array((ctypes.c_uint8 * nbytes).from_address(address))

    def pinned_free(self, host: np.ndarray) -> None:
        self._call("cudaFreeHost", host.ctypes.data)

    def _copy(self, destination: int, source: int, nbytes: int, kind: str) -> None:
        kind = getattr(self.rt.cudaMemcpyKind, kind)
        self._call("cudaMemcpyAsync", destination, source, nbytes, kind, self.stream)

    def to_device(self, buffer: int, host: np.ndarray) -> None:
        self._copy(buffer, host.ctypes.data, host.nbytes, "cudaMemcpyHostToDevice")

    def to_host(self, host: np.ndarray, buffer: int) -> None:
        self._copy(host.ctypes.data, buffer, host.nbytes, "cudaMemcpyDeviceToHost")

    def synchronize(self) -> None:
        self._call("cudaStreamSynchronize", self.stream)

    def close(self) -> None:
        self._call("cudaStreamDestroy", self.stream)
