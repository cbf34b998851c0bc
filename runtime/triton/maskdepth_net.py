"""``REPO/maskdepth_net/1/model.py`` for ``--triton-network python``: the ONNX file beside it run
by maskdepth's own runtime (onnxruntime on the CPU), one run per dynamic batch
(:func:`maskdepth.runtime.triton.steps.run_network`)."""

from __future__ import annotations

from pathlib import Path

import triton_python_backend_utils as pb_utils

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import INPUT_NAMES, OUTPUT_NAMES
from maskdepth.runtime.runners.ort import OnnxRuntimeRunner
from maskdepth.runtime.triton.steps import run_network

MODEL_FILE = "model.onnx"


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        folder = Path(args["model_repository"]) / str(args["model_version"])
        self.runner = OnnxRuntimeRunner(folder / MODEL_FILE, device="cpu")
        self.runner.activate()

    def execute(self, requests: list) -> list:
        feeds = [
            {name: pb_utils.get_input_tensor_by_name(r, name).as_numpy() for name in INPUT_NAMES}
            for r in requests
        ]
        try:
            results = run_network(self.runner, feeds)
        except MaskDepthError as exc:
            error = pb_utils.TritonError(str(exc))
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(name, result[name]) for name in OUTPUT_NAMES]
            )
            for result in results
        ]

    def finalize(self) -> None:
        self.runner.deactivate()
