# long file: the Predictor, its inputs and results, the background cache and the runner it opens.
"""The deployable API: ``Predictor(path).predict(scene, bg=bg)`` -> mask and depth at its size.

A Predictor owns one model file and everything around it: it reads the pre-processing from the
model's own metadata (ONNX ``metadata_props`` or the engine sidecar), prepares the inputs with
the same functions training uses (:mod:`maskdepth.runtime.preprocess`), runs a runner and
resizes the outputs back. Callers never see tensors.

    p = Predictor("model.onnx")                # device="auto" | "cpu" | "cuda" | "cuda:1"
    out = p.predict(scene, bg=bg)              # RGB uint8 arrays (gray/RGBA converted) or paths
    p.set_background(bg); out = p.predict(scene)              # fixed camera: bg prepared once
    for out in p.predict_batch(scenes, bgs=bg, batch_size=8): # streams, constant memory

The background is keyword-only, so that a call written for the other order fails loudly
instead of swapping the two images.
        ...

One Predictor may be used from several threads at once: the runners' sessions are thread-safe,
every call has its own buffers, and the background cache takes a lock.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import MaskDepthError
from .image import as_rgb, decode_image, read_image
from .model_info import INPUT_NAMES, OUTPUT_NAMES, ModelInfo
from .preprocess import prepare_background, prepare_scene, resize_map
from .refine_layout import layout, prepare_padded
from .runners.base import batch_limits
from .runners.cuda import parse_device
from .visualize import depth_colormap, mask_overlay

ImageInput = np.ndarray | str | os.PathLike | bytes
BACKENDS = ("onnxruntime", "onnxruntime-tensorrt", "tensorrt")
ENGINE_SUFFIXES = (".engine", ".plan")
DEFAULT_BATCH = 8


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, eq=False)
class Prediction:
    """One scene's result: ``mask`` and ``depth`` float32 (H, W) in [0, 1] at the scene's size."""

    mask: np.ndarray
    depth: np.ndarray
    scene: np.ndarray = field(repr=False)  # the RGB scene, for the pictures
    depth_scale_m: float | None = None

    @property
    def depth_metres(self) -> np.ndarray | None:
        """Depth in metres when the model knows the scale of its training data, else None."""
        if self.depth_scale_m is None:
            return None
        return self.depth * np.float32(self.depth_scale_m)

    def binary(self, threshold: float = 0.5) -> np.ndarray:
        """bool (H, W): ``mask > threshold`` (the metrics' and the seed's convention)."""
        if not 0.0 <= threshold <= 1.0:
            raise MaskDepthError(f"threshold {threshold}: expected a value in [0, 1]")
        return self.mask > np.float32(threshold)

    def overlay(self, color: tuple[int, int, int] = (255, 40, 40), alpha: float = 0.5):
        """RGB uint8 picture of the scene with the mask tinted in ``color`` and outlined."""
        return mask_overlay(self.scene, self.mask, color, alpha)

    def depth_colormap(self) -> np.ndarray:
        """RGB uint8 picture of the depth: near is warm, far is cool."""
        return depth_colormap(self.depth)


# ------------------------------------------------------------------------------ inputs


def load_rgb(image: ImageInput, name: str) -> np.ndarray:
    """An input as RGB uint8 (H, W, 3): a path is read, bytes decoded, an array converted
    (grayscale and RGBA to RGB). Errors name ``name`` or the path and what was expected."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, (bytes, bytearray)):
        return decode_image(bytes(image), name)
    return np.ascontiguousarray(as_rgb(image, name))


def _is_one_image(value) -> bool:
    return isinstance(value, (str, os.PathLike, bytes, bytearray)) or (
        isinstance(value, np.ndarray) and value.ndim <= 3
    )


PrepareBackground = Callable[..., np.ndarray]  # (rgb, scene_size, out=None) -> (3, H, W)


