"""What a TensorRT plan is built for: the input profile (batch and image sizes) and the compute
capabilities of a TensorRT-RTX plan. Plain values, no TensorRT here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from maskdepth.runtime.engine_sidecar import (
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
)
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import INPUT_NAMES, STRIDE


def check_compute_capabilities(values: Sequence[str] | None) -> tuple[str, ...]:
    """Normalise ``["8.6", "sm_120", "89"]`` to ``("8.6", "12.0", "8.9")``; None: the default."""
    if not values:
        return RTX_DEFAULT_COMPUTE_CAPABILITIES
    known = {cc.replace(".", ""): cc for cc in RTX_COMPUTE_CAPABILITIES}
    result = []
    for value in values:
        key = str(value).lower().removeprefix("sm").lstrip("_").replace(".", "")
        if key not in known:
            raise MaskDepthError(
                f"--compute-capability {value}: TensorRT-RTX builds for "
                f"{', '.join(RTX_COMPUTE_CAPABILITIES)}"
            )
        if known[key] not in result:
            result.append(known[key])
    return tuple(result)


@dataclass(frozen=True)
class Profile:
    """The optimisation profile: the batch and image sizes a plan accepts (min/opt/max)."""

    size: tuple[int, int]  # the optimal (and, when not dynamic, only) height, width
    max_batch: int = 1
    opt_batch: int = 1
    min_size: tuple[int, int] | None = None  # dynamic height/width only
    max_size: tuple[int, int] | None = None

    @classmethod
    def for_export(
        cls, size: tuple[int, int], dynamic: bool, max_batch: int, stride: int = STRIDE
    ) -> Profile:
        """From ``--size``, ``--dynamic`` and ``--max-batch``; a dynamic plan takes sides from
        one ``stride`` (the model config's) up to twice ``--size``."""
        if max_batch < 1:
            raise MaskDepthError(f"--max-batch {max_batch}: expected 1 or more")
        height, width = size  # a list (from JSON, argparse) becomes a tuple
        if not dynamic:
            return cls((height, width), max_batch)
        return cls((height, width), max_batch, 1, (stride, stride), (2 * height, 2 * width))

    def shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """``{input: {"min": NCHW, "opt": NCHW, "max": NCHW}}`` for every network input."""
        low, high = self.min_size or self.size, self.max_size or self.size
        one = {
            "min": (1, 3, *low),
            "opt": (min(self.opt_batch, self.max_batch), 3, *self.size),
            "max": (self.max_batch, 3, *high),
        }
        return {name: dict(one) for name in INPUT_NAMES}
