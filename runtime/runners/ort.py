"""onnxruntime backend: CPU, CUDA and TensorRT execution providers behind the runner interface.

onnxruntime falls back to the CPU without a word when a GPU provider is missing or fails to
start (no CUDA/cuDNN libraries, the CPU-only wheel). This runner reads which providers the
session really runs, sets ``device`` and ``provider`` from that, and warns loudly (a Python
warning and one stderr line) when the device asked for is not the one running.

Importing this module without onnxruntime gives a one-line error naming the extra.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from maskdepth.runtime.errors import MaskDepthError, require
from maskdepth.runtime.model_info import read_onnx_info

from .base import Runner
from .cuda import GpuInfo, gpu_info, parse_device

ort = require("onnxruntime", "cpu", "running ONNX models (maskdepth.runtime)")

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def default_cache_dir() -> Path:
    """Where the TensorRT provider keeps engines and timing caches: $MASKDEPTH_CACHE, else
    ~/.cache/maskdepth, then ``ort-tensorrt`` (onnxruntime names the files by model hash)."""
    base = os.environ.get("MASKDEPTH_CACHE") or Path.home() / ".cache" / "maskdepth"
    return Path(base) / "ort-tensorrt"


class OnnxRuntimeRunner(Runner):
    """An onnxruntime InferenceSession.

    ``device``: "cpu", "cuda" or "cuda:N" (CUDA provider on GPU N, CPU for the rest) or "auto"
    (a GPU provider when this onnxruntime has one and there is a GPU, else the CPU).
    ``tf32=False``: the CUDA provider's convolutions and matmuls in true fp32, not TF32 (the
    export gate's run, whose fp32 bound TF32 cannot meet). ``tensorrt=True`` puts the TensorRT
    provider first on the GPU, with its engine and timing caches in ``cache_dir``.
    ``io_binding``: None binds inputs and outputs when a GPU provider runs (device-resident
    inputs from :meth:`to_device` are then not copied again); True/False forces it.

    After :meth:`activate`, ``device`` ("cpu" | "cuda") and ``provider`` name what really runs
    and ``metadata`` holds the model's ``metadata_props``.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model: str | os.PathLike | bytes,
        threads: int | None = None,
        device: str = "cpu",
        tensorrt: bool = False,
        cache_dir: str | os.PathLike | None = None,
        io_binding: bool | None = None,
        tf32: bool = True,
    ) -> None:
        super().__init__()
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such ONNX file")
        kind, self.device_index = parse_device(device)
        if tensorrt and kind == "cpu":
            raise MaskDepthError(
                "the TensorRT execution provider runs on a CUDA GPU: ask for device 'cuda' or "
                "'auto', not 'cpu'"
            )
        if threads is not None and threads < 1:
            raise MaskDepthError(f"threads: expected a number >= 1, got {threads}")
        self.model = model if isinstance(model, bytes) else str(model)
        self.source = "model bytes" if isinstance(model, bytes) else str(model)
        self.threads = threads
        self.requested_device = kind  # "auto" | "cpu" | "cuda", on GPU device_index
        self.tf32 = tf32
        self.tensorrt = tensorrt
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.io_binding = io_binding
        # an onnxruntime InferenceSession (the library is untyped) while active, else None
        self.session: Any | None = None
        self.device: str | None = None
        self.provider: str | None = None
        self.metadata: dict[str, str] = {}
        self._bind = False
        self._output_names: list[str] = []

    # ------------------------------------------------------------------ session

    def activate_impl(self) -> None:
        wanted = self._wanted_gpu_providers()
        available = set(ort.get_available_providers())
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        providers = [self._provider_entry(p) for p in wanted if p in available] + [CPU]
        try:
            session = ort.InferenceSession(self.model, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise MaskDepthError(
                f"{self.source}: onnxruntime cannot load it: {first_line}"
            ) from exc
        self.session = session
        running = session.get_providers()
        self.provider = running[0]
        self.device = "cuda" if self.provider in GPU_PROVIDERS else "cpu"
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self._output_names = [o.name for o in session.get_outputs()]
        self._bind = self.device == "cuda" if self.io_binding is None else self.io_binding
        self._warn_if_fallen_back(wanted, available, running)

    def _wanted_gpu_providers(self) -> list[str]:
        return wanted_gpu_providers(
            self.requested_device,
            self.tensorrt,
            ort.get_available_providers(),
            gpu_info(self.device_index) if self.requested_device == "auto" else None,
        )

    def _provider_entry(self, provider: str) -> tuple[str, dict]:
        if provider == CUDA:
            return CUDA, cuda_provider_options(self.device_index, self.tf32)
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        precision = _precision_of(self.model)
        return (
            TENSORRT,
            {
                "device_id": self.device_index,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(self.cache_dir),
                "trt_timing_cache_enable": True,
                "trt_timing_cache_path": str(self.cache_dir),
                # Precision lives in the graph; the builder needs the matching flag to honour
                # fp16 layers and Q/DQ pairs rather than run them in fp32.
                "trt_fp16_enable": precision == "fp16",
                "trt_int8_enable": precision == "int8",
            },
        )

    def _warn_if_fallen_back(self, wanted: list[str], available: set, running: list[str]) -> None:
        """Device "cuda" that does not run on a GPU is an error; "auto" whose GPU provider did
        not start is a loud warning (a Python warning and one stderr line)."""
        problem = fallback_problem(self.requested_device, wanted, available, running)
        if problem is None:
            return
        message = f"{self.source}: {problem}"
        if self.requested_device == "cuda":
            raise MaskDepthError(message)
        warnings.warn(message, RuntimeWarning, stacklevel=4)
        print(f"maskdepth: WARNING: {message}", file=sys.stderr)

    # ------------------------------------------------------------------ inference

    def get_input_metadata_impl(self) -> dict[str, tuple[np.dtype, tuple]]:
        return {
            i.name: (np.dtype(_DTYPES.get(i.type, np.float32)), tuple(i.shape))
            for i in self._live_session().get_inputs()
        }

    def to_device(self, array: np.ndarray):
        """``array`` where the session reads its inputs: an OrtValue in GPU memory when inputs
        are bound on a GPU (upload once, reuse in many :meth:`infer` calls), else the array."""
        self._check_active()
        if self._bind and self.device == "cuda":
            return ort.OrtValue.ortvalue_from_numpy(
                np.ascontiguousarray(array), "cuda", self.device_index
            )
        return array

    def infer_impl(self, feed: dict) -> dict[str, np.ndarray]:
        session = self._live_session()
        if not self._bind:
            return dict(zip(self._output_names, session.run(self._output_names, feed)))
        binding = session.io_binding()  # one per call: the session is shared by threads
        for name, value in feed.items():
            if isinstance(value, ort.OrtValue):
                binding.bind_ortvalue_input(name, value)
            else:
                binding.bind_cpu_input(name, np.ascontiguousarray(value))
        for name in self._output_names:
            binding.bind_output(name, self.device, self.device_index)
        session.run_with_iobinding(binding)
        return dict(zip(self._output_names, binding.copy_outputs_to_cpu()))

    def _live_session(self) -> Any:
        if self.session is None:
            raise MaskDepthError(f"{self.source}: call activate() (or use 'with') before inference")
        return self.session

    def deactivate_impl(self) -> None:
        self.session = None


def cuda_provider_options(device_index: int, tf32: bool = True) -> dict[str, str]:
    """The CUDA provider's options: GPU ``device_index``; ``use_tf32`` "0" only when TF32 is
    off (passed only then, so that an onnxruntime without the option still starts)."""
    options = {"device_id": str(device_index)}
    if not tf32:
        options["use_tf32"] = "0"
    return options


def wanted_gpu_providers(
    requested: str, tensorrt: bool, available: list[str], gpu: GpuInfo | None = None
) -> list[str]:
    """GPU providers to ask for, best first. "cuda": the CUDA provider (and TensorRT when asked
    for), present or not (its absence is then an error). "auto": only when ``gpu`` (the GPU
    asked for, found by the caller) is there, so that onnxruntime-gpu on a machine without a
    GPU runs on the CPU without a warning; then CUDA only when this onnxruntime has it (a
    CPU-only build is no surprise there)."""
    if requested == "cpu" or (requested == "auto" and gpu is None):
        return []
    cuda = [CUDA] if requested == "cuda" or CUDA in available else []
    return ([TENSORRT] if tensorrt else []) + cuda


def fallback_problem(
    requested: str, wanted: list[str], available: set[str] | list[str], running: list[str]
) -> str | None:
    """What went wrong when a wanted GPU provider is not among those the session runs, with
    what to do about it; None when nothing did."""
    missing = [p for p in wanted if p not in running]
    if not missing:
        return None
    absent = [p for p in missing if p not in available]
    if absent:
        reason = (
            f"this onnxruntime has no {', '.join(absent)} (it has "
            f"{', '.join(sorted(available))}); pip install 'maskdepth[gpu]'"
        )
        if requested == "cuda":
            reason += " for a CUDA GPU, or use device 'cpu'"
    elif missing == [TENSORRT]:
        reason = "the TensorRT provider did not start (TensorRT libraries on the path?)"
    else:
        reason = "the provider failed to start (CUDA and cuDNN libraries on the path?)"
    return (
        f"asked for device {requested!r} ({', '.join(wanted)}) but onnxruntime runs it on "
        f"{running[0]}: {reason}"
    )


def _precision_of(model: str | bytes) -> str:
    """The model's precision, read before the TensorRT provider's session exists (its flags
    must be set first); fp32 for a file without maskdepth metadata or one that does not load
    (the real session creation then reports what is wrong)."""
    try:
        return read_onnx_info(model).precision
    except MaskDepthError:
        return "fp32"
