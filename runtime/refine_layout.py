"""Where a frame goes in a refined model's full-resolution input (numpy only).

A refined graph shrinks its input to ONE base size (constant inside the graph, what TensorRT
needs), so a frame of another aspect is PADDED to the base's aspect rather than stretched: the
frame keeps its shape, and no second graph or engine per aspect is needed (what choosing a
matching base size would take). Padding is at the bottom and right, replicating the edge pixels
of bg and scene alike (after normalising), so the pad draws no edge of its own: bg and scene
differ there exactly as at the frame's border, and that part is cropped away. A padded frame
outside the graph's accepted range (``RefineInfo.min_size`` to ``max_size``) is scaled, aspect
kept, to fit it. The outputs are cropped back to the frame's part and resized to the frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from .model_info import RefineInfo
from .preprocess import Preprocessing, prepare_background, prepare_scene


@dataclass(frozen=True)
class Layout:
    """``content``: (height, width) the frame is resized to; ``feed``: (height, width) of the
    input, ``content`` padded at the bottom and right."""

    content: tuple[int, int]
    feed: tuple[int, int]


def layout(frame: tuple[int, int], refine: RefineInfo) -> Layout:
    """The :class:`Layout` of a (height, width) frame for a refined model."""
    height, width = (int(v) for v in frame)
    base_h, base_w = refine.base_size
    if width * base_h > height * base_w:  # wider than the base: pad the height
        padded = (math.ceil(width * base_h / base_w), width)
    else:
        padded = (height, math.ceil(height * base_w / base_h))
    (low_h, low_w), (high_h, high_w) = refine.min_size, refine.max_size
    scale = min(1.0, high_h / padded[0], high_w / padded[1])
    scale = max(scale, low_h / padded[0], low_w / padded[1])  # a small frame grows to fit
    feed = (
        min(max(round(padded[0] * scale), low_h), high_h),
        min(max(round(padded[1] * scale), low_w), high_w),
    )
    content = (
        min(max(1, round(height * scale)), feed[0]),
        min(max(1, round(width * scale)), feed[1]),
    )
    return Layout(content, feed)


def pad_planes(planes: np.ndarray, feed: tuple[int, int], out: np.ndarray | None = None):
    """(C, h, w) planes padded at the bottom and right to ``feed`` by replicating the edge,
    written into ``out`` (C, *feed) when given."""
    channels, height, width = planes.shape
    result = np.empty((channels, *feed), planes.dtype) if out is None else out
    result[:, :height, :width] = planes
    result[:, height:, :width] = planes[:, height - 1 : height, :]
    result[:, :, width:] = result[:, :, width - 1 : width]
    return result


def prepare_padded(
    image: np.ndarray,
    scene_size: tuple[int, int] | None,
    pre: Preprocessing,
    refine: RefineInfo,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """A refined model's input planes (3, *feed) of a scene (``scene_size`` None) or of a bg
    lined up with a scene of ``scene_size``: normalised at the layout's content size, then
    padded (:func:`pad_planes`)."""
    frame = image.shape[:2] if scene_size is None else scene_size
    place = layout(frame, refine)
    content = replace(pre, size=place.content)
    if scene_size is None:
        planes = prepare_scene(image, content)
    else:
        planes = prepare_background(image, scene_size, content)
    return pad_planes(planes, place.feed, out)
