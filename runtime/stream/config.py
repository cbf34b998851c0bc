"""What a stream run is asked to do (``maskdepth stream``'s options, ``maskdepth.stream``'s
keywords) and what one frame's result is."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.outputs import check_threshold, parse_save
from maskdepth.runtime.predictor import DEFAULT_BATCH, Prediction
from maskdepth.runtime.stream.background import MODES

DROPS = ("oldest", "never")
EXTRA_KINDS = ("video", "bg")  # what stream saves beyond predict's per-frame pictures


@dataclass(kw_only=True)
class StreamConfig:
    out: Path | None = None  # None: nothing written, results only yielded
    save: str = ""  # mask,depth,overlay,colormap (per frame), video, bg
    batch: int = DEFAULT_BATCH
    drop: str | None = None  # None: "oldest" for live sources, "never" for files
    reconnect: int = 10  # reopen attempts per outage of a live source
    bg_update: str = "adaptive"
    bg_rate: float = 30.0  # seconds: the time constant of blending (inf: no blending)
    bg_align: bool = True  # fit the bg's gain and offset to each frame
    bg_relearn: float = 60.0  # seconds without objects before the bg is the frame
    bg_learn: int = 25  # frames whose median is the bg of a source without one
    bg_every: int = 100  # frames between two pictures of the bg (--save bg)
    min_area: int = 50  # pixels: smaller components are not objects
    threshold: float = 0.5
    fps: float = 25.0  # frame rate of a folder of frames
    frames: int | None = None  # stop each source after this many frames read
    queue: int = 0  # frames waiting per source; 0: twice the batch
    progress: bool = False
    device: str = "auto"
    threads: int | None = None
    backend: str | None = None

    def check(self) -> None:
        if self.bg_update not in MODES:
            raise MaskDepthError(f"--bg-update {self.bg_update}: expected one of {MODES}")
        if self.drop not in (None, *DROPS):
            raise MaskDepthError(f"--drop {self.drop}: expected one of {', '.join(DROPS)}")
        if self.bg_rate < 0 or self.bg_relearn <= 0 or self.bg_learn < 1 or self.batch < 1:
            raise MaskDepthError(
                "--bg-rate >= 0, --bg-relearn > 0, --bg-learn >= 1 and --batch >= 1 expected"
            )
        if self.threshold is None or check_threshold(self.threshold) is None:
            raise MaskDepthError("--threshold none: the stream loop needs a number in [0, 1]")
        self.kinds()

    def kinds(self) -> tuple[tuple[str, ...], set[str]]:
        """(predict's per-frame kinds, the extras among video and bg)."""
        asked = [k.strip() for k in self.save.split(",") if k.strip()]
        extras = {k for k in asked if k in EXTRA_KINDS}
        return parse_save(",".join(k for k in asked if k not in EXTRA_KINDS)), extras

    @property
    def queue_size(self) -> int:
        return self.queue or 2 * self.batch


@dataclass(frozen=True, eq=False)
class StreamResult:
    """One processed frame: where it came from, when, the frame, the prediction, its objects
    (with ids) and the frame's enter/leave events."""

    source: str
    index: int
    timestamp: float
    frame: np.ndarray = field(repr=False)
    prediction: Prediction = field(repr=False)
    objects: list[dict]
    events: list[dict]
    background: np.ndarray = field(repr=False)  # what the network was given as the bg
