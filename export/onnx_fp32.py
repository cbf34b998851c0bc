"""PyTorch -> ONNX fp32: the exported form of a model, with its self-description inside.

Exporter choice: the TorchScript exporter (``dynamo=False``). On u2netp-md at 96x96 on 2 CPU
cores it exports in ~4 s against ~35 s for the dynamo exporter, and after onnxslim its graph ran
as fast in onnxruntime as dynamo's, so it keeps tests and the demo fast without onnxscript. It
is deprecated in PyTorch but still ships; when it goes, pass ``dynamo=True`` (opset 18+) here,
nothing else changes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import onnx
import torch
from torch import nn

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import INPUT_NAMES, OUTPUT_NAMES, ModelInfo
from maskdepth.train.models.u2net import InferenceModel

MIN_OPSET = 13  # Resize with scales/sizes as U2-Net's upsampling needs
MAX_OPSET = torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
TWO_GB = 2**31


def check_opset(opset: int) -> int:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise MaskDepthError(
            f"--opset {opset}: the installed PyTorch exporter writes opsets {MIN_OPSET} to "
            f"{MAX_OPSET}"
        )
    return opset


def dynamic_axes(dynamic: tuple[str, ...]) -> dict[str, dict[int, str]]:
    axes = {0: "batch"}
    if "height" in dynamic:
        axes |= {2: "height", 3: "width"}
    return {name: dict(axes) for name in INPUT_NAMES + OUTPUT_NAMES}


# Graphs traced in this process, newest last: the serialized graph by fingerprint(model, info,
# opset). Exporting the same weights again (the fp16 and INT8 files after fp32, a sensitivity
# sweep's rows, the demo's three formats) reuses the trace and onnxslim's pass, ~4 s each time.
# At most TRACED_KEPT graphs and TRACED_BYTES in all (the newest is always kept).
_TRACED: OrderedDict[str, bytes] = OrderedDict()
TRACED_KEPT, TRACED_BYTES = 4, 512 * 2**20


def export_graph(model: nn.Module, info: ModelInfo, opset: int) -> onnx.ModelProto:
    """The ONNX graph of ``model`` (see :func:`trace_graph`), a fresh copy of the one traced
    before in this process when the weights, facts and opset are the same. The fingerprint
    does not see the model's code: a caller that changes it between exports (a benchmark
    patching the upsampling) calls :func:`trace_graph`."""
    key = fingerprint(model, info, opset)
    if key not in _TRACED:
        _TRACED[key] = trace_graph(model, info, opset).SerializeToString()
    _TRACED.move_to_end(key)
    while len(_TRACED) > 1 and (
        len(_TRACED) > TRACED_KEPT or sum(map(len, _TRACED.values())) > TRACED_BYTES
    ):
        _TRACED.popitem(last=False)
    return onnx.load_from_string(_TRACED[key])


def fingerprint(model: nn.Module, info: ModelInfo, opset: int) -> str:
    """sha256 of the model's class, every tensor of its state (names, dtypes, shapes, bytes),
    ``info`` and ``opset``: what its traced graph is a function of."""
    digest = hashlib.sha256(f"{type(model).__qualname__}|{info!r}|{opset}".encode())
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"|{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def trace_graph(model: nn.Module, info: ModelInfo, opset: int) -> onnx.ModelProto:
    """Trace ``model`` (a zoo model in eval mode) into an ONNX graph with the metadata inside.

    A refined model (``info.refine``) is traced at its full training size with dynamic height
    and width. Its Resize to the base size has sizes ``Concat(Shape(x)[0:2], CONSTANT (h,
    w))``: the height and width an initializer, batch and channels the input's. Not the
    constant ``(h, w)`` on opset 18's ``axes``: TensorRT for RTX 1.7's parser refuses a Resize
    with ``axes`` ("axis 0 with inherently negative length"), while these sizes are shape
    tensors TensorRT resolves per profile (what it refuses are data-dependent scales)."""
    refine = info.refine
    if refine is None:
        height, width = info.check_size(info.size)  # the model config's stride rule
        wrapped = InferenceModel(model).eval()
    else:  # the base size was checked by ModelInfo; the full size is free
        height, width = info.size
        wrapped = InferenceModel(model, base_size=refine.base_size).eval()
        info = replace(info, dynamic=("batch", "height", "width"))
    example = tuple(torch.zeros(1, 3, height, width) for _ in INPUT_NAMES)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer warnings
        path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            wrapped,
            example,
            str(path),
            dynamo=False,
            opset_version=check_opset(opset),
            input_names=list(INPUT_NAMES),
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic_axes(info.dynamic),
            do_constant_folding=True,
        )
        graph = onnx.load(str(path))
    graph = slim(graph)
    one_channel_outputs(graph)
    set_metadata(graph, info)
    return graph


def one_channel_outputs(graph: onnx.ModelProto) -> None:
    """Write the outputs' channel dimension (1, as OUTPUTS says) where the exporter could not
    infer it (a refined model's box filters): a server's config (Triton) checks dims against
    the graph's. An unrefined graph has it already and is left as it is."""
    for output in graph.graph.output:
        dims = output.type.tensor_type.shape.dim
        if len(dims) == 4 and not dims[1].HasField("dim_value"):
            dims[1].Clear()
            dims[1].dim_value = 1


def slim(graph: onnx.ModelProto) -> onnx.ModelProto:
    """onnxslim when installed: folds the exporter's shape arithmetic; without it the graph is
    valid, only larger."""
    try:
        import onnxslim
    except ImportError:
        return graph
    return onnxslim.slim(graph)


def set_metadata(graph: onnx.ModelProto, info: ModelInfo) -> None:
    """Replace the maskdepth entries of ``metadata_props`` with ``info``'s."""
    props = info.to_props()
    kept = [p for p in graph.metadata_props if p.key not in props]
    del graph.metadata_props[:]
    graph.metadata_props.extend(kept)
    for key, value in props.items():
        graph.metadata_props.add(key=key, value=value)
    graph.producer_name = "maskdepth"
    graph.doc_string = f"maskdepth {info.model} ({info.precision}): bg + scene -> mask + depth"


def save_model(graph: onnx.ModelProto, path: Path) -> Path:
    """Check ``graph`` fully, then write it under a temporary name and rename it into ``path``
    (weights in the file unless it is over 2 GB, then beside it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would hide the model from other users
    try:
        if graph.ByteSize() >= TWO_GB:
            onnx.save(graph, tmp, save_as_external_data=True, location=path.name + ".data")
            onnx.checker.check_model(tmp, full_check=True)
        else:
            onnx.checker.check_model(graph, full_check=True)
            onnx.save(graph, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
