"""`maskdepth export --format triton`: the model repository a stock ``tritonserver
--model-repository REPO`` loads. Its layout::

    REPO/model_info.json                 ModelInfo.to_dict(), read by pre and post
    REPO/README.md                       how to start the server and query it
    REPO/maskdepth/config.pbtxt          the ensemble: scene, bg -> mask, depth
    REPO/maskdepth_pre/1/model.py        python backend: maskdepth.runtime.triton.steps.preprocess
    REPO/maskdepth_net/1/model.onnx      onnxruntime_onnx (or model.plan: tensorrt_plan; or
                                         model.onnx + model.py: the python backend)
    REPO/maskdepth_post/1/model.py       python backend: ...steps.postprocess
    REPO/maskdepth_post/warmup/size      the warm-up request's scene size (raw int32)

The network file itself is made (and gated) by the export pipeline; this module writes the
rest. The configs are Triton's protobuf text format (``model_config.proto``), written by hand
so that the export needs no tritonclient; the tests parse each one into tritonclient's
``ModelConfig``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maskdepth.runtime.engine_sidecar import check_sidecar, read_sidecar, sha256_of
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.model_info import INPUT_NAMES, OUTPUT_NAMES, ModelInfo
from maskdepth.runtime.remote import INFO_PARAMETER
from maskdepth.runtime.runners.cuda import GpuInfo
from maskdepth.runtime.triton import steps
from maskdepth.runtime.triton.steps import ENSEMBLE, NET, POST, PRE

from .options import TRITON_NETWORKS as NETWORKS
from .triton_readme import readme

NET_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.onnx"}
STEP_FILES = {PRE: "maskdepth_pre.py", POST: "maskdepth_post.py", NET: "maskdepth_net.py"}
# How long the net's dynamic batcher holds a request for others to join it: 2 ms is small next
# to a CPU inference (tens of ms) and lets concurrent clients share a batch.
QUEUE_DELAY_US = 2000
# onnxruntime's TensorRT accelerator: the graph's precision -> its precision_mode (fp32 graphs
# run without it; an INT8 graph is a Q/DQ one, which needs no calibration table).
ACCELERATED = {"fp16": "FP16", "int8": "INT8"}


class Enum(str):
    """A protobuf enum value: written bare (``TYPE_FP32``), not quoted."""


@dataclass(frozen=True)
class TritonSettings:
    network: str = "onnxruntime"
    max_batch: int = 8  # the net's max_batch_size
    instances: int = 1  # each model's instance_group count
    precision: str = "fp32"  # the network's: its graph's, or the plan's

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise MaskDepthError(
                f"--triton-network {self.network}: expected one of {', '.join(NETWORKS)}"
            )


# ------------------------------------------------------------------------------ text format


def pbtxt(message: dict, indent: int = 0) -> str:
    """``message`` in protobuf text format: dicts are messages, a list of dicts a repeated
    message (maps are lists of ``{"key", "value"}``), a list of scalars a repeated scalar."""
    pad = "  " * indent
    lines = []
    for name, value in message.items():
        if isinstance(value, dict):
            lines += [f"{pad}{name} {{", pbtxt(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            for item in value:
                lines += [f"{pad}{name} {{", pbtxt(item, indent + 1), f"{pad}}}"]
        elif isinstance(value, list):
            lines.append(f"{pad}{name}: [{', '.join(_scalar(v) for v in value)}]")
        else:
            lines.append(f"{pad}{name}: {_scalar(value)}")
    return "\n".join(line for line in lines if line)


def _scalar(value: object) -> str:
    if isinstance(value, Enum):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)  # a whole number


def _tensor(name: str, data_type: str, dims: list[int]) -> dict:
    return {"name": name, "data_type": Enum(data_type), "dims": dims}


def _instances(count: int, kind: str) -> list[dict]:
    return [{"count": count, "kind": Enum(kind)}]


def _warmup(inputs: dict[str, dict], batch_size: int = 1, name: str = "warmup") -> dict:
    entries = [{"key": key, "value": value} for key, value in inputs.items()]
    return {"name": name, "batch_size": batch_size, "count": 1, "inputs": entries}


def _zeros(data_type: str, dims: list[int]) -> dict:
    return {"data_type": Enum(data_type), "dims": dims, "zero_data": True}


# ------------------------------------------------------------------------------ configs


def net_dims(info: ModelInfo) -> tuple[list[int], list[int]]:
    """(input dims, output dims) of the net without the batch dimension: fixed at the export
    size, or -1 for a graph exported with --dynamic."""
    height, width = (-1, -1) if "height" in info.dynamic else info.size
    return [3, height, width], [1, height, width]


def net_config(info: ModelInfo, settings: TritonSettings) -> dict:
    """maskdepth_net: the network with dynamic batching."""
    inputs, outputs = net_dims(info)
    height, width = info.size
    config: dict = {"name": NET}
    config |= {
        "onnxruntime": {"platform": "onnxruntime_onnx"},
        "tensorrt": {"platform": "tensorrt_plan"},
        "python": {"backend": "python"},
    }[settings.network]
    config |= {
        "max_batch_size": settings.max_batch,
        "input": [_tensor(name, "TYPE_FP32", inputs) for name in INPUT_NAMES],
        "output": [_tensor(name, "TYPE_FP32", outputs) for name in OUTPUT_NAMES],
        "dynamic_batching": {"max_queue_delay_microseconds": QUEUE_DELAY_US},
        "instance_group": _instances(settings.instances, _net_kind(settings)),
    }
    mode = ACCELERATED.get(settings.precision) if settings.network == "onnxruntime" else None
    if mode:
        accelerator = {"name": "tensorrt", "parameters": [{"key": "precision_mode", "value": mode}]}
        config["optimization"] = {"execution_accelerators": {"gpu_execution_accelerator": [
            accelerator]}}  # fmt: skip
    example = {name: _zeros("TYPE_FP32", [3, height, width]) for name in INPUT_NAMES}
    config["model_warmup"] = [
        _warmup(example, 1, "batch_1"),
        _warmup(example, settings.max_batch, f"batch_{settings.max_batch}"),
    ]
    return config


def _net_kind(settings: TritonSettings) -> str:
    """The python network runs maskdepth's runtime on the CPU; a plan and onnxruntime's TensorRT
    accelerator need a GPU; plain onnxruntime takes a GPU where the server has one."""
    if settings.network == "python":
        return "KIND_CPU"
    if settings.network == "tensorrt" or settings.precision in ACCELERATED:
        return "KIND_GPU"
    return "KIND_AUTO"


def pre_config(info: ModelInfo, settings: TritonSettings) -> dict:
    """maskdepth_pre: one request at a time (any image size), so no batching of its own. Its
    planes have the net's dims (a refined model's change with the frame: -1)."""
    height, width = info.size
    planes = [1, *net_dims(info)[0]]
    image = [-1, -1, 3]
    return {
        "name": PRE,
        "backend": "python",
        "max_batch_size": 0,
        "input": [_tensor(name, "TYPE_UINT8", image) for name in (steps.SCENE, steps.BG)],
        "output": [
            _tensor("net_bg", "TYPE_FP32", planes),
            _tensor("net_scene", "TYPE_FP32", planes),
            _tensor("size", "TYPE_INT32", [2]),
        ],
        "instance_group": _instances(settings.instances, "KIND_CPU"),
        "model_warmup": [
            _warmup({name: _zeros("TYPE_UINT8", [height, width, 3]) for name in ("scene", "bg")})
        ],
    }


def post_config(info: ModelInfo, settings: TritonSettings) -> dict:
    """maskdepth_post: the maps back at the scene's size (the ``size`` pre passed on)."""
    maps, example = [1, *net_dims(info)[1]], [1, 1, *info.size]
    return {
        "name": POST,
        "backend": "python",
        "max_batch_size": 0,
        "input": [
            _tensor("net_mask", "TYPE_FP32", maps),
            _tensor("net_depth", "TYPE_FP32", maps),
            _tensor("size", "TYPE_INT32", [2]),
        ],
        "output": [_tensor(name, "TYPE_FP32", [-1, -1]) for name in OUTPUT_NAMES],
        "instance_group": _instances(settings.instances, "KIND_CPU"),
        "model_warmup": [
            _warmup({
                "net_mask": _zeros("TYPE_FP32", example),
                "net_depth": _zeros("TYPE_FP32", example),
                "size": {"data_type": Enum("TYPE_INT32"), "dims": [2],
                         "input_data_file": WARMUP_SIZE},
            })
        ],
    }  # fmt: skip