class _Background:
    """A fixed camera's background: its RGB pixels and, per scene size, its normalised planes
    (and batches of them) so that it is prepared once, not once per scene."""

    PLANES_KEPT, TILES_KEPT = 8, 4

    def __init__(self, rgb: np.ndarray, prepare: PrepareBackground) -> None:
        self.rgb = rgb
        self.prepare = prepare
        self._planes: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._tiles: OrderedDict[tuple, object] = OrderedDict()
        self._lock = threading.Lock()

    def planes(self, scene_size: tuple[int, int]) -> np.ndarray:
        """float32 (3, H, W), read-only: shared by every thread."""
        with self._lock:
            return self._cached(self._planes, scene_size, self.PLANES_KEPT, self._prepare)

    def tile(self, scene_size: tuple[int, int], count: int, to_device: Callable) -> object:
        """``count`` copies of the planes as one (count, 3, H, W) input, where the runner
        reads it (an OrtValue on a GPU): a run of same-sized scenes uploads the bg once."""
        planes = self.planes(scene_size)

        def make(_key) -> object:
            batch = np.ascontiguousarray(np.broadcast_to(planes, (count, *planes.shape)))
            batch.flags.writeable = False
            return to_device(batch)

        with self._lock:
            return self._cached(self._tiles, (scene_size, count), self.TILES_KEPT, make)

    def _prepare(self, scene_size: tuple[int, int]) -> np.ndarray:
        planes = self.prepare(self.rgb, scene_size)
        planes.flags.writeable = False
        return planes

    @staticmethod
    def _cached(cache: OrderedDict, key, kept: int, make: Callable):
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        value = cache[key] = make(key)
        while len(cache) > kept:
            cache.popitem(last=False)
        return value


# ------------------------------------------------------------------------------ predictor


