"""``REPO/maskdepth_pre/1/model.py``: the ensemble's pre-processing on Triton's python backend
(:func:`maskdepth.runtime.triton.steps.preprocess`)."""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.triton.steps import BG, PRE_OUTPUTS, SCENE, preprocess, read_info


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.info = read_info(args["model_repository"])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                outputs = preprocess(
                    self.info,
                    pb_utils.get_input_tensor_by_name(request, SCENE).as_numpy(),
                    pb_utils.get_input_tensor_by_name(request, BG).as_numpy(),
                )
            except MaskDepthError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(name, outputs[name]) for name in PRE_OUTPUTS]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
