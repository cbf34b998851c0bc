"""The hardware floor of a CPU latency: the work in a model file (FLOPs counted from its ONNX
graph) at the machine's measured peak (the best large sgemm, measured in the same run).

Reports divide each CPU row's latency by that floor: 1.0x is as fast as the arithmetic allows;
what is above it is memory traffic, layout changes, thread hand-offs and overhead.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np

SGEMM_SIDE = 2048  # large enough for the BLAS peak, small enough to take ~0.1 s on 2 cores


WEIGHT_INPUT = {"Conv": 1, "QLinearConv": 3, "ConvInteger": 1}


def onnx_flops(model: str | os.PathLike) -> float:
    """FLOPs of one image: 2 per multiply-add of every convolution (all of this network's work;
    an INT8 file's too, whether Q/DQ or QLinearConv), from the output shapes ONNX shape
    inference gives a graph of static height and width."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(model)), data_prop=True)
    graph = proto.graph
    shapes = {v.name: _dims(v) for v in [*graph.value_info, *graph.input, *graph.output]}
    kernels = {t.name: tuple(t.dims) for t in graph.initializer}
    for node in graph.node:  # a Q/DQ file's weights reach Conv through DequantizeLinear
        if node.op_type == "DequantizeLinear" and node.input[0] in kernels:
            kernels[node.output[0]] = kernels[node.input[0]]
    total = 0.0
    for node in (n for n in graph.node if n.op_type in WEIGHT_INPUT):
        weight = node.input[WEIGHT_INPUT[node.op_type]]
        out, kernel = shapes.get(node.output[0]), kernels.get(weight)
        positions = [d for d in (out or ())[2:] if d is not None]
        if out is None or kernel is None or len(positions) != len(out) - 2:
            raise ValueError(f"{model}: no static shape at {node.name or node.output[0]}")
        c_out, c_in_per_group, *window = kernel
        total += 2.0 * c_out * c_in_per_group * float(np.prod(window)) * float(np.prod(positions))
    return total


def _dims(value) -> tuple[int | None, ...]:
    dims = value.type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def sgemm_gflops(threads: int | None = None, repeats: int = 5) -> dict[str, float]:
    """Best measured fp32 matrix-multiply rate, GFLOP/s, of numpy's BLAS and (when installed)
    PyTorch's on this CPU; ``threads`` sets PyTorch's (numpy uses what its BLAS is allowed)."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((SGEMM_SIDE, SGEMM_SIDE), dtype=np.float32) for _ in range(2))
    calls: dict[str, Callable[[], object]] = {"numpy": lambda: a @ b}
    try:
        import torch
    except ImportError:
        pass
    else:
        if threads:
            torch.set_num_threads(threads)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        calls["torch"] = lambda: ta @ tb
    rates = {}
    for name, call in calls.items():
        call()  # warm-up: threads started, pages touched
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            best = min(best, time.perf_counter() - start)
        rates[name] = 2 * SGEMM_SIDE**3 / best / 1e9
    return rates


def floor_ms(gflop_per_image: float, peak_gflops: float, batch: int = 1) -> float:
    """The fastest a batch can run: its work at the peak rate."""
    return 1e3 * gflop_per_image * batch / peak_gflops
