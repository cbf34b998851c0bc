"""Depth for composed scenes: a geometric rule (objects stand on a ground plane) or an ONNX model.

Both give HxW float32 in [0, 1], 0 = nearest. The geometric rule has a fixed scale (metres per
unit, :data:`GROUND_SCALE_M`) for the whole dataset; a model's output is min-max normalised per
image, as the seed did with DenseDepth, so it has none.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import resize_image, resize_map

if TYPE_CHECKING:  # imported where used: onnxruntime loads only with a depth model
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

DEPTH_OUTPUTS = ("depth", "disparity")


@dataclass(frozen=True)
class GroundCamera:
    """A pinhole camera ``height_m`` above flat ground, pitched down so that the horizon sits
    ``horizon_margin`` image heights above the top row. No roll, so depth depends on the row only.
    """

    height_m: float = 1.5
    vertical_fov_deg: float = 60.0
    horizon_margin: float = 0.1

    @property
    def focal(self) -> float:
        """Focal length in image heights."""
        return 0.5 / math.tan(math.radians(self.vertical_fov_deg) / 2)

    @property
    def pitch(self) -> float:
        """Downward pitch (radians) that puts the horizon at ``-0.5 - horizon_margin``."""
        return math.atan((0.5 + self.horizon_margin) / self.focal)

    def z_depth(self, rows: np.ndarray) -> np.ndarray:
        """Metres along the optical axis to the ground seen at ``rows`` (image heights from the
        centre, positive downwards): z = h f / (u cos(pitch) + f sin(pitch))."""
        f, pitch = self.focal, self.pitch
        return self.height_m * f / (rows * math.cos(pitch) + f * math.sin(pitch))

    @property
    def far_m(self) -> float:
        """The ground's depth at the image's top edge: the farthest the rule ever gives."""
        return float(self.z_depth(np.float64(-0.5)))


GROUND_CAMERA = GroundCamera()
GROUND_SCALE_M = GROUND_CAMERA.far_m  # metres per depth unit, the same for every image size


def ground_plane_depth(height: int, width: int, camera: GroundCamera = GROUND_CAMERA) -> np.ndarray:
    """HxW float32 z-depth of the ground per pixel row over ``camera.far_m``: far at the top, near
    at the bottom, in (0, 1]. The scale is resolution independent (see :data:`GROUND_SCALE_M`)."""
    rows = (np.arange(height, dtype=np.float64) + 0.5) / height - 0.5
    depth = (camera.z_depth(rows) / camera.far_m).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(depth[:, None], (height, width)))


def stand_on_ground(ground: np.ndarray, alpha: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Put an object (``alpha``: HxW in [0, 1] on the full canvas) on the ``ground`` depth map.

    The object stands where its lowest opaque row (alpha >= ``threshold``) touches the ground, so
    all its pixels take the ground's depth one row below that (at its contact columns); soft
    edges blend object and ground by alpha. A map without any opaque pixel is the ground itself.
    """
    opaque = alpha >= threshold
    rows = np.flatnonzero(opaque.any(axis=1))
    if rows.size == 0:
        return ground.astype(np.float32, copy=True)
    lowest = int(rows[-1])
    under = min(lowest + 1, ground.shape[0] - 1)
    contact = np.float32(np.mean(ground[under, opaque[lowest]], dtype=np.float64))
    a = alpha.astype(np.float32)
    return ((1 - a) * ground + a * contact).astype(np.float32)


def normalise_per_image(values: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1] as the seed did; a constant map becomes all zeros."""
    values = values.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    if not high - low > 1e-12:
        return np.zeros_like(values)
    return (values - low) / np.float32(high - low)


class OnnxDepthModel:
    """Any monocular depth network in ONNX (one NCHW RGB input), as a callable on RGB scenes.

    The input is float32 RGB / 255 at the model's fixed size, or the scene's size when the model
    takes any. The first output is squeezed to HxW, resized to the scene, inverted when the model
    gives ``disparity``, and min-max normalised per image (0 = nearest).

    The onnxruntime session (one thread) is created on first use and never pickled, so every
    worker process opens its own: sessions do not survive a fork.
    """

    def __init__(self, path: str | os.PathLike, output: str = "depth") -> None:
        self.path = Path(path)
        if output not in DEPTH_OUTPUTS:
            raise MaskDepthError(f"depth model output {output!r}: expected one of {DEPTH_OUTPUTS}")
        if not self.path.is_file():
            raise MaskDepthError(f"{self.path}: no such file; expected a depth model in ONNX")
        self.output = output
        self._runner: OnnxRuntimeRunner | None = None
        self._input: tuple[str, np.dtype, tuple[int, int] | None] | None = None

    @property
    def source(self) -> str:
        """How the manifest names this depth source."""
        return f"onnx:{self.path.name} ({self.output})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runner": None, "_input": None}

    def _open(self) -> OnnxRuntimeRunner:
        if self._runner is None:
            from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

            self._runner = OnnxRuntimeRunner(self.path, threads=1)
            self._runner.activate()
            try:
                self._input = self._check_input(self._runner.input_metadata)
            except MaskDepthError:
                self.close()
                raise
        return self._runner

    def _check_input(self, metadata: dict) -> tuple[str, np.dtype, tuple[int, int] | None]:
        if len(metadata) != 1:
            raise MaskDepthError(
                f"{self.path}: the model has inputs {sorted(metadata)}; expected one image input"
            )
        ((name, (dtype, shape)),) = metadata.items()
        channels_ok = len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int))
        if not channels_ok:
            raise MaskDepthError(
                f"{self.path}: input {name!r} has shape {list(shape)}; "
                "expected NCHW with 3 channels"
            )
        if not np.issubdtype(dtype, np.floating):
            raise MaskDepthError(f"{self.path}: input {name!r} is {dtype}; expected float32")
        fixed = all(isinstance(v, int) and v > 0 for v in shape[2:])
        return name, dtype, (shape[2], shape[3]) if fixed else None

    def __call__(self, scene: np.ndarray) -> np.ndarray:
        """HxW float32 depth in [0, 1] (0 = nearest) for an HxWx3 uint8 RGB scene."""
        runner = self._open()
        assert self._input is not None  # _open checked the input when it opened the runner
        name, dtype, fixed = self._input
        image = resize_image(scene, fixed) if fixed else scene
        batch = (image.astype(np.float32) / 255).transpose(2, 0, 1)[None].astype(dtype)
        raw = np.squeeze(next(iter(runner.infer({name: batch}).values())))
        if raw.ndim != 2:
            raise MaskDepthError(
                f"{self.path}: first output squeezes to shape {list(raw.shape)}; expected HxW"
            )
        if not np.isfinite(raw).all():
            raise MaskDepthError(f"{self.path}: output has NaN or inf values; expected depth")
        depth = normalise_per_image(resize_map(raw.astype(np.float32), scene.shape[:2]))
        return 1 - depth if self.output == "disparity" else depth

    def check(self, size: tuple[int, int]) -> None:
        """Load the model and run it once on a grey image of ``size``, then let go of the session
        (call before forking workers), so a broken model fails before any scene is written."""
        try:
            self(np.full((*size, 3), 128, np.uint8))
        except MaskDepthError:
            raise
        except Exception as exc:  # onnxruntime raises its own types (shape, type, ...)
            first_line = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            raise MaskDepthError(
                f"{self.path}: the model fails on a test image: {first_line}"
            ) from exc
        finally:
            self.close()

    def close(self) -> None:
        if self._runner is not None:
            self._runner.deactivate()
        self._runner = None
        self._input = None
