"""What every data source offers, and the one function that opens a source by name or path."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from maskdepth.runtime.errors import MaskDepthError

from .sample import Sample


class Source(Protocol):
    """A random-access list of samples. Implementations must be picklable (loader workers)."""

    kind: str  # "seed-folders", "seed-zips", "synth", ... for `data info`

    @property
    def manifest(self) -> dict | None:
        """manifest.json when the dataset has one (a plain attribute in implementations)."""
        ...

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Sample: ...

    def background_ids(self) -> np.ndarray:
        """One background id per scene (int64, len(self) of them): the key to split by."""
        ...


def open_source(
    spec: str | Path,
    *,
    binarize_mask: bool = True,
    skip_bad: bool = False,
    size: int | tuple[int, int] = 224,
    count: int = 2000,
    seed: int = 0,
    per_background: int = 20,
) -> Source:
    """The one way to open data: ``"synth"`` gives on-the-fly synthetic scenes (``size``,
    ``count``, ``seed``, ``per_background``); a path gives the dataset in the seed's layout there,
    from folders or zips (``skip_bad`` leaves out scenes whose mask, depth or background is
    missing)."""
    if str(spec) == "synth":
        from .synth import SynthSource

        return SynthSource(count=count, size=size, seed=seed, per_background=per_background)
    path = Path(spec)
    if not path.exists():
        raise MaskDepthError(f"{path}: no such dataset folder (or pass 'synth')")
    from .seed_layout import SeedLayoutSource

    return SeedLayoutSource(path, binarize_mask=binarize_mask, skip_bad=skip_bad)
