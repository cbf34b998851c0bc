"""``maskdepth stream``: a model on live cameras, network streams, files or folders of frames,
a thin layer over :func:`maskdepth.runtime.stream.stream` (the options are
:class:`~maskdepth.runtime.stream.StreamConfig`'s, plus the model, the sources and the bgs)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from maskdepth.options import device_option, model_source, option, positional, positive
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.predictor import BACKENDS
from maskdepth.runtime.stream.background import MODES
from maskdepth.runtime.stream.config import DROPS, StreamConfig

from . import Command

D = StreamConfig  # the defaults, typed once there


@dataclass(kw_only=True)
class StreamOptions:
    model: str | Path = positional(
        type=model_source,
        help="an exported model (.onnx or .engine), or a served one: grpc://HOST:8001/maskdepth",
    )
    source: list[str] = option(
        action="append", required=True, metavar="[NAME=]SOURCE",
        help="a video file, a folder of frames, a camera index (0), a URL (rtsp://, http://, "
        "udp://, tcp://) or a GStreamer pipeline; repeat for several cameras",
    )  # fmt: skip
    bg: list[str] | None = option(
        None, action="append", metavar="[NAME=]IMAGE",
        help="the empty scene (one per source, NAME=IMAGE when several); without one, a "
        "source learns it from its first --bg-learn frames",
    )  # fmt: skip
    out: Path = option(type=Path, required=True, help="folder for the results")
    save: str = option(
        D.save, help="also write per frame: mask, depth, overlay, colormap; video (overlay | "
        "depth mp4 per source); bg (the background every --bg-every frames)",
    )  # fmt: skip
    batch: int = option(D.batch, type=positive, help="frames per model run, across sources")
    drop: str | None = option(
        D.drop, choices=DROPS,
        help="when inference falls behind: drop the oldest waiting frames (default for live "
        "sources) or never (default for files: they wait)",
    )  # fmt: skip
    reconnect: int = option(D.reconnect, type=int, help="reopen tries when a live source fails")
    bg_update: str = option(D.bg_update, choices=MODES, help="none: a frozen background")
    bg_rate: float = option(D.bg_rate, type=float, help="seconds: how fast the bg follows")
    bg_align: bool = option(
        True, "--no-bg-align", action="store_false", help="no gain and offset fit per frame"
    )
    bg_relearn: float = option(
        D.bg_relearn, type=float, help="seconds with no object before the bg is the frame"
    )
    bg_learn: int = option(D.bg_learn, type=positive, help="frames to learn a missing bg from")
    bg_every: int = option(D.bg_every, type=positive, help="frames between bg pictures")
    min_area: int = option(D.min_area, type=int, help="pixels: smaller blobs are no object")
    threshold: float = option(D.threshold, type=float, help="mask threshold in [0, 1]")
    fps: float = option(D.fps, type=float, help="frame rate of a folder of frames")
    frames: int | None = option(D.frames, type=positive, help="stop each source after N frames")
    device: str = device_option()
    threads: int | None = option(None, type=positive, help="CPU threads for onnxruntime")
    backend: str | None = option(None, choices=BACKENDS, help="default: by the model's suffix")
    progress: bool = option(True, "--quiet", action="store_false", help="no progress lines")


def backgrounds(texts: list[str] | None) -> str | dict[str, str] | None:
    """``["door=a.png", "yard=b.png"]`` -> a dict; one unnamed image -> that image."""
    if not texts:
        return None
    named = [t.split("=", 1) for t in texts if "=" in t and not Path(t).is_file()]
    if len(named) == len(texts):
        return {name: path for name, path in named}
    if len(texts) == 1:
        return texts[0]
    raise MaskDepthError("several --bg: name each, --bg NAME=IMAGE, after its --source NAME=...")


def run(options: StreamOptions) -> int:
    from maskdepth.runtime.stream import stream

    o = options
    settings = {k: v for k, v in vars(o).items() if k not in ("model", "source", "bg")}
    with stream(o.model, o.source, backgrounds(o.bg), **settings) as results:
        for name in results.learning:
            print(f"{name}: no --bg, learning it from the first {o.bg_learn} frames",
                  file=sys.stderr)  # fmt: skip
        for _ in results:
            pass
    summary = results.summary or {}
    for name, s in summary.get("sources", {}).items():
        print(
            f"{name}: {s['processed']} frames at {s['fps']:.1f} fps, {s['dropped']} dropped, "
            f"{s['undecodable']} undecodable, {s['reconnects']} reconnects"
            + (f", error: {s['error']}" if s["error"] else "")
        )
    for error in summary.get("write_errors", []):
        print(f"write failed: {error}", file=sys.stderr)
    print(f"wrote {Path(o.out) / 'summary.json'}")
    failed = summary.get("write_errors") or any(
        s["error"] for s in summary.get("sources", {}).values()
    )
    return 1 if failed else 0  # a source that failed or gave up, or a file not written


COMMAND = Command(
    "stream",
    "run a model on live cameras, streams or videos",
    StreamOptions,
    run,
    description="Mask, depth and objects of fixed cameras, frame after frame, against a "
    "background that follows the light. Writes OUT/<source>/events.jsonl and OUT/summary.json.",
)