WARMUP_SIZE = "size"  # REPO/maskdepth_post/warmup/size: Triton reads warm-up files there


def ensemble_config(info: ModelInfo | None = None) -> dict:
    """maskdepth: pre -> net -> post, scene and bg in, mask and depth out; ``info`` in its
    parameters (``maskdepth.model_info``: the client, maskdepth.runtime.remote, reads it)."""

    def step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> dict:
        return {
            "model_name": model,
            "model_version": -1,
            "input_map": [{"key": k, "value": v} for k, v in inputs.items()],
            "output_map": [{"key": k, "value": v} for k, v in outputs.items()],
        }

    return {
        "name": ENSEMBLE,
        "platform": "ensemble",
        "max_batch_size": 0,
        "input": [_tensor(name, "TYPE_UINT8", [-1, -1, 3]) for name in (steps.SCENE, steps.BG)],
        "output": [_tensor(name, "TYPE_FP32", [-1, -1]) for name in OUTPUT_NAMES],
        "ensemble_scheduling": {"step": [
            step(PRE, {"scene": "scene", "bg": "bg"},
                 {"net_bg": "net_bg", "net_scene": "net_scene", "size": "size"}),
            step(NET, {"bg": "net_bg", "scene": "net_scene"},
                 {"mask": "net_mask", "depth": "net_depth"}),
            step(POST, {"net_mask": "net_mask", "net_depth": "net_depth", "size": "size"},
                 {"mask": "mask", "depth": "depth"}),
        ]},
    } | ({} if info is None else {"parameters": [{"key": INFO_PARAMETER, "value": {
        "string_value": json.dumps(info.to_dict())}}]})  # fmt: skip


