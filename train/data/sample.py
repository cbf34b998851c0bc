"""The one sample type every data source returns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maskdepth.runtime.errors import MaskDepthError


@dataclass
class Sample:
    """bg, scene: HxWx3 uint8 RGB; mask, depth: HxW float32 in [0, 1] (depth 0 = nearest)."""

    bg: np.ndarray
    scene: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    name: str = ""  # where it came from, for messages: "k/n" in the seed's layout

    def check(self) -> Sample:
        """Raise MaskDepthError naming the sample when shapes or dtypes disagree."""
        where = self.name or "sample"
        for key in ("bg", "scene"):
            image = getattr(self, key)
            if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
                raise MaskDepthError(
                    f"{where}: {key} must be HxWx3 uint8, got {image.dtype} {image.shape}"
                )
        size = self.scene.shape[:2]
        for key in ("bg", "mask", "depth"):
            if getattr(self, key).shape[:2] != size:
                raise MaskDepthError(
                    f"{where}: {key} is {getattr(self, key).shape[:2]}, the scene is {size}; "
                    "expected the same size"
                )
        for key in ("mask", "depth"):
            values = getattr(self, key)
            if values.dtype != np.float32 or values.ndim != 2:
                raise MaskDepthError(
                    f"{where}: {key} must be HxW float32, got {values.dtype} {values.shape}"
                )
        return self
