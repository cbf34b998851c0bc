"""What a TensorRT plan is built for: which flavour builds here, the input profile (batch and
image sizes) and the compute capabilities a plan targets. Plain values, no TensorRT here (so
``maskdepth doctor`` asks these rules about any machine it describes)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from maskdepth.runtime.engine_sidecar import (
    FLAVOURS,
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
)
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.model_info import INPUT_NAMES, STRIDE

if TYPE_CHECKING:
    from maskdepth.runtime.runners.cuda import GpuInfo

INSTALL_HINT = (
    "pip install tensorrt-rtx-cu12 (builds on any machine, for RTX-class GPUs) or "
    "pip install tensorrt (builds on the target GPU)"
)


def choose_flavour(
    name: str, importable: Collection[str], gpu: GpuInfo | None, device: int = 0
) -> str:
    """The flavour that builds here, given the flavours that import and GPU ``device`` (None:
    none), or raise in one line why none can. ``auto``: ``tensorrt`` when it imports and there
    is a GPU (a plan tuned for that GPU), else ``tensorrt_rtx``."""
    if name not in ("auto", *FLAVOURS):
        raise MaskDepthError(f"TensorRT flavour {name!r}: expected auto, {', '.join(FLAVOURS)}")
    wanted = [n for n in FLAVOURS if name in ("auto", n) and n in importable]
    if "tensorrt" in wanted and gpu:
        return "tensorrt"
    if "tensorrt_rtx" in wanted:
        return "tensorrt_rtx"
    if wanted:
        raise MaskDepthError(
            f"tensorrt builds engines on the GPU they are for, and this machine has no CUDA GPU "
            f"{device}: build on the target machine, or ahead of time with tensorrt-rtx-cu12"
        )
    wanted_text = "TensorRT" if name == "auto" else name
    raise MissingDependencyError(
        f"building engines needs {wanted_text}, not installed: {INSTALL_HINT}"
    )


def plan_target(
    flavour: str, gpu: GpuInfo | None, compute_capabilities: Sequence[str] | None = None
) -> dict:
    """The sidecar's ``target`` of a plan ``flavour`` builds: the compute capabilities asked
    for (tensorrt_rtx, :func:`check_compute_capabilities`) or the GPU it builds on (tensorrt)."""
    if flavour == "tensorrt_rtx":
        return {"compute_capabilities": list(check_compute_capabilities(compute_capabilities))}
    if gpu is None:
        raise MaskDepthError(
            f"{flavour} builds engines on the GPU they are for, and this flavour was loaded "
            "without one"
        )
    return {"gpu": gpu.name, "compute_capability": gpu.compute_capability}


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

    @classmethod
    def for_range(
        cls,
        size: Sequence[int],
        min_size: Sequence[int],
        max_size: Sequence[int],
        max_batch: int,
    ) -> Profile:
        """A refined model's: full-resolution sides from ``min_size`` to ``max_size`` (its
        RefineInfo), optimal at ``size`` (its full training resolution, inside the range)."""
        opt = cls.for_export((int(size[0]), int(size[1])), False, max_batch)  # checks max_batch
        low, high = (int(min_size[0]), int(min_size[1])), (int(max_size[0]), int(max_size[1]))
        return cls(opt.size, max_batch, 1, low, high)

    def shapes(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """``{input: {"min": NCHW, "opt": NCHW, "max": NCHW}}`` for every network input."""
        low, high = self.min_size or self.size, self.max_size or self.size
        one = {
            "min": (1, 3, *low),
            "opt": (min(self.opt_batch, self.max_batch), 3, *self.size),
            "max": (self.max_batch, 3, *high),
        }
        return {name: dict(one) for name in INPUT_NAMES}
