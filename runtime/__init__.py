"""The lean inference side of maskdepth: numpy, OpenCV and onnxruntime, never torch."""

from .errors import MaskDepthError, MissingDependencyError
from .preprocess import Preprocessing, prepare_pair

# What users call. The runners (OnnxRuntimeRunner, TensorRTRunner, loaded on first use below)
# and the rest of pre-processing stay importable from their modules for those who build on them.
__all__ = [
    "MaskDepthError",
    "MissingDependencyError",
    "Prediction",
    "Predictor",
    "Preprocessing",
    "prepare_pair",
]

_LAZY = {
    "OnnxRuntimeRunner": ".runners.ort",
    "Predictor": ".predictor",
    "Prediction": ".predictor",
    "RemotePredictor": ".remote",
    "TensorRTRunner": ".runners.tensorrt",
}


def __getattr__(name: str):
    # Loaded on first use, so the package imports fast and without onnxruntime; a backend
    # asked for without its library raises MissingDependencyError naming the extra.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
