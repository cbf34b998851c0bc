"""Pre- and post-processing shared by training, export and the runtime (numpy and OpenCV only).

The network sees ``cat([bg, scene])``: six channels, bg first, each normalised as
``(pixel / 255 - mean) / std``. Training writes its :class:`Preprocessing` into checkpoints,
export into the ONNX metadata, and the runtime reads it back, so the numbers live in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from .errors import MaskDepthError
from .image import as_rgb

# The seed's statistics (images / 255): bg, then fg_bg (see DESIGN.md section 1).
SEED_MEAN = (0.5558, 0.5201, 0.4632, 0.5445, 0.5092, 0.4564)
SEED_STD = (0.2150, 0.2160, 0.2305, 0.2265, 0.2253, 0.2360)


@dataclass(frozen=True)
class Preprocessing:
    """How an (bg, scene) pair becomes the network's input tensor."""

    size: tuple[int, int] = (224, 224)  # (height, width) the network sees
    mean: tuple[float, ...] = SEED_MEAN  # six values: bg RGB, then scene RGB
    std: tuple[float, ...] = SEED_STD

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 8:
            raise MaskDepthError(f"size must be (height, width) >= 8, got {self.size}")
        if len(self.mean) != 6 or len(self.std) != 6 or min(self.std) <= 0:
            raise MaskDepthError("mean and std need six values (bg RGB, scene RGB), std > 0")
        object.__setattr__(self, "size", tuple(int(v) for v in self.size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        return cls(size=tuple(data["size"]), mean=tuple(data["mean"]), std=tuple(data["std"]))


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an image to (height, width): area averaging to shrink, bilinear to grow."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    shrink = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(image, (width, height), interpolation=interpolation)


def resize_map(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float HxW map (mask, depth, probabilities) bilinearly to (height, width)."""
    height, width = size
    values = np.asarray(values, dtype=np.float32)
    if values.shape[:2] == (height, width):
        return values
    return cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)


def _affine(pre: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    std = np.asarray(pre.std, np.float32)
    scale = (1.0 / (255.0 * std)).reshape(6, 1, 1)
    offset = (-np.asarray(pre.mean, np.float32) / std).reshape(6, 1, 1)
    return scale, offset


def prepare_pair(bg: np.ndarray, scene: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """Turn RGB uint8 bg and scene into the float32 (6, H, W) network input.

    A bg of another size than the scene is resized to the scene first, then both to ``pre.size``.
    """
    bg, scene = as_rgb(bg, "bg"), as_rgb(scene, "scene")
    bg = resize_image(resize_image(bg, scene.shape[:2]), pre.size)
    scene = resize_image(scene, pre.size)
    # Copy plane by plane, then scale in place: converting the interleaved HxWx6 view in one
    # go reads with a 6-byte stride and is ~20x slower (4.7 ms -> 0.2 ms at 224), same values.
    planar = np.empty((6, *pre.size), np.float32)
    for channel, plane in enumerate(cv2.split(bg) + cv2.split(scene)):
        planar[channel] = plane
    scale, offset = _affine(pre)
    planar *= scale
    planar += offset
    return planar


def prepare_batch(
    bgs: Sequence[np.ndarray], scenes: Sequence[np.ndarray], pre: Preprocessing
) -> np.ndarray:
    """Stack :func:`prepare_pair` over equally long lists into (N, 6, H, W)."""
    if len(bgs) != len(scenes):
        raise MaskDepthError(f"got {len(bgs)} backgrounds for {len(scenes)} scenes")
    return np.stack([prepare_pair(bg, scene, pre) for bg, scene in zip(bgs, scenes)])
