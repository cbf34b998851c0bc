"""``REPO/maskdepth_post/1/model.py``: the ensemble's resize-back on Triton's python backend
(:func:`maskdepth.runtime.triton.steps.postprocess`)."""

from __future__ import annotations

import functools

import triton_python_backend_utils as pb_utils

from maskdepth.runtime.model_info import OUTPUT_NAMES
from maskdepth.runtime.triton.steps import POST_INPUTS, answer_each, postprocess, read_info


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.work = functools.partial(postprocess, read_info(args["model_repository"]))

    def execute(self, requests: list) -> list:
        return answer_each(pb_utils, requests, POST_INPUTS, OUTPUT_NAMES, self.work)
