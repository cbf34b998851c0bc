"""Tiny ONNX stand-ins for the depth networks of ``data compose --depth-preset``, with the same
interface (input name, layout, size, where the normalisation happens, output shape) and a
per-pixel output whose ordering changes when the input is not pre-processed as documented.

Each computes, per pixel, ``OFFSET + sum_c WEIGHTS[c] * cos(2 pi (x_c - 0.5))`` of the true
RGB/255 value ``x``: one full period over [0, 1], so the order of the outputs depends on where
mid-grey lands. Fed without the ImageNet normalisation a Depth Anything stand-in sees a quarter
of a period; fed normalised, the MiDaS and DenseDepth ones see four. Built with the onnx helper
API (no torch). The output is positive, as a disparity must be.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maskdepth.train.data.depth_presets import IMAGENET_MEAN, IMAGENET_STD

STANDINS = ("depth-anything-v2", "midas-small", "densedepth")
WEIGHTS = (1.0, 0.8, 0.6)
OFFSET = 3.0
OPSET = 13


def standin_disparity(rgb: np.ndarray) -> np.ndarray:
    """What every stand-in computes for true RGB/255 values ``rgb`` (...x3): larger is nearer."""
    x = np.asarray(rgb, np.float64)
    return OFFSET + (np.asarray(WEIGHTS) * np.cos(2 * np.pi * (x - 0.5))).sum(axis=-1)


_SIZES: dict[str, tuple[int | str, int | str]] = {
    "depth-anything-v2": (518, 518),
    "midas-small": (256, 256),
    "densedepth": ("height", "width"),
}


def _consts(inits: dict[str, np.ndarray]):
    def const(name: str, values) -> str:
        inits[name] = np.asarray(values, np.float32).reshape(1, 3, 1, 1)
        return name

    return const


def _input_nodes(preset: str, batch, size, const) -> tuple[str, list, list]:
    """(input name, input shape, nodes from it to ``x``, the true RGB/255 in NCHW)."""
    from onnx import helper

    h, w = size or _SIZES[preset]
    mean, std = np.asarray(IMAGENET_MEAN), np.asarray(IMAGENET_STD)
    if preset == "depth-anything-v2":  # fed (x - mean) / std: undo it to reach x
        return "image", [batch, 3, h, w], [
            helper.make_node("Mul", ["image", const("std", std)], ["scaled"]),
            helper.make_node("Add", ["scaled", const("mean", mean)], ["x"]),
        ]  # fmt: skip
    if preset == "midas-small":  # fed RGB/255: MiDaS' export normalises inside its graph
        return "0", [batch, 3, h, w], [helper.make_node("Identity", ["0"], ["x"])]
    # DenseDepth: Keras NHWC, RGB/255 as it is
    return "input_1", [batch, h, w, 3], [
        helper.make_node("Transpose", ["input_1"], ["x"], perm=[0, 3, 1, 2])
    ]  # fmt: skip


def write_standin(
    path: str | os.PathLike,
    preset: str,
    batch: int | str = 1,
    size: tuple[int | str, int | str] | None = None,
) -> Path:
    """Write the ``preset``'s stand-in to ``path``. ``batch``: a fixed batch or a name (dynamic);
    ``size``: the input (H, W), names for dynamic sides; default the network's usual one
    (518x518, 256x256, dynamic NHWC for DenseDepth)."""
    from onnx import TensorProto, helper, numpy_helper, save

    if preset not in STANDINS:
        raise ValueError(f"no stand-in for {preset!r}: one of {STANDINS}")
    inits: dict[str, np.ndarray] = {}
    const = _consts(inits)
    name, shape, nodes = _input_nodes(preset, batch, size, const)
    nodes += [
        helper.make_node("Sub", ["x", const("grey", [0.5] * 3)], ["d"]),
        helper.make_node("Mul", ["d", const("period", [2 * np.pi] * 3)], ["phase"]),
        helper.make_node("Cos", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", const("weights", WEIGHTS)], ["weighted"]),
        helper.make_node("ReduceSum", ["weighted", "axes"], ["total"], keepdims=1),
        helper.make_node("Add", ["total", "offset"], ["disparity"]),
    ]
    inits["axes"] = np.asarray([1], np.int64)
    inits["offset"] = np.asarray(OFFSET, np.float32)
    if preset == "densedepth":  # half-size output, NHWC: N x H/2 x W/2 x 1
        nodes.append(
            helper.make_node(
                "AveragePool", ["disparity"], ["half"], kernel_shape=[2, 2], strides=[2, 2]
            )
        )
        nodes.append(helper.make_node("Transpose", ["half"], ["depth"], perm=[0, 2, 3, 1]))
    else:  # N x H x W
        nodes.append(helper.make_node("Squeeze", ["disparity", "axes"], ["depth"]))
    graph = helper.make_graph(
        nodes,
        preset,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(value, key) for key, value in inits.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    save(model, str(path))
    return Path(path)
