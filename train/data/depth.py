"""Depth for composed scenes: a geometric rule (objects stand on a ground plane) or an ONNX model.

Both give HxW float32 in [0, 1], 0 = nearest. The geometric rule has a fixed scale (metres per
unit, :data:`GROUND_SCALE_M`) for the whole dataset; a model's output is min-max normalised per
image, as the seed did with DenseDepth, so it has none; how each network wants its input is in
:mod:`.depth_presets`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import resize_map

from .depth_presets import DepthInput

if TYPE_CHECKING:  # imported where used: onnxruntime loads only with a depth model
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner


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
    """Any monocular depth network in ONNX (one RGB image input, NCHW or NHWC), as a callable on
    RGB scenes, several scenes per run where the model's batch dimension allows.

    ``interface`` (:mod:`.depth_presets`) says how the network wants its input: the scenes are
    resized to the size it runs at, RGB/255 is normalised with its mean and std, and the first
    output is squeezed to HxW per scene, resized back to the scene, inverted when it is
    ``disparity``, and min-max normalised per image (0 = nearest). ``batch``: scenes per run when
    the batch dimension is dynamic; a fixed batch is filled up by repeating the last scene.

    The onnxruntime session (one thread) is created on first use and never pickled, so every
    worker process opens its own: sessions do not survive a fork.
    """

    def __init__(
        self, path: str | os.PathLike, interface: DepthInput | None = None, batch: int = 8
    ) -> None:
        self.path = Path(path)
        self.interface = interface or DepthInput()
        self.interface.check()
        if batch < 1:
            raise MaskDepthError(f"--depth-batch {batch}: expected a number >= 1")
        if not self.path.is_file():
            raise MaskDepthError(f"{self.path}: no such file; expected a depth model in ONNX")
        self._batch = batch
        self._runner: OnnxRuntimeRunner | None = None
        self._input: _Input | None = None

    @property
    def output(self) -> str:
        return self.interface.output

    @property
    def source(self) -> str:
        """How the manifest names this depth source."""
        return f"onnx:{self.path.name} ({self.output})"

    @property
    def batch(self) -> int:
        """Scenes per run: the model's fixed batch, else ``batch``."""
        self._open()
        assert self._input is not None  # _open checked the input when it opened the runner
        return self._input.batch or self._batch

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_runner": None, "_input": None}

    def _open(self) -> OnnxRuntimeRunner:
        if self._runner is None:
            from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

            self._runner = OnnxRuntimeRunner(self.path, threads=1)
            self._runner.activate()
            try:
                self._input = _check_input(self.path, self._runner.input_metadata, self.interface)
            except MaskDepthError:
                self.close()
                raise
        return self._runner

    def __call__(self, scene: np.ndarray) -> np.ndarray:
        """HxW float32 depth in [0, 1] (0 = nearest) for an HxWx3 uint8 RGB scene."""
        return self.predict([scene])[0]

    def predict(self, scenes: list[np.ndarray]) -> list[np.ndarray]:
        """Depth for each HxWx3 uint8 RGB scene (one size), :attr:`batch` scenes per run."""
        runner = self._open()
        assert self._input is not None  # _open checked the input when it opened the runner
        spec, step = self._input, self.batch
        size = self.interface.run_size(scenes[0].shape[:2], spec.fixed)
        depths: list[np.ndarray] = []
        for first in range(0, len(scenes), step):
            chunk = scenes[first : first + step]
            padded = chunk + [chunk[-1]] * (step - len(chunk)) if spec.batch else chunk
            feed = self.interface.prepare(padded, size, spec.nhwc).astype(spec.dtype)
            raw = np.asarray(next(iter(runner.infer({spec.name: feed}).values())))
            depths += [self._to_depth(raw, i, scene) for i, scene in enumerate(chunk)]
        return depths

    def _to_depth(self, raw: np.ndarray, item: int, scene: np.ndarray) -> np.ndarray:
        values = np.squeeze(raw[item]) if raw.ndim >= 3 else np.squeeze(raw)
        if values.ndim != 2:
            raise MaskDepthError(
                f"{self.path}: first output has shape {list(raw.shape)}; expected one HxW map "
                "per image (NxHxW, Nx1xHxW or NxHxWx1)"
            )
        if not np.isfinite(values).all():
            raise MaskDepthError(f"{self.path}: output has NaN or inf values; expected depth")
        depth = normalise_per_image(resize_map(values.astype(np.float32), scene.shape[:2]))
        return 1 - depth if self.output == "disparity" else depth

    def check(self, size: tuple[int, int]) -> None:
        """Load the model and run it once on a grey image of ``size``, then let go of the session
        (call before forking workers), so a broken model fails before any scene is written."""
        try:
            self(np.full((*size, 3), 128, np.uint8))
        except MaskDepthError as exc:
            message = str(exc)
            prefix = "" if message.startswith(str(self.path)) else f"{self.path}: "
            raise MaskDepthError(prefix + message) from exc
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


@dataclass(frozen=True)
class _Input:
    """What the model's one input takes: its name and dtype, NHWC or not, a fixed (H, W) or
    None, and a fixed batch or None (dynamic)."""

    name: str
    dtype: np.dtype
    nhwc: bool
    fixed: tuple[int, int] | None
    batch: int | None


def _check_input(path: Path, metadata: dict, interface: DepthInput) -> _Input:
    if len(metadata) != 1:
        raise MaskDepthError(f"{path}: the model has inputs {sorted(metadata)}; expected one image")
    ((name, (dtype, shape)),) = metadata.items()
    layouts = []  # NCHW: 3 channels or a dynamic count; NHWC: 3 channels, always fixed
    if len(shape) == 4 and (shape[1] == 3 or not isinstance(shape[1], int)):
        layouts.append("nchw")
    if len(shape) == 4 and shape[3] == 3:
        layouts.append("nhwc")
    if not layouts:
        raise MaskDepthError(
            f"{path}: input {name!r} has shape {list(shape)}; expected one RGB image, "
            "NCHW or NHWC with 3 channels"
        )
    layout = interface.layout if interface.layout in layouts else layouts[0]
    if not np.issubdtype(dtype, np.floating):
        raise MaskDepthError(f"{path}: input {name!r} is {dtype}; expected float32")
    sides = shape[1:3] if layout == "nhwc" else shape[2:4]
    fixed = all(isinstance(v, int) and v > 0 for v in sides)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
    return _Input(name, dtype, layout == "nhwc", (sides[0], sides[1]) if fixed else None, batch)
