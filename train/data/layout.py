"""The seed's on-disk layout, and the one writer that `compose` and `synth` share.

    bg/{k}.jpg  fg_bg/{k}/{n}.jpg  fg_bg_mask/{k}/{n}.jpg  dense_depth/{k}/{n}.jpg

k is the background id (1..), n the running scene id (1..). With ``png`` every file is a
lossless PNG instead, and depth is 16 bit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import from_unit, write_image

from .manifest import MANIFEST
from .sample import Sample

BG, SCENE, MASK, DEPTH = "bg", "fg_bg", "fg_bg_mask", "dense_depth"
TREES = (BG, SCENE, MASK, DEPTH)
SEED_JPEG_QUALITY = 40  # the seed saved its JPGs at quality 35-40
FORMATS = ("jpg", "png")


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """Create ``out``; refuse a non-empty one unless ``overwrite``, which clears only our layout."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskDepthError(f"{out}: exists and is not a folder; expected a folder for --out")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MaskDepthError(
                f"{out}: folder is not empty; pass --overwrite to replace it, "
                "or choose another --out"
            )
        for name in TREES:
            shutil.rmtree(out / name, ignore_errors=True)
        (out / MANIFEST).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


class LayoutWriter:
    """Writes backgrounds and scenes under the seed's names, each file atomically."""

    def __init__(self, root: str | Path, image_format: str = "jpg", jpeg_quality: int = 40) -> None:
        if image_format not in FORMATS:
            raise MaskDepthError(f"image format {image_format!r}: expected one of {FORMATS}")
        self.root = Path(root)
        self.suffix = "." + image_format
        self.jpeg_quality = jpeg_quality
        self._made: set[Path] = set()

    def _path(self, tree: str, k: int, n: int | None = None) -> Path:
        folder = self.root / tree if n is None else self.root / tree / str(k)
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)
        return folder / f"{k if n is None else n}{self.suffix}"

    def write_background(self, k: int, bg: np.ndarray) -> None:
        write_image(self._path(BG, k), bg, self.jpeg_quality)

    def write_scene(self, k: int, n: int, sample: Sample) -> None:
        """Write scene, mask and depth of background k as scene n (not the sample's bg)."""
        depth_bits = 16 if self.suffix == ".png" else 8
        write_image(self._path(SCENE, k, n), sample.scene, self.jpeg_quality)
        write_image(self._path(MASK, k, n), from_unit(sample.mask), self.jpeg_quality)
        write_image(self._path(DEPTH, k, n), from_unit(sample.depth, depth_bits), self.jpeg_quality)
