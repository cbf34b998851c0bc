"""The live loop: a decode thread per source -> one bounded mailbox -> the batcher, which runs
frames of every source in one ``predict_batch`` call on an inference thread while the caller's
thread finishes the batch before (objects, events, the background's update) -> a writer thread
(events, pictures, video, backgrounds). So the background a frame is given has seen the
updates of the frames up to one batch before it: a lag of ``batch`` frames, far below
``bg_rate``.

Live sources drop their oldest waiting frame when the mailbox is full (``drop="oldest"``,
counted); files wait (``"never"``: back-pressure). Every wait is bounded, so a stop (Ctrl-C,
the caller closing the iterator) ends the run within a few seconds, with the files being
written finished and ``summary.json`` written.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from maskdepth.runtime.predictor import Prediction, Predictor
from maskdepth.runtime.stream.background import BackgroundModel
from maskdepth.runtime.stream.config import StreamConfig, StreamResult
from maskdepth.runtime.stream.events import Latency, Tracker, find_objects, scale_depths
from maskdepth.runtime.stream.sources import Reader, reopen
from maskdepth.runtime.stream.writer import Writer

WAIT = 0.1  # seconds: the longest any stage waits before it looks at the stop flag again


@dataclass
class Item:
    index: int
    stamp: float
    frame: np.ndarray
    read_at: float  # time.perf_counter() when it was read


@dataclass
class Job:
    """A batch in the model: its frames, the backgrounds they were given, the predictions."""

    ready: list[tuple[Source, Item]]
    bgs: list[np.ndarray]
    predictions: Future


class Source:
    """One source's reader, background, tracker, waiting frames and counts."""

    def __init__(self, reader: Reader, bg: BackgroundModel, config: StreamConfig) -> None:
        self.reader, self.bg, self.name = reader, bg, reader.spec.name
        self.drop = config.drop or ("oldest" if reader.spec.live else "never")
        self.waiting: deque[Item] = deque()
        self.tracker = Tracker()
        self.latency = Latency()
        self.counts = dict.fromkeys(
            ("read", "processed", "dropped", "undecodable", "reconnects", "learning"), 0
        )
        self.learned = not bg.ready
        self.done = False
        self.error: str | None = None
        self.started: float | None = None
        self.last: float | None = None


class Mailbox:
    """The frames waiting for the batcher, per source, at most ``size`` each, one lock."""

    def __init__(self, sources: list[Source], size: int) -> None:
        self.sources, self.size = sources, size
        self.cond = threading.Condition()
        self._turn = 0

    def put(self, source: Source, item: Item, stop: threading.Event) -> None:
        with self.cond:
            while len(source.waiting) >= self.size and not stop.is_set():
                if source.drop == "oldest":
                    source.waiting.popleft()
                    source.counts["dropped"] += 1
                else:
                    self.cond.wait(WAIT)
            source.waiting.append(item)
            self.cond.notify_all()

    def finish(self, source: Source) -> None:
        with self.cond:
            source.done = True
            self.cond.notify_all()

    def take(self, limit: int, wait: bool = True) -> list[tuple[Source, Item]]:
        """Up to ``limit`` frames, one source after the other; waits at most WAIT for one."""
        with self.cond:
            if wait and not any(s.waiting for s in self.sources):
                self.cond.wait(WAIT)
            taken: list[tuple[Source, Item]] = []
            order = self.sources[self._turn :] + self.sources[: self._turn]
            self._turn = (self._turn + 1) % len(self.sources)
            while len(taken) < limit and any(s.waiting for s in order):
                for source in order:
                    if source.waiting and len(taken) < limit:
                        taken.append((source, source.waiting.popleft()))
            self.cond.notify_all()
            return taken

    def finished(self) -> bool:
        with self.cond:
            return all(s.done and not s.waiting for s in self.sources)


def decode(source: Source, mailbox: Mailbox, config: StreamConfig, stop: threading.Event):
    """A source's thread: read, count, hand over; reopen a live source that fails."""
    index = 0
    try:
        while not stop.is_set() and (config.frames is None or index < config.frames):
            status, frame, stamp = source.reader.read()
            if status == "frame":
                assert frame is not None
                source.counts["read"] += 1
                mailbox.put(source, Item(index, stamp, frame, time.perf_counter()), stop)
            elif status == "bad":
                source.counts["undecodable"] += 1
            elif not source.reader.spec.live:
                break  # a file ended: its source closes cleanly
            elif reopen(source.reader, config.reconnect, stop):
                source.counts["reconnects"] += 1
                continue
            else:
                if not stop.is_set():  # said in the summary and by the command's exit code
                    source.error = f"gave up after {config.reconnect} reopen attempts"
                break
            index += 1
    except Exception as exc:  # noqa: BLE001 -- the run goes on with the other sources
        source.error = f"{type(exc).__name__}: {exc}"
    finally:
        source.reader.close()
        mailbox.finish(source)