# ------------------------------------------------------------------------------ repository


def network_path(root: Path, network: str) -> Path:
    """Where the network file of a repository in ``root`` goes (the export writes it there)."""
    return root / NET / "1" / NET_FILES[network]


def write_repository(root: Path, info: ModelInfo, settings: TritonSettings) -> None:
    """Write the repository into ``root`` around its network file, already in place
    (:func:`network_path`)."""
    configs = {
        ENSEMBLE: ensemble_config(info),
        PRE: pre_config(info, settings),
        NET: net_config(info, settings),
        POST: post_config(info, settings),
    }
    if not network_path(root, settings.network).is_file():
        raise MaskDepthError(f"{network_path(root, settings.network)}: no network file")
    for model, config in configs.items():
        (root / model / "1").mkdir(parents=True, exist_ok=True)
        (root / model / "config.pbtxt").write_text(pbtxt(config) + "\n")
    source = Path(steps.__file__).parent
    models = [PRE, POST] + ([NET] if settings.network == "python" else [])
    for model in models:
        shutil.copyfile(source / STEP_FILES[model], root / model / "1" / "model.py")
    (root / POST / "warmup").mkdir()
    size = np.asarray(info.size, np.int32).tobytes()
    write_bytes_atomic(root / POST / "warmup" / WARMUP_SIZE, size)
    (root / steps.INFO_FILE).write_text(json.dumps(info.to_dict(), indent=2) + "\n")
    (root / "README.md").write_text(readme(info, settings.network, settings.max_batch))


def check_repository_out(out: Path) -> Path:
    """Refuse, before any work, an ``--out`` that exists (a repository is written whole, under
    a temporary name, then renamed) or whose parent cannot be written."""
    if out.exists():
        raise MaskDepthError(
            f"--out {out}: already exists; a Triton repository is written into a new folder "
            "(remove it or choose another name)"
        )
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MaskDepthError(f"--out {out}: cannot create {out.parent}: {exc.strerror}") from None
    return out


def check_plan(
    plan: Path, max_batch: int, tensorrt_version: str | None, gpu: GpuInfo | None
) -> None:
    """Refuse in one line a plan Triton's tensorrt_plan backend would not run as configured: no
    or another plan's sidecar, TensorRT for RTX, a profile below ``max_batch``, or (the
    sidecar's own check) another TensorRT version or GPU than this machine's, the server the
    repository is built on (``tensorrt_version`` None: TensorRT is not installed here)."""
    sidecar = read_sidecar(plan)
    if sidecar["flavour"] != "tensorrt":
        raise MaskDepthError(
            f"{plan}: built with {sidecar['flavour']}; Triton's tensorrt_plan backend runs "
            "TensorRT plans: build one with tensorrt on the server's GPU"
        )
    recorded = (sidecar.get("plan") or {}).get("sha256")
    if recorded != sha256_of(plan):
        raise MaskDepthError(f"{plan}: its sidecar describes another plan (sha256 differs)")
    shapes: dict = next(iter(sidecar["profile"].values()), {})
    largest = int(shapes.get("max", [0])[0])
    if largest < max_batch:
        raise MaskDepthError(
            f"{plan}: its profile's largest batch is {largest}, below --max-batch {max_batch}; "
            f"build it with --max-batch {max_batch} or lower --max-batch"
        )
    check_sidecar(
        sidecar, tensorrt_version, gpu.compute_capability if gpu else None,
        gpu_name=gpu.name if gpu else None, engine_path=plan,
    )  # fmt: skip
