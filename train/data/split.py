"""The deterministic train/val split that training and evaluation share.

Split by scene, or by background so that no background seen in training shows up in validation
(the seed's 400,000 scenes share 100 backgrounds, so a scene split measures memorisation of the
backgrounds as much as generalisation). The split depends only on the source's length (or its
background ids), the fraction and the seed, so ``train`` and ``evaluate`` agree without storing it.
"""

from __future__ import annotations

import numpy as np

from maskdepth.runtime.errors import MaskDepthError

from .sources import Source

SPLIT_BY = ("scene", "background")


def _val_count(total: int, val_fraction: float) -> int:
    """round(fraction x total), at least 1 when a fraction is asked for and two or more exist,
    and never all of them (training needs something)."""
    count = round(val_fraction * total)
    if val_fraction > 0 and total >= 2:
        count = max(count, 1)
    return min(count, max(total - 1, 0))


def split_indices(
    source: Source, val_fraction: float = 0.1, seed: int = 0, by: str = "scene"
) -> tuple[np.ndarray, np.ndarray]:
    """Return (train, val): sorted, disjoint int64 indices into ``source`` that cover all of it.

    ``by="scene"`` draws scenes, ``by="background"`` draws whole backgrounds
    (``source.background_ids()``), so every background is on one side only.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise MaskDepthError(f"val fraction {val_fraction}: expected a number in [0, 1)")
    if by not in SPLIT_BY:
        raise MaskDepthError(f"split by {by!r}: expected one of {', '.join(SPLIT_BY)}")
    total = len(source)
    rng = np.random.default_rng(seed)
    is_val = np.zeros(total, dtype=bool)
    if by == "scene":
        is_val[rng.permutation(total)[: _val_count(total, val_fraction)]] = True
    else:
        ids = np.asarray(source.background_ids(), dtype=np.int64)
        if ids.shape != (total,):
            raise MaskDepthError(
                f"background ids: expected one per scene ({total}), got shape {ids.shape}"
            )
        backgrounds = np.unique(ids)
        chosen = rng.permutation(backgrounds)[: _val_count(len(backgrounds), val_fraction)]
        is_val = np.isin(ids, chosen)
    return np.flatnonzero(~is_val).astype(np.int64), np.flatnonzero(is_val).astype(np.int64)