class Predictor:
    """One model file on one device, with its pre- and post-processing.

    A refined model (``info.refine``) is fed the frame at full resolution, padded to its base
    size's aspect and scaled into the graph's accepted range
    (:mod:`maskdepth.runtime.refine_layout` says why padding); its outputs are cropped back to
    the frame. Other models see the frame resized to their size, as always.

    ``path``: a ``.onnx`` file exported by maskdepth, or a TensorRT ``.engine`` with its
    sidecar. ``device``: "auto" (a GPU when the backend has one and there is one), "cpu",
    "cuda" or "cuda:N" (GPU N).
    ``threads``: CPU threads for onnxruntime (default: onnxruntime's). ``backend``: None picks
    by suffix; "onnxruntime", "onnxruntime-tensorrt" (onnxruntime's TensorRT provider) or
    "tensorrt" (a native engine).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        backend: str | None = None,
    ) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such model file")
        if backend is None:
            backend = "tensorrt" if self.path.suffix.lower() in ENGINE_SUFFIXES else "onnxruntime"
        if backend not in BACKENDS:
            raise MaskDepthError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.backend = backend
        self._runner, self.info = open_runner(self.path, backend, device, threads)
        self._min_batch, self._max_batch = batch_limits(self._runner)
        self._background: _Background | None = None

    # -------------------------------------------------------------- what runs

    @property
    def device(self) -> str:
        """Where the model really runs, "cpu" or "cuda": read from the backend, not assumed."""
        return self._runner.device

    @property
    def provider(self) -> str:
        """The execution provider or engine that runs it, e.g. "CPUExecutionProvider"."""
        return self._runner.provider

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) the network sees."""
        return self.info.size

    def __repr__(self) -> str:
        height, width = self.size
        return (
            f"Predictor({str(self.path)!r}: {self.info.model} {self.info.precision} "
            f"{height}x{width} on {self.device} via {self.provider})"
        )

    def close(self) -> None:
        """Release the session or engine; the Predictor cannot predict afterwards."""
        self._runner.deactivate()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -------------------------------------------------------------- prediction

    def set_background(self, bg: ImageInput | None) -> None:
        """Fix the background for ``predict(scene)`` and ``predict_batch(scenes)``; it is
        prepared once per scene size and reused. None forgets it."""
        self._background = (
            None if bg is None else _Background(load_rgb(bg, "bg"), self._prepare_background)
        )

    def predict(self, scene: ImageInput, *, bg: ImageInput | None = None) -> Prediction:
        """Mask and depth of one scene against ``bg``, or against the :meth:`set_background`
        bg when ``bg`` is None (a fixed camera)."""
        if scene is None:
            raise MaskDepthError("predict: no scene given")
        background = self._fixed_background() if bg is None else load_rgb(bg, "bg")
        return self._run([(background, load_rgb(scene, "scene"))])[0]

    def predict_batch(
        self,
        scenes: Iterable[ImageInput],
        *,
        bgs: ImageInput | Iterable[ImageInput] | None = None,
        batch_size: int = DEFAULT_BATCH,
    ) -> Iterator[Prediction]:
        """Predictions for many scenes, in order, ``batch_size`` at a time; reads its inputs
        lazily (paths, a generator) so long lists stream in constant memory.

        ``bgs``: one background for all scenes, one per scene (a list or iterable), or None
        for the :meth:`set_background` bg.
        """
        if _is_one_image(scenes) or scenes is None:
            raise MaskDepthError(
                "predict_batch: scenes must be a list or iterable of images; for one scene "
                "use predict()"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise MaskDepthError(f"batch_size {batch_size!r}: expected a whole number >= 1")
        size = min(batch_size, self._max_batch or batch_size)
        return self._stream(self._pairs(bgs, scenes), size)

    # -------------------------------------------------------------- internals

    def _fixed_background(self) -> _Background:
        if self._background is None:
            raise MaskDepthError(
                "no background: call set_background(bg) first, or pass bg and scene"
            )
        return self._background

    def _pairs(self, bgs, scenes: Iterable) -> Iterator[tuple]:
        if bgs is None:
            background = self._fixed_background()
            return ((background, scene, i) for i, scene in enumerate(scenes))
        if _is_one_image(bgs):
            background = _Background(load_rgb(bgs, "bg"), self._prepare_background)
            return ((background, scene, i) for i, scene in enumerate(scenes))
        return _zip_exact(bgs, scenes)

    def _stream(self, pairs: Iterator[tuple], size: int) -> Iterator[Prediction]:
        while chunk := list(itertools.islice(pairs, size)):
            loaded = [
                (
                    bg if isinstance(bg, _Background) else load_rgb(bg, f"bgs[{i}]"),
                    load_rgb(scene, f"scenes[{i}]"),
                )
                for bg, scene, i in chunk
            ]
            yield from self._run(loaded)

    def _run(self, pairs: list[tuple]) -> list[Prediction]:
        """Pre-process a list of (bg or _Background, scene RGB), run once, post-process."""
        if self.info.refine is not None and len({s.shape[:2] for _, s in pairs}) > 1:
            return [p for pair in pairs for p in self._run([pair])]  # one feed size per run
        size = self._feed_size(pairs[0][1].shape[:2])
        count = len(pairs)
        padded = max(count, self._min_batch or count)
        scenes = np.empty((padded, 3, *size), np.float32)
        for slot, (_, scene) in enumerate(pairs):
            self._prepare_scene(scene, scenes[slot])
        scenes[count:] = scenes[0]  # a model with a smallest batch gets copies of the first
        feed = {"bg": self._bg_feed(pairs, padded, size), "scene": scenes}
        outputs = self._runner.infer(feed)
        return [self._result(outputs, slot, scene) for slot, (_, scene) in enumerate(pairs)]

    def _feed_size(self, scene_size: tuple[int, int]) -> tuple[int, int]:
        refine = self.info.refine
        return self.info.size if refine is None else layout(scene_size, refine).feed

    def _prepare_scene(self, scene: np.ndarray, out: np.ndarray) -> None:
        pre, refine = self.info.preprocessing, self.info.refine
        if refine is None:
            prepare_scene(scene, pre, out)
        else:
            prepare_padded(scene, None, pre, refine, out)

    def _prepare_background(
        self, bg: np.ndarray, scene_size: tuple[int, int], out: np.ndarray | None = None
    ) -> np.ndarray:
        pre, refine = self.info.preprocessing, self.info.refine
        if refine is None:
            return prepare_background(bg, scene_size, pre, out)
        return prepare_padded(bg, scene_size, pre, refine, out)

    def _bg_feed(self, pairs: list[tuple], padded: int, size: tuple[int, int]):
        first_bg, first_scene = pairs[0]
        scene_size = first_scene.shape[:2]
        if isinstance(first_bg, _Background) and all(
            bg is first_bg and scene.shape[:2] == scene_size for bg, scene in pairs
        ):
            return first_bg.tile(scene_size, padded, self._to_device)
        bgs = np.empty((padded, 3, *size), np.float32)
        for slot, (bg, scene) in enumerate(pairs):
            if isinstance(bg, _Background):
                bgs[slot] = bg.planes(scene.shape[:2])
            else:
                self._prepare_background(bg, scene.shape[:2], bgs[slot])
        bgs[len(pairs) :] = bgs[0]
        return bgs

    def _to_device(self, array: np.ndarray):
        to_device = getattr(self._runner, "to_device", None)
        return array if to_device is None else to_device(array)

    def _result(self, outputs: dict, slot: int, scene: np.ndarray) -> Prediction:
        size = scene.shape[:2]
        refine = self.info.refine
        content = None if refine is None else layout(size, refine).content
        maps = {}
        for name in OUTPUT_NAMES:
            values = np.asarray(outputs[name][slot, 0], np.float32)
            if content is not None:  # the frame's part of a padded feed
                values = values[: content[0], : content[1]]
            maps[name] = np.clip(resize_map(values, size), 0.0, 1.0)  # a new array, no alias
        return Prediction(maps["mask"], maps["depth"], scene, self.info.depth_scale_m)


# ------------------------------------------------------------------------------ helpers


def _zip_exact(bgs: Iterable, scenes: Iterable) -> Iterator[tuple]:
    """(bg, scene, index) pairs; a list of backgrounds must be as long as the scenes."""
    missing = object()
    for i, (bg, scene) in enumerate(itertools.zip_longest(bgs, scenes, fillvalue=missing)):
        if bg is missing or scene is missing:
            more = "scenes" if bg is missing else "backgrounds"
            raise MaskDepthError(
                f"predict_batch: more {more} than {'backgrounds' if more == 'scenes' else 'scenes'}"
                f" (the lists differ from item {i}); pass one bg for all scenes or one per scene"
            )
        yield bg, scene, i


def open_runner(path: Path, backend: str, device: str, threads: int | None):
    """Load the model on its backend; return the active runner and the model's ModelInfo."""
    is_engine = path.suffix.lower() in ENGINE_SUFFIXES
    if backend == "tensorrt":
        if not is_engine:
            raise MaskDepthError(
                f"{path}: the tensorrt backend runs engines (.engine); build one with "
                "'maskdepth export ... --format engine' or use backend 'onnxruntime'"
            )
        kind, index = parse_device(device)
        if kind == "cpu":
            raise MaskDepthError(
                f"{path}: a TensorRT engine runs on a CUDA GPU only; use the .onnx file for "
                "device 'cpu'"
            )
        from .engine_sidecar import engine_info
        from .runners.tensorrt import TensorRTRunner

        info = engine_info(path)  # checks the sidecar: "rebuild with ..." before deserialising
        engine_runner = TensorRTRunner(path, device=index)
        engine_runner.activate()
        return engine_runner, info
    if is_engine:
        raise MaskDepthError(f"{path}: a TensorRT engine needs backend 'tensorrt'")
    from .runners.ort import OnnxRuntimeRunner

    runner = OnnxRuntimeRunner(
        path, threads=threads, device=device, tensorrt=backend == "onnxruntime-tensorrt"
    )
    runner.activate()
    try:
        info = ModelInfo.from_props(runner.metadata, str(path))
        _check_io(runner, path)
    except BaseException:
        runner.deactivate()
        raise
    return runner, info


def _check_io(runner, path: Path) -> None:
    names = tuple(runner.input_metadata)
    if sorted(names) != sorted(INPUT_NAMES):
        raise MaskDepthError(
            f"{path}: inputs {list(names)}, expected {list(INPUT_NAMES)} (a maskdepth export)"
        )
