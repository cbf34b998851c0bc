"""What a refiner costs: FLOPs counted from its exported graph and CPU milliseconds, beside the
base network's FLOPs (issue 20's budget: the refiner at 1280x720 at most 10% of the base
network at 224).

The base is counted with :func:`maskdepth.benchmarks.floor.onnx_flops` (convolutions only: all
but a sliver of a U2-Net's work). A refiner is counted with :func:`graph_flops`: the same
convolutions plus every element-wise, pooling, reduction and resize operation, since the guided
filter's full-resolution work is mostly those; so the comparison is conservative for the budget.

    python -m maskdepth.benchmarks.refine_cost    # the figures at 1280x720, base 128x224
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from maskdepth.benchmarks.floor import _dims, onnx_flops
from maskdepth.benchmarks.measure import time_calls
from maskdepth.train.models import create_model
from maskdepth.train.models.configs import TASKS
from maskdepth.train.models.refiner import REFINERS

ELEMENTWISE = {"Add", "Sub", "Mul", "Div", "Abs", "Relu", "Sigmoid", "Neg"}  # 1 FLOP / output
RESIZE_LINEAR = 8  # bilinear: four multiply-adds per output element
FULL_720P, BASE_16_9 = (720, 1280), (128, 224)


def graph_flops(model: str | os.PathLike) -> float:
    """FLOPs of one run of a static-shaped graph: :func:`onnx_flops`' convolutions plus 1 per
    output element of element-wise ops, the window per output of AveragePool, the input size
    of ReduceSum and ``RESIZE_LINEAR`` per output of Resize."""
    import onnx

    proto = onnx.shape_inference.infer_shapes(onnx.load(str(model)), data_prop=True)
    graph = proto.graph
    shapes = {v.name: _dims(v) for v in [*graph.value_info, *graph.input, *graph.output]}

    def elements(name: str) -> float:
        dims = shapes.get(name)
        if not dims or any(d is None for d in dims):
            raise ValueError(f"{model}: no static shape at {name}")
        return float(np.prod([int(d or 0) for d in dims]))

    total = onnx_flops(model)
    for node in graph.node:
        if node.op_type in ELEMENTWISE:
            total += elements(node.output[0])
        elif node.op_type == "AveragePool":
            kernel = next(a.ints for a in node.attribute if a.name == "kernel_shape")
            total += elements(node.output[0]) * float(np.prod(kernel))
        elif node.op_type == "Resize":
            total += RESIZE_LINEAR * elements(node.output[0])
        elif node.op_type == "ReduceSum":
            total += elements(node.input[0])
    return total


def _export(module: torch.nn.Module, example: tuple, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        torch.onnx.export(module.eval(), example, str(path), dynamo=False, opset_version=17)
    return path


def refiner_graph(kind: str, base: tuple[int, int], full: tuple[int, int], path: Path) -> Path:
    """A fresh refiner of ``kind`` alone, exported at static sizes (its three inputs: the
    full-resolution pair, the base-size pair, the base's logits)."""
    example = (
        torch.zeros(1, 6, *full),
        torch.zeros(1, 6, *base),
        torch.zeros(1, len(TASKS), *base),
    )
    return _export(REFINERS[kind](), example, path)


def base_graph(name: str, size: tuple[int, int], path: Path) -> Path:
    """The network ``name`` alone at ``size``, exported (its training form's fused maps)."""
    from maskdepth.train.models import InferenceModel

    example = (torch.zeros(1, 3, *size), torch.zeros(1, 3, *size))
    return _export(InferenceModel(create_model(name)), example, path)


def cpu_ms(path: Path, repeats: int = 5) -> float:
    """Best-of-``repeats`` onnxruntime CPU milliseconds of one run on zeros."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
        for i in session.get_inputs()
    }
    return min(time_calls(lambda: session.run(None, feed), warmup=1, iters=repeats))


def report(
    base: tuple[int, int] = BASE_16_9, full: tuple[int, int] = FULL_720P, ms: bool = True
) -> dict[str, float]:
    """GFLOP of u2netp-md at 224 and of each refiner at ``full`` (base ``base``), and the
    refiners' CPU ms, measured side by side in one run."""
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        figures["base_224_gflop"] = (
            onnx_flops(base_graph("u2netp-md", (224, 224), Path(tmp) / "base.onnx")) / 1e9
        )
        for kind in REFINERS:
            path = refiner_graph(kind, base, full, Path(tmp) / f"{kind}.onnx")
            figures[f"{kind}_gflop"] = graph_flops(path) / 1e9
            if ms:
                figures[f"{kind}_cpu_ms"] = cpu_ms(path)
    return figures


if __name__ == "__main__":
    for key, value in report().items():
        print(f"{key:>18}: {value:.3f}")
