"""The model config (timm's pretrained cfg): every fact about a model that training, export and
the runtime need, in one object. Each variant declares its default beside its builder
(``maskdepth.train.models.configs``); training fills in the data's mean/std and depth scale and
writes it into the checkpoint (``config``); export copies it into the ONNX ``metadata_props``
and the engine sidecar; the runtime reads it back, so a model file needs no config file and no
flags repeated at load time.

Every value is a string in ``metadata_props``; structured values are JSON. Keys::

    maskdepth.format         "maskdepth-model" (how the runtime recognises its own files)
    maskdepth.format_version "1" ("2" for a refined model: older runtimes refuse it)
    maskdepth.version        maskdepth version that exported the file
    maskdepth.model          model name in the zoo, e.g. "u2netp-md"
    maskdepth.precision      "fp32" | "fp16" | "int8"
    maskdepth.inputs         {"bg": ..., "scene": ...}: layout and meaning of each input
    maskdepth.outputs        {"mask": ..., "depth": ...}: meaning of each output
    maskdepth.preprocessing  Preprocessing.to_dict(): size, mean, std
    maskdepth.depth_scale_m  metres per depth unit, or "" when the training data had no scale
    maskdepth.manifest_hash  sha256 of the training data's manifest, or ""
    maskdepth.dynamic        ["batch"] or ["batch", "height", "width"]
    maskdepth.stride         sides must be multiples of it (absent in older files: 32)
    maskdepth.refine         RefineInfo.to_dict(), only in a refined model's file: the refiner's
                             kind, the base size the U2-Net runs at inside the graph, and the
                             full-resolution input range (min/max height and width)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import MaskDepthError
from .preprocess import Preprocessing

FORMAT = "maskdepth-model"
# A refined model's file says 2, so that a runtime from before the refiner refuses it ("upgrade")
# instead of running it on frames squashed to its size; every other file still says 1.
PLAIN_FORMAT_VERSION, REFINED_FORMAT_VERSION = 1, 2
FORMAT_VERSION = REFINED_FORMAT_VERSION  # the newest this runtime reads
PREFIX = "maskdepth."
PRECISIONS = ("fp32", "fp16", "int8")
STRIDE = 32  # the U2-Net family pools five times by 2: sides that are multiples of 32 export
INPUT_NAMES = ("bg", "scene")
OUTPUT_NAMES = ("mask", "depth")
INPUTS = {
    "bg": "float32 N x 3 x H x W, RGB, (pixel / 255 - mean[0:3]) / std[0:3]: the empty scene",
    "scene": "float32 N x 3 x H x W, RGB, (pixel / 255 - mean[3:6]) / std[3:6]: the scene",
}
OUTPUTS = {
    "mask": "float32 N x 1 x H x W, probability in [0, 1] that a pixel belongs to a new object",
    "depth": "float32 N x 1 x H x W, depth in [0, 1], 0 nearest; times depth_scale_m = metres",
}


def _pair(value: Sequence[int], name: str) -> tuple[int, int]:
    values = [int(v) for v in value]
    if len(values) != 2 or min(values) < 1:
        raise MaskDepthError(f"refine {name} {list(value)}: expected (height, width) >= 1")
    return values[0], values[1]


@dataclass(frozen=True)
class RefineInfo:
    """A refined model's facts: the refiner's ``kind``, the ``base_size`` (height, width) the
    U2-Net runs at inside the graph (each side a multiple of the stride), and the range of
    full-resolution inputs the graph (and a TensorRT profile) accepts, ``min_size`` to
    ``max_size``. The model's ``preprocessing.size`` is then the full training resolution."""

    kind: str
    base_size: tuple[int, int]
    min_size: tuple[int, int]
    max_size: tuple[int, int]

    def __post_init__(self) -> None:
        for name in ("base_size", "min_size", "max_size"):
            object.__setattr__(self, name, _pair(getattr(self, name), name))
        if any(lo > hi for lo, hi in zip(self.min_size, self.max_size)):
            raise MaskDepthError(
                f"refine range {list(self.min_size)} to {list(self.max_size)}: min above max"
            )

    def fits(self, size: Sequence[int]) -> bool:
        """Whether a full-resolution (height, width) is inside the accepted range."""
        height, width = (int(v) for v in size)
        low, high = self.min_size, self.max_size
        return low[0] <= height <= high[0] and low[1] <= width <= high[1]

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "base_size": list(self.base_size),
            "min_size": list(self.min_size),
            "max_size": list(self.max_size),
        }

    @classmethod
    def from_dict(cls, data: dict) -> RefineInfo:
        return cls(
            kind=str(data["kind"]),
            base_size=tuple(data["base_size"]),
            min_size=tuple(data["min_size"]),
            max_size=tuple(data["max_size"]),
        )


