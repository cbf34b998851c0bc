"""How a depth network wants its input: presets for the networks users have for pseudo-labels,
with explicit overrides, and the pre-processing they describe.

A :class:`DepthInput` says at what size the network runs (its own when the ONNX input is fixed;
else the preset's size or the scene's, sides rounded to a multiple), how RGB/255 is normalised,
whether the first output is depth or disparity (larger is nearer), and the tensor layout a
preset expects when the model's shape does not say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import resize_image

DEPTH_OUTPUTS = ("depth", "disparity")
LAYOUTS = ("nchw", "nhwc")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Triple = tuple[float, float, float]


@dataclass(frozen=True)
class DepthInput:
    """One depth network's interface. ``size`` (H, W): where it runs when its input size is
    dynamic (None: the scene's size); ``keep_aspect``: scale the scene so that both sides reach
    ``size`` with its aspect kept (the reference "lower_bound" resize); every side then rounded
    to a multiple of ``multiple`` (up where rounding would fall under ``size``)."""

    preset: str = "raw"
    size: tuple[int, int] | None = None
    multiple: int = 1
    keep_aspect: bool = False
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)
    output: str = "depth"
    layout: str = "nchw"  # used when the model's input shape does not tell NCHW from NHWC

    def check(self) -> None:
        if self.output not in DEPTH_OUTPUTS:
            raise MaskDepthError(
                f"depth model output {self.output!r}: expected one of {DEPTH_OUTPUTS}"
            )
        if self.size is not None and min(self.size) < 1:
            raise MaskDepthError(f"--depth-size {list(self.size)}: expected two sides >= 1")
        if self.multiple < 1:
            raise MaskDepthError(f"--depth-multiple {self.multiple}: expected a number >= 1")
        if len(self.mean) != 3 or len(self.std) != 3:
            raise MaskDepthError("--depth-mean and --depth-std: expected three numbers (R G B)")
        if not all(math.isfinite(s) and s > 0 for s in self.std):
            raise MaskDepthError(f"--depth-std {list(self.std)}: expected numbers > 0")

    def as_dict(self) -> dict:
        """How the manifest records the pre-processing."""
        return {
            "preset": self.preset,
            "size": list(self.size) if self.size else None,
            "multiple": self.multiple,
            "keep_aspect": self.keep_aspect,
            "mean": list(self.mean),
            "std": list(self.std),
            "output": self.output,
        }

    def run_size(self, scene: tuple[int, int], fixed: tuple[int, int] | None) -> tuple[int, int]:
        """(H, W) the network sees for a scene of ``scene`` (H, W): a fixed input's own size
        (refused when it contradicts ``size`` or ``multiple``), else the rule above."""
        if fixed is not None:
            if self.size is not None and tuple(self.size) != tuple(fixed):
                raise MaskDepthError(
                    f"the model's input is {fixed[0]}x{fixed[1]}, not the "
                    f"{self.size[0]}x{self.size[1]} of the {self.preset} preset or --depth-size "
                    f"(--depth-size {fixed[0]} {fixed[1]} to use the model's)"
                )
            if any(side % self.multiple for side in fixed):
                raise MaskDepthError(
                    f"the model's input is {fixed[0]}x{fixed[1]}; the {self.preset} preset needs "
                    f"sides that are multiples of {self.multiple}"
                )
            return fixed
        target = self.size or scene
        if self.keep_aspect and self.size is not None:
            scale = max(target[0] / scene[0], target[1] / scene[1])
            wanted = (scale * scene[0], scale * scene[1])
        else:
            wanted = (float(target[0]), float(target[1]))
        floor = target if self.size is not None else (1, 1)
        return (
            _to_multiple(wanted[0], self.multiple, floor[0]),
            _to_multiple(wanted[1], self.multiple, floor[1]),
        )

    def prepare(self, scenes: list[np.ndarray], size: tuple[int, int], nhwc: bool) -> np.ndarray:
        """A float32 batch from HxWx3 uint8 RGB scenes: resized to ``size``, RGB/255, minus
        ``mean``, over ``std``, NCHW (or NHWC)."""
        mean = np.asarray(self.mean, np.float32)
        scale = np.float32(1 / 255) / np.asarray(self.std, np.float32)
        batch = np.stack([resize_image(scene, size) for scene in scenes]).astype(np.float32)
        batch = batch * scale - mean / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(batch if nhwc else batch.transpose(0, 3, 1, 2))


def _to_multiple(value: float, multiple: int, floor: int) -> int:
    """``value`` rounded to a multiple of ``multiple``; rounded up where that falls under
    ``floor`` (as the reference Resize's constrain_to_multiple_of with min_val)."""
    side = int(round(value / multiple)) * multiple
    if side < floor:
        side = math.ceil(value / multiple) * multiple
    return max(side, multiple)


@dataclass(frozen=True)
class DepthPreset:
    interface: DepthInput
    source: str  # where the facts come from, for --help


PRESETS = {
    "depth-anything-v2": DepthPreset(
        DepthInput(
            "depth-anything-v2", (518, 518), 14, True, IMAGENET_MEAN, IMAGENET_STD, "disparity"
        ),
        "Depth Anything V2 (DepthAnything/Depth-Anything-V2, depth_anything_v2/dpt.py "
        "image2tensor and util/transform.py; ONNX as fabio-sim/Depth-Anything-ONNX exports it, "
        "input 'image' 1x3x518x518): RGB/255, ImageNet mean/std, 518 with the aspect kept and "
        "sides multiples of 14 when the size is dynamic, relative disparity",
    ),
    "midas-small": DepthPreset(
        DepthInput("midas-small", (256, 256), 32, False, output="disparity"),
        "MiDaS v2.1 small, model-small.onnx (isl-org/MiDaS tf/make_onnx_model.py puts the "
        "ImageNet normalisation inside the graph, tf/run_onnx.py feeds RGB/255 resized to the "
        "net without keeping the aspect, tf/README.md: inverse depth): 256x256, RGB/255, "
        "disparity",
    ),
    "densedepth": DepthPreset(
        DepthInput("densedepth", (480, 640), 32, False, output="disparity", layout="nhwc"),
        "DenseDepth (ialhashim/DenseDepth model.py: Keras DenseNet-169, NHWC input of any size, "
        "output at half size; utils.py: load_images gives RGB/255, predict() turns the output "
        "into depth as 1000 / output, so the raw output grows with nearness): 480x640 (NYU) "
        "RGB/255, NHWC unless the model's shape says NCHW, disparity",
    ),
    "raw": DepthPreset(
        DepthInput(),
        "any network: RGB/255, no normalisation, the model's size or the scene's, depth",
    ),
}


def depth_input(
    preset: str = "raw",
    size: tuple[int, int] | list[int] | None = None,
    multiple: int | None = None,
    mean: Triple | list[float] | None = None,
    std: Triple | list[float] | None = None,
    output: str | None = None,
) -> DepthInput:
    """The ``preset``'s :class:`DepthInput` with the given overrides (None: the preset's)."""
    if preset not in PRESETS:
        raise MaskDepthError(f"--depth-preset {preset!r}: expected one of {', '.join(PRESETS)}")
    changes: dict = {}
    if size is not None:
        if len(size) != 2:
            raise MaskDepthError(f"--depth-size {list(size)}: expected two sides, H W")
        changes["size"] = (int(size[0]), int(size[1]))
    if multiple is not None:
        changes["multiple"] = int(multiple)
    if mean is not None:
        changes["mean"] = tuple(float(v) for v in mean)
    if std is not None:
        changes["std"] = tuple(float(v) for v in std)
    if output is not None:
        changes["output"] = output
    interface = replace(PRESETS[preset].interface, **changes)
    interface.check()
    return interface
