"""The lean inference side of maskdepth: numpy, OpenCV and onnxruntime, never torch."""

from .errors import MaskDepthError, MissingDependencyError
from .preprocess import Preprocessing, prepare_batch, prepare_pair, resize_image, resize_map

__all__ = [
    "MaskDepthError",
    "MissingDependencyError",
    "OnnxRuntimeRunner",
    "Preprocessing",
    "prepare_batch",
    "prepare_pair",
    "resize_image",
    "resize_map",
]


def __getattr__(name: str):
    # Backends load their library on first use, so the package imports without onnxruntime;
    # asking for one without its library raises MissingDependencyError naming the extra.
    if name == "OnnxRuntimeRunner":
        from .runners.ort import OnnxRuntimeRunner

        return OnnxRuntimeRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
