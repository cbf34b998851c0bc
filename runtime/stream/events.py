"""What a source saw: the objects of each mask, when they enter and leave, and the run's summary.

``OUT/<source>/events.jsonl`` has one JSON line per processed frame::

    {"frame": 12, "time": 0.48, "mask_fraction": 0.031,
     "objects": [{"id": 1, "bbox": [x, y, w, h], "area": 410, "centroid": [x, y],
                  "depth_median": 2.31, "depth_min": 1.97}],
     "events": [{"event": "enter", "id": 1}]}

Depths are in metres when the model knows its scale (``"depth_unit": "m"`` in the summary),
else in the model's [0, 1] units. An object keeps its id from frame to frame while its box
overlaps the last one's; a new id is an ``enter``, an id that is gone a ``leave``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from maskdepth.runtime.image import write_bytes_atomic


def find_objects(binary: np.ndarray, depth: np.ndarray, min_area: int) -> list[dict]:
    """Connected components of ``binary`` with at least ``min_area`` pixels, largest first:
    box, area, centroid and the median and minimum of ``depth`` inside each."""
    count, labels, stats, centroids = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=8
    )
    objects = []
    for label in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[label])
        if area < min_area:
            continue
        inside = depth[y : y + h, x : x + w][labels[y : y + h, x : x + w] == label]
        cx, cy = (round(float(v), 1) for v in centroids[label])
        objects.append(
            {
                "bbox": [x, y, w, h],
                "area": area,
                "centroid": [cx, cy],
                "depth_median": round(float(np.median(inside)), 4),
                "depth_min": round(float(inside.min()), 4),
            }
        )
    return sorted(objects, key=lambda o: -o["area"])


def _overlap(a: list[int], b: list[int]) -> float:
    """Intersection over union of two [x, y, w, h] boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / float(a[2] * a[3] + b[2] * b[3] - inter)


class Tracker:
    """Gives objects ids that last while their boxes overlap frame to frame (greedy, largest
    first) and says which entered and which left."""

    def __init__(self) -> None:
        self._last: dict[int, list[int]] = {}  # id -> bbox
        self._next_id = 1

    def step(self, objects: list[dict]) -> list[dict]:
        """Set ``id`` on each object; return the frame's enter/leave events."""
        free = dict(self._last)
        events = []
        for obj in objects:
            match = max(free, key=lambda i: _overlap(free[i], obj["bbox"]), default=None)
            if match is not None and _overlap(free[match], obj["bbox"]) > 0.0:
                obj["id"] = match
                del free[match]
            else:
                obj["id"], self._next_id = self._next_id, self._next_id + 1
                events.append({"event": "enter", "id": obj["id"]})
        events += [{"event": "leave", "id": i} for i in sorted(free)]
        self._last = {obj["id"]: obj["bbox"] for obj in objects}
        return events


def scale_depths(objects: list[dict], scale: float | None) -> None:
    """Depths in metres (in place) when the model knows its scale."""
    if scale is None:
        return
    for obj in objects:
        for key in ("depth_median", "depth_min"):
            obj[key] = round(obj[key] * scale, 3)


def event_line(index: int, stamp: float, fraction: float, objects: list, events: list) -> str:
    record = {
        "frame": index,
        "time": round(stamp, 3),
        "mask_fraction": round(fraction, 5),
        "objects": objects,
        "events": events,
    }
    return json.dumps(record, separators=(",", ":")) + "\n"


class EventLog:
    """``events.jsonl``, written line by line and flushed: a stopped run keeps whole lines."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] | None = path.open("w", encoding="utf-8")

    def write(self, line: str) -> None:
        assert self._file is not None
        self._file.write(line)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class Latency:
    """Percentiles of a latency without keeping the samples: a log histogram, 2% wide bins
    from 0.1 ms to 1000 s, so memory stays flat over hours."""

    LOW, DECADES, PER_DECADE = -4.0, 7, 120

    def __init__(self) -> None:
        self.counts = np.zeros(self.DECADES * self.PER_DECADE + 1, np.int64)

    def add(self, seconds: float) -> None:
        where = (math.log10(max(seconds, 1e-4)) - self.LOW) * self.PER_DECADE
        self.counts[min(int(where), len(self.counts) - 1)] += 1

    def percentile(self, q: float) -> float | None:
        total = int(self.counts.sum())
        if total == 0:
            return None
        cumulative = np.cumsum(self.counts)
        index = int(np.searchsorted(cumulative, q / 100.0 * total))
        return 10 ** (self.LOW + (index + 0.5) / self.PER_DECADE)


def write_summary(path: Path, summary: dict) -> None:
    """``summary.json``, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, (json.dumps(summary, indent=2) + "\n").encode())
