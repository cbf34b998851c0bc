"""``REPO/maskdepth_post/1/model.py``: the ensemble's resize-back on Triton's python backend
(:func:`maskdepth.runtime.triton.steps.postprocess`)."""

from __future__ import annotations

import triton_python_backend_utils as pb_utils

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import OUTPUT_NAMES
from maskdepth.runtime.triton.steps import POST_INPUTS, postprocess, read_info


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.info = read_info(args["model_repository"])

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            mask, depth, size = (
                pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in POST_INPUTS
            )
            try:
                outputs = postprocess(self.info, mask, depth, size)
            except MaskDepthError as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
                continue
            tensors = [pb_utils.Tensor(name, outputs[name]) for name in OUTPUT_NAMES]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses
