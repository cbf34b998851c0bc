"""Where frames come from: a video file, a folder of frames, a camera, a URL or a GStreamer
pipeline, each with a name; opened once up front (a source that cannot be opened is one error
naming it, before any work), read frame by frame, reopened with back-off when a live one fails.

Files and folders are *finite* (they end, they apply back-pressure, their timestamps are their
own time); cameras, URLs and pipelines are *live* (wall-clock timestamps, reopened on failure).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image
from maskdepth.runtime.outputs import list_images

URL_SCHEMES = ("rtsp", "rtsps", "http", "https", "udp", "tcp", "rtmp")
LIVE_KINDS = ("camera", "url", "gstreamer")
OPEN_TIMEOUT_MS = 5000  # a network stream that says nothing for this long has stalled
READ_TIMEOUT_MS = 5000
_NAME = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")


@dataclass(frozen=True)
class SourceSpec:
    """One ``--source``: its name (outputs go to ``OUT/<name>/``), what to open, and its kind."""

    name: str
    target: str
    kind: str  # "file" | "folder" | "camera" | "url" | "gstreamer"

    @property
    def live(self) -> bool:
        return self.kind in LIVE_KINDS


def source_kind(target: str) -> str:
    if target.isdigit():
        return "camera"
    if "://" in target and target.split("://", 1)[0].lower() in URL_SCHEMES:
        return "url"
    if "!" in target and " " in target:
        return "gstreamer"
    return "folder" if Path(target).is_dir() else "file"


def default_name(target: str, kind: str, index: int) -> str:
    """The file's stem, ``cam<index>``, the URL's host and path, ``gst<n>``."""
    if kind == "camera":
        return f"cam{target}"
    if kind == "gstreamer":
        return f"gst{index}"
    if kind == "url":
        parts = urlsplit(target)
        text = f"{parts.hostname or ''}{parts.path}"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.") or f"url{index}"
    return Path(target).stem or Path(target).name


def parse_sources(texts: list[str]) -> list[SourceSpec]:
    """``["door=rtsp://...", "clip.mp4", "0"]`` -> named specs; names must differ."""
    if not texts:
        raise MaskDepthError("no --source given")
    specs = []
    for index, text in enumerate(texts):
        match = _NAME.match(text)
        name, target = (match.group(1), match.group(2)) if match else (None, text)
        kind = source_kind(target)
        specs.append(SourceSpec(name or default_name(target, kind, index), target, kind))
    names = [s.name for s in specs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MaskDepthError(
            f"--source: the name {repeated[0]} is used twice; name them, e.g. --source a=..."
        )
    return specs


class Reader:
    """Frames of one source: :meth:`read` -> ("frame", rgb, timestamp), ("bad", None, t) for a
    frame that does not decode, or ("end", None, t). ``fps`` is the source's frame rate."""

    def __init__(self, spec: SourceSpec, fps: float = 25.0) -> None:
        self.spec = spec
        self.fps = fps
        self._paths: list[Path] = []
        self._next = 0
        self._capture: cv2.VideoCapture | None = None
        self._bad_run = 0
        self.open()

    def open(self) -> None:
        """Open (or reopen) the source; a MaskDepthError naming it when it cannot be."""
        spec = self.spec
        if spec.kind == "folder":
            self._paths = list_images(Path(spec.target))
            return
        if spec.kind == "file" and not Path(spec.target).is_file():
            raise FileNotFoundError(f"source {spec.name}: {spec.target}: no such file or folder")
        self.close()
        capture = _capture(spec)
        if not capture.isOpened():
            capture.release()
            raise MaskDepthError(f"source {spec.name}: OpenCV cannot open {spec.target}")
        self._capture = capture
        rate = capture.get(cv2.CAP_PROP_FPS)
        if rate and 0 < rate < 1000:
            self.fps = float(rate)
        self._frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)

    def read(self) -> tuple[str, np.ndarray | None, float]:
        if self.spec.kind == "folder":
            return self._read_folder()
        assert self._capture is not None
        ok, frame = self._capture.read()
        stamp = self._stamp()
        if ok and frame is not None and frame.size:
            self._bad_run = 0
            return "frame", cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), stamp
        if self.spec.kind == "file" and self._bad_run < 8 and self._position() < self._frames:
            self._bad_run += 1  # a broken frame inside the file: skip it, the next may decode
            return "bad", None, stamp
        return "end", None, stamp

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _read_folder(self) -> tuple[str, np.ndarray | None, float]:
        if self._next >= len(self._paths):
            return "end", None, self._next / self.fps
        path, stamp = self._paths[self._next], self._next / self.fps
        self._next += 1
        try:
            return "frame", read_image(path), stamp
        except (MaskDepthError, OSError):
            return "bad", None, stamp

    def _position(self) -> int:
        assert self._capture is not None
        return int(self._capture.get(cv2.CAP_PROP_POS_FRAMES) or 0)

    def _stamp(self) -> float:
        if self.spec.live or self._capture is None:
            return time.time()
        return float(self._capture.get(cv2.CAP_PROP_POS_MSEC) or 0.0) / 1000.0


def _capture(spec: SourceSpec) -> cv2.VideoCapture:
    if spec.kind == "camera":
        return cv2.VideoCapture(int(spec.target))
    if spec.kind == "gstreamer":
        if "GStreamer:                   YES" not in cv2.getBuildInformation():
            raise MaskDepthError(
                f"source {spec.name}: this OpenCV has no GStreamer; give a file, camera or URL"
            )
        return cv2.VideoCapture(spec.target, cv2.CAP_GSTREAMER)
    if spec.kind == "url":
        timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS]
        timeouts += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
        return cv2.VideoCapture(spec.target, cv2.CAP_FFMPEG, timeouts)
    return cv2.VideoCapture(spec.target)


def reopen(reader: Reader, attempts: int, stop, backoff: float = 0.25) -> bool:
    """Reopen a live source that stalled or ended: up to ``attempts`` tries, waiting 0.25 s,
    0.5 s, ... (at most 4 s) between them, or until ``stop`` (an Event) is set. True: open."""
    wait = backoff
    for _ in range(attempts):
        if stop.wait(wait):
            return False
        try:
            reader.open()
            return True
        except (MaskDepthError, OSError):
            wait = min(wait * 2, 4.0)
    return False
