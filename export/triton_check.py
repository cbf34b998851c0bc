"""Check a Triton repository the way the server's config loader would, without a server:
every ``config.pbtxt`` parses into tritonclient's ``ModelConfig`` (protobuf's text format
refuses unknown fields and wrong enum values), agrees with the ONNX graph it serves (names,
data types, dims, a symbolic batch dimension when it batches), and the ensemble's maps are
complete and type-consistent (Triton's rule for dims: equal, -1 matching anything, or equal
once a batching model's dims get the batch dimension in front).

Needs the ``[triton]`` extra (tritonclient) and onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from maskdepth.runtime.errors import MaskDepthError, require

# ONNX TensorProto element types -> Triton's DataType names
_ONNX_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 6: "TYPE_INT32", 7: "TYPE_INT64", 10: "TYPE_FP16"}


def parse_config(path: Path) -> Any:
    """``path`` as a ``ModelConfig``, or one line naming what the text format refused."""
    model_config = require("tritonclient.grpc.model_config_pb2", "triton", "checking configs")
    text_format = require("google.protobuf.text_format", "triton", "checking configs")
    try:
        return text_format.Parse(Path(path).read_text(), model_config.ModelConfig())
    except text_format.ParseError as exc:
        raise MaskDepthError(f"{path}: not a Triton model config: {exc}") from None


def load_configs(root: Path) -> dict[str, Any]:
    """Every model's parsed config in the repository ``root``, by model name (each config's name
    must be its folder's)."""
    configs = {}
    for path in sorted(Path(root).glob("*/config.pbtxt")):
        config = parse_config(path)
        if config.name != path.parent.name:
            raise MaskDepthError(f"{path}: names model {config.name!r} in {path.parent.name}/")
        configs[config.name] = config
    if not configs:
        raise MaskDepthError(f"{root}: no model configs")
    return configs


def type_name(value: int) -> str:
    model_config = require("tritonclient.grpc.model_config_pb2", "triton", "checking configs")
    return model_config.DataType.Name(value)


def graph_problems(config: Any, onnx_path: Path) -> list[str]:
    """How ``config`` (a batching or non-batching ``ModelConfig``) disagrees with the ONNX graph
    at ``onnx_path``: names, data types, dims (-1 for a symbolic one), the batch dimension."""
    onnx = require("onnx", "export", "checking a Triton config against its ONNX graph")
    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    problems = []
    for kind, declared, tensors in (("input", config.input, graph.input),
                                    ("output", config.output, graph.output)):  # fmt: skip
        actual = {t.name: t.type.tensor_type for t in tensors}
        if sorted(actual) != sorted(t.name for t in declared):
            problems.append(f"{kind}s {sorted(t.name for t in declared)}, graph {sorted(actual)}")
            continue
        for tensor in declared:
            problems += _tensor_problems(config, tensor, actual[tensor.name])
    return problems


def _tensor_problems(config: Any, tensor: Any, graph_type: Any) -> list[str]:
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in graph_type.shape.dim]
    symbolic = [not d.HasField("dim_value") for d in graph_type.shape.dim]
    problems = []
    wanted = _ONNX_TYPES.get(graph_type.elem_type, f"onnx type {graph_type.elem_type}")
    if type_name(tensor.data_type) != wanted:
        problems.append(f"{tensor.name}: {type_name(tensor.data_type)}, graph {wanted}")
    if config.max_batch_size > 0:
        if symbolic[:1] != [True]:
            problems.append(f"{tensor.name}: batches, but the graph's batch dimension is fixed")
        dims = dims[1:]
    if list(tensor.dims) != dims:
        problems.append(f"{tensor.name}: dims {list(tensor.dims)}, graph {dims}")
    return problems


