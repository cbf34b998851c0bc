"""The output stage, on its own thread: per source ``OUT/<source>/events.jsonl``, the per-frame
pictures ``OUT/<source>/<kind>/NNNNNN.png`` (predict's kinds, written atomically by
:mod:`maskdepth.runtime.outputs`), the side-by-side video ``OUT/<source>/<source>.mp4`` (its
video writer: a temporary name renamed when it is complete) and ``OUT/<source>/bg/NNNNNN.png``;
at the end ``OUT/summary.json``. Its queue is bounded: a slow disk slows the loop, it never
fills memory.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from maskdepth.runtime.image import write_image
from maskdepth.runtime.outputs import save_prediction, side_by_side, write_video
from maskdepth.runtime.stream.background import BackgroundModel
from maskdepth.runtime.stream.config import StreamConfig, StreamResult
from maskdepth.runtime.stream.events import EventLog, event_line, write_summary

_END = None
JOIN_TIMEOUT = 120.0  # seconds to finish what is queued when the run stops
KEPT_ERRORS = 10  # write errors kept for the summary (the count says how many failed)


def hand_over(jobs: queue.Queue, job, worker: threading.Thread) -> None:
    """Put ``job`` on a bounded queue, waiting while it is full, but never for a worker that
    has died (its error is reported at the end instead)."""
    while worker.is_alive():
        try:
            jobs.put(job, timeout=0.5)
            return
        except queue.Full:
            continue


class VideoSink:
    """One source's mp4, fed frame by frame to ``outputs.write_video`` on a thread."""

    def __init__(self, path: Path, fps: float) -> None:
        self.frames: queue.Queue = queue.Queue(maxsize=8)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._write, args=(path, fps), daemon=True)
        self.thread.start()

    def _write(self, path: Path, fps: float) -> None:
        try:
            write_video(path, self._frames(), fps)
        except BaseException as exc:  # noqa: BLE001 -- reported by close()
            self.error = exc

    def _frames(self):
        while (frame := self.frames.get()) is not _END:
            yield frame

    def add(self, frame: np.ndarray | None) -> None:
        hand_over(self.frames, frame, self.thread)

    def close(self) -> None:
        self.add(_END)
        self.thread.join(timeout=JOIN_TIMEOUT)


class Writer:
    """Writes each result it is given, in order, on one thread; nothing when ``out`` is None."""

    def __init__(self, config: StreamConfig, fps: dict[str, float]) -> None:
        self.config = config
        self.out = None if config.out is None else Path(config.out)
        self.kinds, self.extras = config.kinds()
        self._fps = fps
        self._logs: dict[str, EventLog] = {}
        self._videos: dict[str, VideoSink] = {}
        self._queue: queue.Queue = queue.Queue(maxsize=2 * config.batch)
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        self.failed = 0  # writes that failed, all of them (errors keeps the first few)
        if self.out is not None:
            self.out.mkdir(parents=True, exist_ok=True)
            self._thread = threading.Thread(target=self._work, name="writer", daemon=True)
            self._thread.start()

    def put(
        self, result: StreamResult, fraction: float, bg: BackgroundModel, processed: int
    ) -> None:
        """Queue one result; ``processed``: its source's frames processed so far, this one
        included (the background's picture comes every ``bg_every`` of them, from the first,
        whatever was skipped or dropped)."""
        if self._thread is None:
            return
        picture = None
        if "bg" in self.extras and (processed - 1) % self.config.bg_every == 0:
            picture = bg.image()  # a copy now: the model moves on
        hand_over(self._queue, (result, fraction, picture), self._thread)

    def _work(self) -> None:
        while (job := self._queue.get()) is not _END:
            try:
                self._write(*job)
            except Exception as exc:  # noqa: BLE001 -- a full disk: say it at the end
                self.failed += 1
                if len(self.errors) < KEPT_ERRORS:  # the first few; a full disk fails them all
                    self.errors.append(f"{type(exc).__name__}: {exc}")

    def _write(self, result: StreamResult, fraction: float, bg: np.ndarray | None) -> None:
        assert self.out is not None
        folder = self.out / result.source
        if result.source not in self._logs:
            self._logs[result.source] = EventLog(folder / "events.jsonl")
            for kind in self.kinds:
                (folder / kind).mkdir(parents=True, exist_ok=True)
            if "video" in self.extras:
                path = folder / f"{result.source}.mp4"
                self._videos[result.source] = VideoSink(path, self._fps[result.source])
        line = event_line(result.index, result.timestamp, fraction, result.objects, result.events)
        self._logs[result.source].write(line)
        name = f"{result.index:06d}"
        threshold = self.config.threshold
        save_prediction(result.prediction, folder, name, self.kinds, threshold)
        if result.source in self._videos:
            self._videos[result.source].add(side_by_side(result.prediction, threshold))
        if bg is not None:
            (folder / "bg").mkdir(exist_ok=True)
            write_image(folder / "bg" / f"{name}.png", bg)

    def close(self, summary: dict) -> None:
        """Finish what is queued, close the files and write ``summary.json``."""
        if self._thread is None or self.out is None:
            return
        hand_over(self._queue, _END, self._thread)
        self._thread.join(timeout=JOIN_TIMEOUT)
        for video in self._videos.values():
            video.close()
            if video.error is not None:
                self.errors.append(f"video: {video.error}")
        for log in self._logs.values():
            log.close()
        if self.errors:
            summary["write_errors"] = self.errors[:KEPT_ERRORS]
            summary["failed_writes"] = self.failed
        write_summary(self.out / "summary.json", summary)
