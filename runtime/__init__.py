"""The lean inference side of maskdepth: numpy, OpenCV and onnxruntime, never torch."""

from .errors import MaskDepthError, MissingDependencyError
from .preprocess import Preprocessing, prepare_batch, prepare_pair, resize_image, resize_map

__all__ = [
    "MaskDepthError",
    "MissingDependencyError",
    "Preprocessing",
    "prepare_batch",
    "prepare_pair",
    "resize_image",
    "resize_map",
]
