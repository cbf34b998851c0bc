"""A refined model's ONNX graph and its cost: full-resolution bg/scene in (height and width
dynamic), the resize to the base size with constant height and width inside, full-resolution
mask/depth out; the refiners' FLOPs at 1280x720 against the base network's at 224."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from maskdepth.benchmarks.refine_cost import report
from maskdepth.export.onnx_fp32 import export_graph
from maskdepth.runtime.model_info import ModelInfo, RefineInfo, read_onnx_info
from maskdepth.runtime.preprocess import Preprocessing
from maskdepth.train.models import InferenceModel, create_model
from maskdepth.train.models.refiner import POOL, REFINERS

BASE, FULL = (32, 64), (128, 256)


def _refined(kind: str) -> tuple[torch.nn.Module, ModelInfo]:
    torch.manual_seed(0)
    model = create_model("u2netp-md", refine=kind).eval()
    with torch.no_grad():  # off the identity start: the refiner's own work shows in the outputs
        for p in model.refiner.parameters():
            p.normal_(std=0.1)
    refine = RefineInfo(kind, base_size=BASE, min_size=BASE, max_size=(512, 1024))
    return model, ModelInfo("u2netp-md", Preprocessing(size=FULL), refine=refine)


def _constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            values[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    return values


def _resize_targets(graph: onnx.GraphProto) -> tuple[list, int]:
    """(the constant (h, w) of each Resize to a fixed size, how many Resizes take their size
    from another tensor's shape); fails on any Resize with data-dependent scales."""
    constants, producers = _constants(graph), {o: n for n in graph.node for o in n.output}
    fixed, shaped = [], 0
    for node in (n for n in graph.node if n.op_type == "Resize"):
        scales = node.input[2] if len(node.input) > 2 else ""
        sizes = node.input[3] if len(node.input) > 3 else ""
        if not sizes:  # the base's own upsampling: constant scales only
            assert scales in constants, f"{node.name}: scales not constant"
            continue
        assert not scales, f"{node.name}: scales and sizes"
        source = producers[sizes]
        assert source.op_type == "Concat", f"{node.name}: sizes from {source.op_type}"
        tail = source.input[-1]
        if tail in constants:  # Concat(Shape(x)[0:2], CONSTANT (h, w))
            assert producers[source.input[0]].op_type == "Slice"
            fixed.append(tuple(int(v) for v in constants[tail]))
        else:  # the upsampling back to the input's size: read from its shape
            shaped += 1
    return fixed, shaped


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(REFINERS))
def test_refined_graph_resizes_to_a_constant_base_and_runs_at_two_full_sizes(kind):
    model, info = _refined(kind)
    graph = export_graph(model, info, opset=17)
    fixed, shaped = _resize_targets(graph.graph)
    assert fixed == [(POOL * BASE[0], POOL * BASE[1])]  # then POOL x POOL averaging: the base
    assert shaped == 1  # A and b (guided) or the logits (conv) back to the input's size
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
              for i in graph.graph.input}  # fmt: skip
    assert inputs == {name: ["batch", 3, "height", "width"] for name in ("bg", "scene")}
    read = read_onnx_info(graph.SerializeToString())
    assert read.refine == info.refine and read.dynamic == ("batch", "height", "width")
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for size in (FULL, (144, 320)):  # the training size and a wider one, not a stride multiple
        bg, scene = rng.standard_normal((2, 2, 3, *size), dtype=np.float32)
        mask, depth = session.run(None, {"bg": bg, "scene": scene})
        with torch.no_grad():
            expected = InferenceModel(model, BASE)(torch.from_numpy(bg), torch.from_numpy(scene))
        assert mask.shape == depth.shape == (2, 1, *size)
        for got, want in zip((mask, depth), expected):
            assert np.abs(got - want.numpy()).max() <= 1e-4


def test_an_unrefined_graph_has_no_refine_key():
    graph = export_graph(create_model("u2netp-md").eval(), ModelInfo("u2netp-md", Preprocessing(
        size=(32, 32))), opset=17)  # fmt: skip
    assert not [p for p in graph.metadata_props if p.key == "maskdepth.refine"]
    assert read_onnx_info(graph.SerializeToString()).dynamic == ("batch",)


@pytest.mark.slow
def test_each_refiner_at_720p_costs_at_most_a_tenth_of_the_base_at_224():
    figures = report(ms=False)  # counted from the exported graphs
    assert 20 < figures["base_224_gflop"] < 50  # u2netp-md at 224: ~33.5 GFLOP
    for kind in REFINERS:
        assert 0.1 < figures[f"{kind}_gflop"] <= 0.1 * figures["base_224_gflop"], kind
