"""``REPO/maskdepth_pre/1/model.py``: the ensemble's pre-processing on Triton's python backend
(:func:`maskdepth.runtime.triton.steps.preprocess`)."""

from __future__ import annotations

import functools

import triton_python_backend_utils as pb_utils

from maskdepth.runtime.triton.steps import (
    BG,
    PRE_OUTPUTS,
    SCENE,
    answer_each,
    preprocess,
    read_info,
)


class TritonPythonModel:
    def initialize(self, args: dict) -> None:
        self.work = functools.partial(preprocess, read_info(args["model_repository"]))

    def execute(self, requests: list) -> list:
        return answer_each(pb_utils, requests, (SCENE, BG), PRE_OUTPUTS, self.work)
