"""What `maskdepth export` is asked to do: one dataclass (the CLI fills it from its arguments)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .onnx_fp32 import DEFAULT_OPSET

FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "engine")
PRECISION_OF = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
MIN_PARITY_SAMPLES = 64


@dataclass
class ExportOptions:
    format: str = "onnx"
    size: tuple[int, int] | None = None  # default: the training size
    dynamic: bool = False  # batch only; True: batch, height and width
    max_batch: int = 32
    opset: int = DEFAULT_OPSET
    data: Path | None = None  # held-out samples; default: synthetic scenes
    calib_count: int = 256
    calib_method: str = "minmax"
    int8_target: str = "tensorrt"
    int8_exclude: tuple[str, ...] | None = None  # blocks kept in float; None: AUTO_EXCLUDE
    parity_count: int = MIN_PARITY_SAMPLES
    tolerance: dict | None = None  # e.g. {"iou": 0.02}; {"*": x} sets every bound
    use_ema: bool = True
    device: str = "cpu"  # where onnxruntime runs the parity check of an ONNX file
    # engines
    from_onnx: Path | None = None
    precision: str | None = None  # of the ONNX graph an engine is built from (default fp16)
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    compute_capabilities: tuple[str, ...] | None = None

    @property
    def precision_of_graph(self) -> str:
        """The precision of the ONNX graph this export makes (or an engine compiles)."""
        return PRECISION_OF.get(self.format, self.precision or "fp16")
