"""One frame in, one frame out, for any maskdepth model: the input planes the network is fed
and the maps it gives back at the frame's size. Written once; the :class:`Predictor` and the
Triton repository's pre- and post-processing steps both call it, so a served answer is the
in-process one.

An unrefined model sees the frame resized to its size (today's behaviour); a refined model sees
it at full resolution, padded to its base aspect (:mod:`maskdepth.runtime.refine_layout`).
"""

from __future__ import annotations

import numpy as np

from .model_info import ModelInfo
from .preprocess import prepare_background, prepare_scene, resize_map
from .refine_layout import layout, prepare_padded


def feed_size(info: ModelInfo, scene_size: tuple[int, int]) -> tuple[int, int]:
    """(height, width) of the network input for a scene of ``scene_size``."""
    return info.size if info.refine is None else layout(scene_size, info.refine).feed


def scene_planes(info: ModelInfo, scene: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """float32 (3, *feed_size) planes of an RGB uint8 scene, into ``out`` when given."""
    if info.refine is None:
        return prepare_scene(scene, info.preprocessing, out)
    return prepare_padded(scene, None, info.preprocessing, info.refine, out)


def background_planes(
    info: ModelInfo, bg: np.ndarray, scene_size: tuple[int, int], out: np.ndarray | None = None
) -> np.ndarray:
    """float32 (3, *feed_size) planes of an RGB uint8 bg lined up with a scene of
    ``scene_size``, into ``out`` when given."""
    if info.refine is None:
        return prepare_background(bg, scene_size, info.preprocessing, out)
    return prepare_padded(bg, scene_size, info.preprocessing, info.refine, out)


def frame_map(info: ModelInfo, values: np.ndarray, scene_size: tuple[int, int]) -> np.ndarray:
    """A network output plane (h, w) as float32 (H, W) in [0, 1] at the scene's size: a
    refined model's padding cropped off, resized bilinearly, clipped (a new array)."""
    values = np.asarray(values, np.float32)
    if info.refine is not None:  # the frame's part of a padded feed
        content = layout(scene_size, info.refine).content
        values = values[: content[0], : content[1]]
    return np.clip(resize_map(values, scene_size), 0.0, 1.0)
