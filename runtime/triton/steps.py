"""What each python-backend model of the Triton repository does, as plain functions of a
:class:`ModelInfo` and numpy arrays, so that they are tested without a server and the model
files stay thin. The same pre-processing and resize-back as :class:`Predictor` (the functions of
:mod:`maskdepth.runtime.framing`), so the served answer equals the in-process one.

The ensemble ``maskdepth`` chains them::

    scene, bg (uint8 H x W x 3) -> maskdepth_pre -> net_bg, net_scene (float32 1 x 3 x h x w),
                                                    size (int32 [H, W])
    net_bg, net_scene -> maskdepth_net -> mask, depth (float32 1 x 1 x h x w)
    mask, depth, size -> maskdepth_post -> mask, depth (float32 H x W, in [0, 1])
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.framing import background_planes, frame_map, scene_planes
from maskdepth.runtime.image import as_rgb
from maskdepth.runtime.model_info import INPUT_NAMES, OUTPUT_NAMES, ModelInfo

ENSEMBLE, PRE, NET, POST = "maskdepth", "maskdepth_pre", "maskdepth_net", "maskdepth_post"
INFO_FILE = "model_info.json"  # at the repository's top, read by pre and post
# The ensemble's own inputs and outputs are the network's names: scene/bg in, mask/depth out.
SCENE, BG = "scene", "bg"
PRE_OUTPUTS = ("net_bg", "net_scene", "size")  # pre -> net (net_bg, net_scene), pre -> post
POST_INPUTS = ("net_mask", "net_depth", "size")  # net's outputs and pre's size


def info_path(model_dir: str | Path) -> Path:
    """``REPO/model_info.json`` for the model folder ``REPO/<model>`` (``args['model_repository']``
    in the python backend)."""
    return Path(model_dir).parent / INFO_FILE


def read_info(model_dir: str | Path) -> ModelInfo:
    """The repository's ModelInfo, written once by the export (ModelInfo.to_dict)."""
    path = info_path(model_dir)
    try:
        values = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise MaskDepthError(f"{path}: cannot read the model's info ({exc})") from None
    return ModelInfo.from_dict(values, str(path))


def preprocess(info: ModelInfo, scene: np.ndarray, bg: np.ndarray) -> dict[str, np.ndarray]:
    """maskdepth_pre: RGB uint8 scene and bg of one size -> the network's two (1, 3, h, w)
    inputs and the scene's (height, width), as :class:`Predictor` prepares them."""
    scene, bg = as_rgb(scene, SCENE), as_rgb(bg, BG)
    if scene.shape != bg.shape:
        raise MaskDepthError(
            f"{BG}: shape {list(bg.shape)} differs from {SCENE} {list(scene.shape)}; send the "
            "background at the scene's size"
        )
    size = scene.shape[:2]
    planes = {
        "net_bg": background_planes(info, bg, size)[None],
        "net_scene": scene_planes(info, scene)[None],
        "size": np.asarray(size, np.int32),
    }
    return planes


def postprocess(
    info: ModelInfo, mask: np.ndarray, depth: np.ndarray, size: np.ndarray
) -> dict[str, np.ndarray]:
    """maskdepth_post: the network's (1, 1, h, w) mask and depth -> float32 (H, W) in [0, 1] at
    the scene's ``size``, as :class:`Predictor` returns them (bilinear, then clipped)."""
    height, width = (int(v) for v in np.asarray(size).reshape(-1)[:2])
    if height < 1 or width < 1:
        raise MaskDepthError(f"size: expected a positive height and width, got {[height, width]}")
    maps = {"mask": mask, "depth": depth}
    return {
        name: frame_map(info, np.asarray(maps[name])[0, 0], (height, width))
        for name in OUTPUT_NAMES
    }


def run_network(runner, feeds: Sequence[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """maskdepth_net on the python backend: the requests one dynamic batch gathered (each a
    ``{"bg", "scene"}`` feed of N_i x 3 x h x w), run as one batch on ``runner`` (an active
    :class:`OnnxRuntimeRunner`), split back per request."""
    counts = [len(feed[SCENE]) for feed in feeds]
    batch = {name: np.concatenate([feed[name] for feed in feeds]) for name in INPUT_NAMES}
    outputs = runner.infer(batch)
    bounds = np.cumsum([0, *counts])
    return [
        {name: outputs[name][start:stop] for name in OUTPUT_NAMES}
        for start, stop in zip(bounds[:-1], bounds[1:])
    ]


def answer_each(
    pb_utils, requests: list, inputs: Sequence[str], outputs: Sequence[str], work
) -> list:
    """The python backend's ``execute`` of pre and post: each request's ``inputs`` as numpy
    arrays into ``work``, its ``outputs`` back, or the step's one-line MaskDepthError as that
    request's error (the others are still answered). ``pb_utils``: the backend's
    ``triton_python_backend_utils`` module, which exists only inside the server."""
    responses = []
    for request in requests:
        arrays = [pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in inputs]
        try:
            result = work(*arrays)
        except MaskDepthError as exc:
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
            continue
        tensors = [pb_utils.Tensor(name, result[name]) for name in outputs]
        responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
    return responses
