"""A fixed camera's clip whose light drifts, with its truth: the scene the background policy is
measured on (``stream_quality.py``) and tested on (``tests/test_stream_background.py``).

Phases, in order: ``empty``, ``crossing`` (an object crosses left to right), ``empty``,
``entering`` (an object comes in from the right edge) and ``rest`` (it stays there). The light
is a per-channel gain that moves linearly from 1 to ``gain_end`` over the clip (a day that dims
and warms), plus sensor noise; ``step`` multiplies the gain from frame ``step_at`` on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

PHASES = (("empty", 1.0), ("crossing", 2.0), ("empty2", 1.0), ("entering", 1.0), ("rest", 3.0))


@dataclass(frozen=True)
class ClipFrame:
    index: int
    phase: str
    frame: np.ndarray  # RGB uint8
    truth: np.ndarray  # bool: the object's pixels


def phase_frames(fps: float, scale: float = 1.0) -> list[str]:
    """The phase of each frame: ``PHASES``' seconds times ``scale`` at ``fps``."""
    return [name for name, seconds in PHASES for _ in range(round(seconds * scale * fps))]


def _position(phase: str, step: int, steps: int, width: int, sprite_w: int) -> int | None:
    """The object's left edge in this frame, or None when the scene is empty."""
    if phase == "crossing":
        return round(-sprite_w + (width + sprite_w) * step / max(steps - 1, 1))
    if phase == "entering":
        rest = width // 2 - sprite_w // 2
        return round(width + (rest - width) * step / max(steps - 1, 1))
    if phase == "rest":
        return width // 2 - sprite_w // 2
    return None


def _paste(frame: np.ndarray, truth: np.ndarray, sprite, left: int, top: int) -> None:
    rgb, alpha = sprite
    h, w = alpha.shape
    x0, x1 = max(left, 0), min(left + w, frame.shape[1])
    if x1 <= x0:
        return
    region = alpha[:, x0 - left : x1 - left] > 0
    frame[top : top + h, x0:x1][region] = rgb[:, x0 - left : x1 - left][region]
    truth[top : top + h, x0:x1] |= region


def drifting_clip(
    bg: np.ndarray,
    sprite: tuple[np.ndarray, np.ndarray],
    fps: float = 25.0,
    scale: float = 1.0,
    gain_end: tuple[float, float, float] = (0.8, 0.72, 0.6),
    noise: float = 2.0,
    step: float = 1.0,
    step_at: int | None = None,
    seed: int = 0,
    across: bool = False,
) -> Iterator[ClipFrame]:
    """The frames of the clip over ``bg`` with ``sprite`` (RGB, alpha) as the object; the
    light applies to the whole frame, object included. ``across``: the drift is full at the
    left edge and none at the right (light through a window), not one gain for the frame."""
    rng = np.random.default_rng(seed)
    phases = phase_frames(fps, scale)
    height, width = bg.shape[:2]
    top = height - sprite[1].shape[0] - height // 10
    end = np.asarray(gain_end, np.float32)
    field = np.ones((1, width, 1), np.float32)
    if across:
        field[0, :, 0] = np.linspace(1.0, 0.0, width)
    counts = {p: phases.count(p) for p in set(phases)}
    seen = dict.fromkeys(counts, 0)
    for index, phase in enumerate(phases):
        frame, truth = bg.copy(), np.zeros((height, width), bool)
        left = _position(phase, seen[phase], counts[phase], width, sprite[1].shape[1])
        seen[phase] += 1
        if left is not None:
            _paste(frame, truth, sprite, left, top)
        gain = 1.0 + (end - 1.0) * field * (index / max(len(phases) - 1, 1))
        if step_at is not None and index >= step_at:
            gain = gain * np.float32(step)
        lit = frame.astype(np.float32) * gain + rng.normal(0, noise, frame.shape)
        yield ClipFrame(index, phase, np.clip(np.rint(lit), 0, 255).astype(np.uint8), truth)


def box_sprite(height: int, width: int, color=(235, 235, 225)) -> tuple[np.ndarray, np.ndarray]:
    """A plain box with a darker frame, as an (RGB, alpha) sprite."""
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = color
    cv2.rectangle(rgb, (0, 0), (width - 1, height - 1), (90, 80, 70), max(1, width // 12))
    return rgb, np.ones((height, width), np.uint8)


def textured_bg(height: int, width: int, seed: int = 0, low: int = 40, high: int = 120):
    """A smooth random texture in [low, high]: a floor and wall a camera might see."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(low, high, (max(height // 8, 2), max(width // 8, 2), 3))
    smooth = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(smooth), low, high).astype(np.uint8)


def write_clip(path, frames, fps: float) -> None:
    """Write RGB frames as a lossless-enough MJPG .avi (quality is not measured on it)."""
    writer = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                fourcc = cv2.VideoWriter.fourcc(*"MJPG")
                writer = cv2.VideoWriter(str(path), fourcc, float(fps), (w, h))
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        if writer is not None:
            writer.release()


def difference_model(path, size: tuple[int, int] = (48, 64), levels: float = 20.0):
    """A real ONNX change detector with the network's inputs and outputs, for measuring the
    background policy where no trained model is at hand: mask = sigmoid(slope * (mean |scene -
    bg| - ``levels`` grey levels)), depth = sigmoid(mean scene). It sees exactly what the
    background gives it, so what it finds is what the policy leaves to find."""
    import onnx
    from onnx import TensorProto, helper

    from maskdepth.runtime.model_info import ModelInfo
    from maskdepth.runtime.preprocess import Preprocessing

    std = 0.25  # one grey level is 1 / (255 * std) in the network's units
    shape: list[str | int] = ["batch", 3, *size]
    out: list[str | int] = ["batch", 1, *size]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("bg", "scene")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, out) for n in ("mask", "depth")]
    consts = [
        helper.make_tensor("axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("level", TensorProto.FLOAT, [], [levels / (255 * std)]),
        helper.make_tensor("slope", TensorProto.FLOAT, [], [255 * std / 4.0]),
    ]
    nodes = [
        helper.make_node("Sub", ["scene", "bg"], ["diff"]),
        helper.make_node("Abs", ["diff"], ["size"]),
        helper.make_node("ReduceMean", ["size", "axes"], ["mean"], keepdims=1),
        helper.make_node("Sub", ["mean", "level"], ["over"]),
        helper.make_node("Mul", ["over", "slope"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["mask"]),
        helper.make_node("ReduceMean", ["scene", "axes"], ["bright"], keepdims=1),
        helper.make_node("Sigmoid", ["bright"], ["depth"]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "difference", inputs, outputs, initializer=consts),
        opset_imports=[helper.make_opsetid("", 18)],
    )
    model.ir_version = 9
    pre = Preprocessing(size=size, mean=(0.5,) * 6, std=(std,) * 6)
    for key, value in ModelInfo("difference", pre, depth_scale_m=10.0).to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path
