"""onnxruntime backend. Importing this module without onnxruntime gives a one-line error."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MaskDepthError, require
from .base import Runner

ort = require("onnxruntime", "cpu", "running ONNX models (maskdepth.runtime)")

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(uint8)": np.uint8,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


class OnnxRuntimeRunner(Runner):
    """An onnxruntime InferenceSession on the CPU (threads settable)."""

    name = "onnxruntime"

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None) -> None:
        super().__init__()
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise FileNotFoundError(f"{model}: no such ONNX file")
        self.model = model if isinstance(model, bytes) else str(model)
        self.threads = threads
        self.session = None

    def activate_impl(self) -> None:
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(
                self.model, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types per failure
            source = "model bytes" if isinstance(self.model, bytes) else self.model
            first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise MaskDepthError(f"{source}: onnxruntime cannot load it: {first_line}") from exc

    def get_input_metadata_impl(self) -> dict[str, tuple[np.dtype, tuple]]:
        return {
            i.name: (np.dtype(_DTYPES.get(i.type, np.float32)), tuple(i.shape))
            for i in self.session.get_inputs()
        }

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [o.name for o in self.session.get_outputs()]
        return dict(zip(names, self.session.run(names, feed)))

    def deactivate_impl(self) -> None:
        self.session = None
