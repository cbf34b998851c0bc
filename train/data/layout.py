"""The seed's on-disk layout, and the one writer that `compose` and `synth` share.

    bg/{k}.jpg  fg_bg/{k}/{n}.jpg  fg_bg_mask/{k}/{n}.jpg  dense_depth/{k}/{n}.jpg

k is the background id (1..), n the running scene id (1..). With ``png`` every file is a
lossless PNG instead, and depth is 16 bit.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
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
INCOMPLETE = ".maskdepth-incomplete"  # present while a dataset is being written


def check_format(image_format: str) -> None:
    """Refuse an image format the layout cannot be written in."""
    if image_format not in FORMATS:
        raise MaskDepthError(f"image format {image_format!r}: expected one of {FORMATS}")


def check_output(out: str | Path, overwrite: bool) -> Path:
    """Refuse an ``out`` that is a file, or a non-empty folder without ``overwrite``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise MaskDepthError(f"{out}: exists and is not a folder; expected a folder for --out")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise MaskDepthError(
            f"{out}: folder is not empty; pass --overwrite to replace it, or choose another --out"
        )
    return out


def prepare_output(out: str | Path, overwrite: bool) -> Path:
    """Create ``out`` after :func:`check_output`; ``overwrite`` clears only our own layout."""
    out = check_output(out, overwrite)
    for name in TREES:
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST, INCOMPLETE):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    return out


@contextmanager
def writing_dataset(out: str | Path, overwrite: bool) -> Iterator[Path]:
    """Prepare ``out`` and mark it incomplete until the block finishes.

    If the block fails or is interrupted, temporary files are removed and the marker stays, so
    readers can tell a half-written dataset from a finished one.
    """
    root = prepare_output(out, overwrite)
    marker = root / INCOMPLETE
    marker.write_text("a maskdepth run is writing this dataset; if this file stays, it stopped\n")
    try:
        yield root
    except BaseException:
        for part in root.rglob(".*.part"):
            part.unlink(missing_ok=True)
        raise
    marker.unlink()


class LayoutWriter:
    """Writes backgrounds and scenes under the seed's names, each file atomically."""

    def __init__(self, root: str | Path, image_format: str = "jpg", jpeg_quality: int = 40) -> None:
        check_format(image_format)
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