def ensemble_problems(configs: dict[str, Any], name: str = "maskdepth") -> list[str]:
    """How the ensemble ``name``'s steps fail to connect: a step input not fed, a map naming a
    tensor its model does not have, a tensor read before any step makes it, an ensemble output
    no step makes, or a tensor whose types or dims differ between its ends."""
    ensemble = configs[name]
    # ensemble tensor -> (data type, dims, full dims) where it comes from
    made = {t.name: (t.data_type, list(t.dims), list(t.dims)) for t in ensemble.input}
    problems = []
    for step in ensemble.ensemble_scheduling.step:
        model = configs.get(step.model_name)
        if model is None:
            problems.append(f"step {step.model_name}: no such model in the repository")
            continue
        inputs = {t.name: _ends(model, t) for t in model.input}
        outputs = {t.name: _ends(model, t) for t in model.output}
        missing = sorted(set(inputs) - set(step.input_map))
        problems += [f"{step.model_name}: input {n} is not fed" for n in missing]
        for key, tensor in step.input_map.items():
            if key not in inputs:
                problems.append(f"{step.model_name}: input_map names no input {key}")
            elif tensor not in made:
                problems.append(f"{step.model_name}: reads {tensor} before any step makes it")
            else:
                problems += _consistency(tensor, made[tensor], inputs[key])
        for key, tensor in step.output_map.items():
            if key not in outputs:
                problems.append(f"{step.model_name}: output_map names no output {key}")
            else:
                made[tensor] = outputs[key]
    for tensor in ensemble.output:
        if tensor.name not in made:
            problems.append(f"ensemble output {tensor.name} is made by no step")
        else:
            problems += _consistency(tensor.name, made[tensor.name], _ends(ensemble, tensor))
    return problems


def _ends(config: Any, tensor: Any) -> tuple[int, list[int], list[int]]:
    dims = list(tensor.dims)
    return tensor.data_type, dims, ([-1] + dims if config.max_batch_size > 0 else dims)


def _consistency(name: str, left: tuple, right: tuple) -> list[str]:
    if left[0] != right[0]:
        return [f"{name}: {type_name(left[0])} on one end, {type_name(right[0])} on the other"]
    if not (_dims_match(left[1], right[1]) or _dims_match(left[2], right[2])):
        return [f"{name}: dims {left[2]} on one end, {right[2]} on the other"]
    return []


def _dims_match(left: list[int], right: list[int]) -> bool:
    return len(left) == len(right) and all(a == b or -1 in (a, b) for a, b in zip(left, right))


def check_repository(root: Path, net: str = "maskdepth_net") -> dict[str, Any]:
    """All of the above on a repository ``maskdepth export --format triton`` wrote; raises one
    error listing every problem, else returns the parsed configs."""
    configs = load_configs(root)
    problems = ensemble_problems(configs)
    graph = Path(root) / net / "1" / "model.onnx"
    if graph.is_file():
        problems += [f"{net}: {p}" for p in graph_problems(configs[net], graph)]
    for name, config in configs.items():
        problems += [f"{name}: {p}" for p in warmup_problems(config, Path(root) / name)]
    if problems:
        raise MaskDepthError(f"{root}: " + "; ".join(problems))
    return configs


def warmup_problems(config: Any, model_dir: Path) -> list[str]:
    """Warm-up requests that name no input, or differ from it in type or dims (batch dimension
    left out for a batching model), or whose data file is missing or of another size."""
    inputs = {t.name: t for t in config.input}
    problems = []
    for warmup in config.model_warmup:
        for name, data in warmup.inputs.items():
            tensor = inputs.get(name)
            if tensor is None:
                problems.append(f"warm-up {warmup.name}: no input {name}")
                continue
            same = _dims_match(list(data.dims), list(tensor.dims))
            if data.data_type != tensor.data_type or not same:
                problems.append(f"warm-up {warmup.name}: {name} differs from the input")
            if data.input_data_file:
                problems += _data_file_problems(warmup.name, name, data, Path(model_dir))
    return problems


def _data_file_problems(warmup: str, name: str, data: Any, model_dir: Path) -> list[str]:
    path = model_dir / "warmup" / data.input_data_file
    width = {"TYPE_INT32": 4, "TYPE_FP32": 4, "TYPE_UINT8": 1}.get(type_name(data.data_type), 0)
    count = 1
    for dim in data.dims:
        count *= dim
    if not path.is_file() or path.stat().st_size != width * count:
        return [f"warm-up {warmup}: {name}'s data file {path} is missing or not {width * count} B"]
    return []
