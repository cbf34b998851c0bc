"""How fast ``maskdepth stream`` runs against the model's own speed, side by side in one run.

    python -m maskdepth.benchmarks.scripts.stream_speed MODEL.onnx [--frames 400] [--size 320x240]

Rows (one Predictor, batch 8, a video file this script writes):
- ``predict_batch``: the frames already decoded in memory, one fixed background: the ceiling;
- ``stream``, events only, ``--bg-update none`` and ``adaptive``; with masks saved;
- two sources at once (the same file twice): total frames/s against one source's;
- a live MJPEG source on loopback paced at ``--live-fps`` (default: half the ceiling): p50 and
  p99 latency from read to result against the frame interval, and the frames dropped.
Each file row is the best of ``--repeat`` rounds, the rows taking turns within each round
(a shared machine's noise is one-sided and comes in spells).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import maskdepth
from maskdepth.benchmarks.scripts.stream_clip import box_sprite, drifting_clip, write_clip
from maskdepth.runtime.predictor import Predictor
from maskdepth.runtime.stream.sources import Reader, parse_sources

BATCH = 8


def decoded(video: Path) -> list[np.ndarray]:
    reader, frames = Reader(parse_sources([str(video)])[0]), []
    while (got := reader.read())[0] == "frame":
        assert got[1] is not None
        frames.append(got[1])
    reader.close()
    return frames


def ceiling(predictor: Predictor, frames: list, bg: np.ndarray) -> dict:
    start = time.perf_counter()
    for _ in predictor.predict_batch(frames, bgs=bg, batch_size=BATCH):
        pass
    return {"fps": len(frames) / (time.perf_counter() - start)}


def streamed(predictor: Predictor, sources, bg, out: Path, **options) -> dict:
    """Run stream to the end; the summary's sources and the total frames/s."""
    start = time.perf_counter()
    with maskdepth.stream(predictor, sources, bg=bg, out=out, batch=BATCH, **options) as results:
        count = sum(1 for _ in results)
    seconds = time.perf_counter() - start
    assert results.summary is not None
    return {"fps": count / seconds, "sources": results.summary["sources"]}


def live(predictor, fps: float, seconds: float, size: str, out: Path) -> dict:
    """A paced MJPEG server on loopback, read by URL for ``seconds`` (bg learned)."""
    server = [sys.executable, "-m", "maskdepth.benchmarks.scripts.mjpeg_server"]
    process = subprocess.Popen(
        [*server, "--fps", str(fps), "--size", size], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline().split()[1])
        url = f"cam=http://127.0.0.1:{port}/cam.mjpg"
        return streamed(predictor, url, None, out, frames=int(fps * seconds))
    finally:
        process.kill()
        process.wait(timeout=30)


def rounds(args, predictor: Predictor, video: Path, bg: np.ndarray, tmp: Path) -> dict:
    """Every file row once per round, ``--repeat`` rounds, so a busy spell of a shared machine
    hits all rows alike; the best of each row."""
    frames = decoded(video)
    rows = {
        "predict_batch, decoded in memory": lambda: ceiling(predictor, frames, bg),
        "stream, events only, bg none": lambda: streamed(
            predictor, str(video), bg, tmp / "o", bg_update="none"
        ),
        "stream, events only, bg adaptive": lambda: streamed(predictor, str(video), bg, tmp / "o"),
        "stream, masks saved, bg adaptive": lambda: streamed(
            predictor, str(video), bg, tmp / "o", save="mask"
        ),
        "two sources at once (total)": lambda: streamed(
            predictor, {"a": str(video), "b": str(video)}, {"a": bg, "b": bg}, tmp / "t"
        ),
    }
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, work in rows.items():
            best[name] = max(best.get(name, 0.0), work()["fps"])
    return best


def table(args, predictor: Predictor, video: Path, bg: np.ndarray, tmp: Path) -> list[str]:
    fps = rounds(args, predictor, video, bg, tmp)
    top = fps["predict_batch, decoded in memory"]
    one = fps["stream, events only, bg adaptive"]
    lines = []
    for name, value in fps.items():
        ratio = f"{value / one:.2f} x one source" if "two" in name else f"{value / top:.2f}"
        lines.append(f"| {name} | {value:.1f} | {ratio} |")
    pace = args.live_fps or round(top / 2, 1)
    cam = live(predictor, pace, args.live_seconds, args.live_size, tmp / "l")["sources"]["cam"]
    lines.append(
        f"| live MJPEG at {pace} fps: p50 {cam['latency_p50_ms']} ms, p99 "
        f"{cam['latency_p99_ms']} ms (interval {1000.0 / pace:.0f} ms), {cam['dropped']} "
        f"dropped of {cam['frames_read']} | {cam['fps']:.1f} | |"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--size", default="320x240", help="WIDTHxHEIGHT of the video")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--live-fps", type=float, default=None)
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--live-size", default="320x240")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    bg = np.full((height, width, 3), 90, np.uint8)
    with tempfile.TemporaryDirectory() as folder, Predictor(args.model, "cpu", args.threads) as p:
        tmp = Path(folder)
        fps = 25.0
        clip = drifting_clip(bg, box_sprite(height // 3, width // 4), fps, args.frames / 200)
        write_clip(tmp / "clip.avi", (f.frame for f in clip), fps)
        rows = table(args, p, tmp / "clip.avi", bg, tmp)
    print(f"{p!r}, batch {BATCH}, {args.frames} frames of {args.size}")
    print("| run | frames/s | ratio |\n|---|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