@dataclass(frozen=True)
class ModelInfo:
    """The config of a maskdepth model: pre-processing, output meaning, depth scale, stride; for
    an exported file also its precision, dynamic axes and the maskdepth version."""

    model: str
    preprocessing: Preprocessing
    precision: str = "fp32"
    depth_scale_m: float | None = None
    manifest_hash: str | None = None
    dynamic: tuple[str, ...] = ("batch",)
    version: str = ""
    inputs: dict = field(default_factory=lambda: dict(INPUTS))
    outputs: dict = field(default_factory=lambda: dict(OUTPUTS))
    stride: int = STRIDE
    refine: RefineInfo | None = None  # a refined model's base size and input range

    def __post_init__(self) -> None:
        if self.refine is not None:
            self.check_size(self.refine.base_size)
        if self.precision not in PRECISIONS:
            raise MaskDepthError(
                f"precision {self.precision!r}: expected one of {', '.join(PRECISIONS)}"
            )

    @property
    def size(self) -> tuple[int, int]:
        return self.preprocessing.size

    def with_precision(self, precision: str) -> ModelInfo:
        return replace(self, precision=precision)

    def check_size(self, size: int | Sequence[int]) -> tuple[int, int]:
        """(height, width) of ``size`` (one side: square), or one line saying why this model
        cannot export at it: every side a multiple of :attr:`stride`."""
        height, width = (size, size) if isinstance(size, int) else (int(v) for v in size)
        if min(height, width) < self.stride or height % self.stride or width % self.stride:
            shown = f"{height}" if isinstance(size, int) else f"{height} {width}"
            below = max(self.stride, height // self.stride * self.stride)
            raise MaskDepthError(
                f"--size {shown}: each side must be a multiple of {self.stride} for "
                f"{self.model} to export (e.g. {below} or {below + self.stride})"
            )
        return height, width

    def with_size(self, size: int | Sequence[int]) -> ModelInfo:
        """This config at another (checked) input size."""
        return replace(self, preprocessing=replace(self.preprocessing, size=self.check_size(size)))

    def to_props(self) -> dict[str, str]:
        """The ``metadata_props`` entries (all strings)."""
        values = {
            "format": FORMAT,
            "format_version": str(
                PLAIN_FORMAT_VERSION if self.refine is None else REFINED_FORMAT_VERSION
            ),
            "version": self.version,
            "model": self.model,
            "precision": self.precision,
            "inputs": json.dumps(self.inputs),
            "outputs": json.dumps(self.outputs),
            "preprocessing": json.dumps(self.preprocessing.to_dict()),
            "depth_scale_m": "" if self.depth_scale_m is None else repr(float(self.depth_scale_m)),
            "manifest_hash": self.manifest_hash or "",
            "dynamic": json.dumps(list(self.dynamic)),
            "stride": str(self.stride),
        }
        if self.refine is not None:  # only then: an unrefined model's file is as it was
            values["refine"] = json.dumps(self.refine.to_dict())
        return {PREFIX + key: value for key, value in values.items()}

    def to_dict(self) -> dict:
        """Plain JSON-able form (the engine sidecar's ``model`` entry)."""
        return {key[len(PREFIX) :]: value for key, value in self.to_props().items()}

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "model") -> ModelInfo:
        """Read :meth:`to_props` back; a file not exported by maskdepth is one clear error."""
        values = {k[len(PREFIX) :]: v for k, v in props.items() if k.startswith(PREFIX)}
        return cls.from_dict(values, source)

    @classmethod
    def from_dict(cls, values: dict, source: str = "model") -> ModelInfo:
        if values.get("format") != FORMAT:
            raise MaskDepthError(
                f"{source}: no maskdepth metadata; export the model with 'maskdepth export'"
            )
        version = int(values.get("format_version", 0))
        if version > FORMAT_VERSION:
            raise MaskDepthError(
                f"{source}: metadata format {version} is newer than this maskdepth reads "
                f"({FORMAT_VERSION}); upgrade maskdepth"
            )
        try:
            scale = values.get("depth_scale_m") or ""
            return cls(
                model=values["model"],
                preprocessing=Preprocessing.from_dict(json.loads(values["preprocessing"])),
                precision=values.get("precision", "fp32"),
                depth_scale_m=float(scale) if scale else None,
                manifest_hash=values.get("manifest_hash") or None,
                dynamic=tuple(json.loads(values.get("dynamic", '["batch"]'))),
                version=values.get("version", ""),
                inputs=json.loads(values.get("inputs", "{}")) or dict(INPUTS),
                outputs=json.loads(values.get("outputs", "{}")) or dict(OUTPUTS),
                stride=int(values.get("stride") or STRIDE),
                refine=_refine(values.get("refine")),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise MaskDepthError(f"{source}: damaged maskdepth metadata ({exc})") from None


def _refine(value: str | dict | None) -> RefineInfo | None:
    if not value:
        return None
    return RefineInfo.from_dict(json.loads(value) if isinstance(value, str) else value)


def read_onnx_info(path: str | os.PathLike | bytes) -> ModelInfo:
    """A model's :class:`ModelInfo` from its ONNX file (or bytes): the one metadata reader of
    the project (runtime, export, TensorRT build). Through onnxruntime with graph optimisation
    off: reads the metadata without compiling anything, no onnx package needed."""
    from .errors import require

    if not isinstance(path, bytes) and not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such ONNX file")
    ort = require("onnxruntime", "cpu", "reading ONNX model metadata")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        model = path if isinstance(path, bytes) else str(path)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own types
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
        raise MaskDepthError(f"{_name(path)}: not a readable ONNX file: {first}") from None
    return ModelInfo.from_props(session.get_modelmeta().custom_metadata_map, _name(path))


def _name(path: str | os.PathLike | bytes) -> str:
    return "model bytes" if isinstance(path, bytes) else str(path)
