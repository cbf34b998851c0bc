"""ONNX fp32 -> INT8 QDQ with onnxruntime.quantization, calibrated on held-out samples.

Two targets, because the two consumers want different graphs:

- ``tensorrt``: int8 activations and weights, both symmetric (zero point 0, which TensorRT
  requires), per-channel weights, biases left in fp32 (TensorRT's ONNX parser refuses the Int32
  bias DequantizeLinear that quantize_static writes by default).
- ``cpu``: onnxruntime's x86 kernels run uint8 activations x int8 weights (U8S8), with an
  asymmetric activation range and quantized biases; benchmarks/scripts/runtime_latency.py
  measures both.
"""

from __future__ import annotations

import logging
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo

from .onnx_fp32 import set_metadata
from .options import BLOCKS, FRAME_BLOCKS, METHODS, NETWORK_SCOPES, TARGETS


def excluded_nodes(graph: onnx.ModelProto, blocks: Iterable[str]) -> list[str]:
    """The names of ``graph``'s nodes inside ``blocks`` (left in float by the quantizer), in
    graph order."""
    blocks = tuple(blocks)
    prefixes = tuple(
        scope + path for block in blocks for path in BLOCKS[block] for scope in NETWORK_SCOPES
    )
    chosen = {n.name for n in graph.graph.node if prefixes and n.name.startswith(prefixes)}
    for block in set(blocks) & set(FRAME_BLOCKS):
        chosen.update(frame_nodes(graph, tail=block == "outputs"))
    return [n.name for n in graph.graph.node if n.name in chosen]


# A node in no module: "/Concat" (the exported wrapper's) or "/model/Resize" (the network's own).
_FRAME_NODE = re.compile(r"/(model/)?[^/]+")


def frame_nodes(graph: onnx.ModelProto, tail: bool = False) -> list[str]:
    """The names of ``graph``'s nodes in no module of the network (block "frame"); ``tail``:
    only those from which a graph output is reached through such nodes alone (block "outputs":
    what follows the network's last layer)."""
    frame = [n for n in graph.graph.node if _FRAME_NODE.fullmatch(n.name)]
    if not tail:
        return [n.name for n in frame]
    producers = {out: n for n in frame for out in n.output}
    todo = [producers[o.name] for o in graph.graph.output if o.name in producers]
    reached: set[str] = set()
    while todo:
        node = todo.pop()
        if node.name not in reached:
            reached.add(node.name)
            todo += [producers[name] for name in node.input if name in producers]
    return [n.name for n in frame if n.name in reached]


def to_int8(
    graph: onnx.ModelProto,
    info: ModelInfo,
    feeds: Iterable[dict[str, np.ndarray]],
    count: int,
    method: str = "minmax",
    target: str = "tensorrt",
    exclude: Iterable[str] = (),
) -> onnx.ModelProto:
    """Static QDQ quantization of ``graph``, calibrated on ``feeds`` (``count`` samples in all,
    for the progress bar), per-channel weights; the blocks in ``exclude`` stay in float."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    if method not in METHODS:
        raise MaskDepthError(f"--calib-method {method}: expected one of {', '.join(METHODS)}")
    if target not in TARGETS:
        raise MaskDepthError(f"--int8-target {target}: expected one of {', '.join(TARGETS)}")
    float_nodes = excluded_nodes(graph, exclude)
    with tempfile.TemporaryDirectory() as tmp, _quiet_quantizer():
        source, quantized = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(graph, source)
        quantize_static(
            str(source),
            str(quantized),
            _reader(feeds, count, method),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            nodes_to_exclude=float_nodes,
            **_types(target, method),
        )
        result = onnx.load(str(quantized))
    set_metadata(result, info.with_precision("int8"))
    return result


def _reader(feeds: Iterable[dict[str, np.ndarray]], count: int, method: str):
    """onnxruntime's calibration reader over ``feeds``, with a progress bar."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(feeds)
            self.bar = tqdm(total=count, desc=f"calibrate int8 ({method})", unit="sample")

        def get_next(self) -> dict | None:
            feed = next(self.feeds, None)
            if feed is None:
                self.bar.close()
            else:
                self.bar.update(len(feed["bg"]))
            return feed

    return Reader()


def _types(target: str, method: str) -> dict:
    """quantize_static's settings for ``target`` (see the module docstring) and ``method``."""
    from onnxruntime.quantization import CalibrationMethod, QuantType

    symmetric = target == "tensorrt"
    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    return {
        "activation_type": QuantType.QInt8 if symmetric else QuantType.QUInt8,
        "weight_type": QuantType.QInt8,
        "calibrate_method": methods[method],
        "extra_options": {
            "ActivationSymmetric": symmetric,
            "WeightSymmetric": True,
            "QuantizeBias": not symmetric,
        },
    }


class _quiet_quantizer:
    """quantize_static logs 'consider pre-processing' on the root logger; ours is already
    shape-inferred and constant-folded by the exporter and onnxslim."""

    def __enter__(self) -> None:
        self.level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)

    def __exit__(self, *exc) -> None:
        logging.getLogger().setLevel(self.level)