class Run:
    """One stream run over opened sources; iterate :meth:`results` once."""

    def __init__(self, predictor: Predictor, sources: list[Source], config: StreamConfig):
        self.predictor, self.sources, self.config = predictor, sources, config
        self.mailbox = Mailbox(sources, config.queue_size)
        self.stop = threading.Event()
        self.writer = Writer(config, {s.name: s.reader.fps for s in sources})
        self.summary: dict | None = None
        self._threads: list[threading.Thread] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
        self._shown = time.perf_counter()

    def results(self) -> Generator[StreamResult, None, None]:
        started = time.perf_counter()
        interrupted = True
        try:
            for source in self.sources:
                thread = threading.Thread(
                    target=decode, args=(source, self.mailbox, self.config, self.stop),
                    name=f"decode-{source.name}", daemon=True,
                )  # fmt: skip
                thread.start()
                self._threads.append(thread)
            pending: Job | None = None
            while pending is not None or not self.mailbox.finished():
                # with a batch in the model, look for the next without waiting: the next runs
                # while this one's objects, background and outputs are done here
                batch = self.mailbox.take(self.config.batch, wait=pending is None)
                job = self._submit(batch) if batch else None
                if pending is not None:
                    yield from self._finish(pending)
                    self._progress()
                pending = job
            interrupted = False
        finally:
            self._pool.shutdown(wait=True)
            self.finish(time.perf_counter() - started, interrupted)

    def _submit(self, batch: list[tuple[Source, Item]]) -> Job | None:
        """Learn or align each frame's background, start the model on the batch."""
        ready = []
        for source, item in batch:
            if source.bg.ready:
                ready.append((source, item))
            else:
                source.counts["learning"] += 1
                source.bg.learn(item.frame)
        if not ready:
            return None
        bgs = [source.bg.for_frame(item.frame) for source, item in ready]
        same = all(b is bgs[0] for b in bgs)
        frames = [item.frame for _, item in ready]

        def infer() -> list[Prediction]:
            given = bgs[0] if same else bgs
            return list(self.predictor.predict_batch(frames, bgs=given, batch_size=len(frames)))

        return Job(ready, bgs, self._pool.submit(infer))

    def _finish(self, job: Job) -> Iterator[StreamResult]:
        """Objects, events, the background's update and the outputs of a batch, in order."""
        scale = self.predictor.info.depth_scale_m
        for (source, item), prediction, bg in zip(job.ready, job.predictions.result(), job.bgs):
            binary = prediction.binary(self.config.threshold)
            objects = find_objects(binary, prediction.depth, self.config.min_area)
            scale_depths(objects, scale)
            events = source.tracker.step(objects)
            # the background's clock: a file's own time; a live source's monotonic read time
            # (its wall-clock stamp may jump with NTP, which would blend or relearn at once)
            clock = item.read_at if source.reader.spec.live else item.stamp
            source.bg.update(item.frame, binary, len(objects), clock)
            result = StreamResult(
                source.name, item.index, item.stamp, item.frame, prediction, objects, events, bg
            )
            self._count(source, item)
            processed = source.counts["processed"]
            self.writer.put(result, float(binary.mean()), source.bg, processed)
            yield result

    def _count(self, source: Source, item: Item) -> None:
        now = time.perf_counter()
        source.latency.add(now - item.read_at)
        source.counts["processed"] += 1
        source.started = item.read_at if source.started is None else source.started
        source.last = now

    def _progress(self, every: float = 2.0) -> None:
        now = time.perf_counter()
        if not self.config.progress or now - self._shown < every:
            return
        self._shown = now
        for source in self.sources:
            line = _source_summary(source)
            print(
                f"{source.name}: {line['processed']} frames, {line['fps']:.1f} fps, "
                f"{line['dropped']} dropped",
                file=sys.stderr,
                flush=True,
            )

    def finish(self, seconds: float, interrupted: bool) -> None:
        """Stop the sources, finish the outputs, write the summary."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=10.0)
        summary = {
            "model": str(self.predictor.path),
            "device": self.predictor.device,
            "provider": self.predictor.provider,
            "batch": self.config.batch,
            "bg_update": self.config.bg_update,
            "depth_unit": "m" if self.predictor.info.depth_scale_m else "model",
            "seconds": round(seconds, 3),
            "interrupted": interrupted,
            "sources": {s.name: _source_summary(s) for s in self.sources},
        }
        self.summary = summary
        self.writer.close(summary)


def _source_summary(source: Source) -> dict:
    counts = source.counts
    span = (source.last or 0.0) - (source.started or 0.0)
    p50, p99 = source.latency.percentile(50), source.latency.percentile(99)
    return {
        "source": source.reader.spec.target,
        "kind": source.reader.spec.kind,
        "drop": source.drop,
        "frames_read": counts["read"],
        "processed": counts["processed"],
        "dropped": counts["dropped"],
        "undecodable": counts["undecodable"],
        "reconnects": counts["reconnects"],
        "bg_learned_from": counts["learning"] if source.learned else 0,
        "bg_updates": source.bg.updates,
        "bg_relearns": source.bg.relearns,
        "fps": counts["processed"] / span if span > 0 else 0.0,
        "latency_p50_ms": None if p50 is None else round(p50 * 1000, 2),
        "latency_p99_ms": None if p99 is None else round(p99 * 1000, 2),
        "error": source.error,
    }
