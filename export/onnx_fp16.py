"""ONNX fp32 -> fp16 with onnxconverter-common: weights and activations in fp16, the model's
inputs and outputs kept fp32 so callers feed and read the same arrays as for fp32."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
from onnx import numpy_helper

from maskdepth.runtime.model_info import ModelInfo

from .onnx_fp32 import set_metadata

# Ops left in fp32: the converter's default list minus Resize. Blocking Resize (its default)
# leaves U2-Net's Concat nodes with one fp32 and one fp16 input, a graph onnx.checker refuses;
# bilinear upsampling in fp16 stays inside the fp16 gate (benchmarks/scripts/export_parity.py
# measures it). Add an op here only with a measurement behind it.
RUN_IN_FP16 = ("Resize", "Upsample")


def to_fp16(graph: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """The fp16 form of an fp32 graph, with its metadata saying so."""
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "value truncated to fp16" for tiny weights
        keep_fp32 = [op for op in float16.DEFAULT_OP_BLOCK_LIST if op not in RUN_IN_FP16]
        half = float16.convert_float_to_float16(graph, keep_io_types=True, op_block_list=keep_fp32)
    _resize_scales_in_fp32(half)
    set_metadata(half, info.with_precision("fp16"))
    return half


def _resize_scales_in_fp32(graph: onnx.ModelProto) -> None:
    """Resize takes its scales as float32 whatever it resizes; the converter halves every float
    initializer, the constant scales of a static export included."""
    scales = {n.input[2] for n in graph.graph.node if n.op_type == "Resize" and len(n.input) > 2}
    for tensor in graph.graph.initializer:
        if tensor.name in scales and tensor.data_type == onnx.TensorProto.FLOAT16:
            values = numpy_helper.to_array(tensor).astype(np.float32)
            tensor.CopyFrom(numpy_helper.from_array(values, tensor.name))
