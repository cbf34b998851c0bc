"""The lean inference side of maskdepth: numpy, OpenCV and onnxruntime, never torch."""

from .errors import MaskDepthError, MissingDependencyError
from .preprocess import (
    Preprocessing,
    prepare_background,
    prepare_batch,
    prepare_pair,
    prepare_scene,
    resize_image,
    resize_map,
)

__all__ = [
    "MaskDepthError",
    "MissingDependencyError",
    "OnnxRuntimeRunner",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "TensorRTRunner",
    "prepare_background",
    "prepare_batch",
    "prepare_pair",
    "prepare_scene",
    "resize_image",
    "resize_map",
]

_LAZY = {
    "OnnxRuntimeRunner": ".runners.ort",
    "Predictor": ".predictor",
    "Prediction": ".predictor",
    "TensorRTRunner": ".runners.tensorrt",
}


def __getattr__(name: str):
    # Loaded on first use, so the package imports fast and without onnxruntime; a backend
    # asked for without its library raises MissingDependencyError naming the extra.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
