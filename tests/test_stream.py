"""``maskdepth stream`` and ``maskdepth.stream``: sources and their names, the pipelined loop
on real files with the tiny ONNX model (events, pictures, video, summary), the drop policy,
undecodable frames, a source that cannot be opened, Ctrl-C mid-run, flat memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_predictor import write_tiny_model

import maskdepth
from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_image
from maskdepth.runtime.stream.config import StreamConfig
from maskdepth.runtime.stream.loop import Item, Mailbox, Source
from maskdepth.runtime.stream.sources import parse_sources

BG_VALUE = 60
SIZE = (48, 64)  # (height, width)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def box_frames(count: int, start: int = 10, stop: int = 40) -> list[np.ndarray]:
    """A grey scene; a bright 20x15 box moves right from frame ``start`` to ``stop``."""
    frames = []
    for i in range(count):
        frame = np.full((*SIZE, 3), BG_VALUE, np.uint8)
        if start <= i < stop:
            frame[10:30, i % 40 : i % 40 + 15] = 220
        frames.append(frame)
    return frames


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), fps, SIZE[::-1])
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path) -> dict:
    bg = np.full((*SIZE, 3), BG_VALUE, np.uint8)
    write_image(tmp_path / "bg.png", bg)
    return {"video": write_avi(tmp_path / "door.avi", box_frames(60)), "bg": tmp_path / "bg.png"}


# ------------------------------------------------------------------------------ sources


def test_sources_have_kinds_and_names(tmp_path):
    (tmp_path / "frames").mkdir()
    specs = parse_sources(
        [
            str(tmp_path / "lobby.mp4"),
            str(tmp_path / "frames"),
            "0",
            "rtsp://10.0.0.7:554/live/main",
            "yard=http://cam.local/video.mjpg",
            "videotestsrc num-buffers=10 ! videoconvert ! appsink",
        ]
    )
    assert [(s.name, s.kind, s.live) for s in specs] == [
        ("lobby", "file", False),
        ("frames", "folder", False),
        ("cam0", "camera", True),
        ("10.0.0.7_live_main", "url", True),
        ("yard", "url", True),
        ("gst5", "gstreamer", True),
    ]
    assert specs[4].target == "http://cam.local/video.mjpg"
    with pytest.raises(MaskDepthError, match="a is used twice"):
        parse_sources(["a=x.mp4", "a=y.mp4"])


@pytest.mark.parametrize(
    "source, words",
    [("missing.mp4", "no such file"), ("nocam=http://127.0.0.1:9/none.mjpg", "cannot open")],
)
def test_a_source_that_cannot_be_opened_is_one_line_before_any_work(
    model, clip, tmp_path, capsys, source, words
):
    out = tmp_path / "out"
    argv = ["stream", str(model), "--source", str(clip["video"]), "--source", source]
    code = main([*argv, "--bg", str(clip["bg"]), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert words in err[0] and ("missing" in err[0] or "nocam" in err[0])
    assert not out.exists()  # nothing was started


# ------------------------------------------------------------------------------ the loop


def test_stream_a_file_events_pictures_video_summary(model, clip, tmp_path):
    out = tmp_path / "out"
    argv = ["stream", str(model), "--source", str(clip["video"]), "--bg", str(clip["bg"])]
    argv += ["--out", str(out), "--save", "mask,video,bg", "--bg-every", "20"]
    assert main([*argv, "--threshold", "0.6", "--batch", "4", "--quiet"]) == 0
    lines = [json.loads(x) for x in (out / "door" / "events.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(60))
    assert lines[1]["time"] == pytest.approx(1 / 25, abs=1e-3)  # the file's own time
    with_objects = [x["frame"] for x in lines if x["objects"]]
    assert with_objects == list(range(10, 40))
    enters = [(x["frame"], e) for x in lines for e in x["events"]]
    assert enters == [(10, {"event": "enter", "id": 1}), (40, {"event": "leave", "id": 1})]
    box = lines[20]["objects"][0]
    assert box["area"] >= 200 and 0.0 < box["depth_min"] <= box["depth_median"] <= 5.0
    masks = sorted(p.name for p in (out / "door" / "mask").iterdir())
    assert masks == [f"{i:06d}.png" for i in range(60)]
    assert sorted(p.name for p in (out / "door" / "bg").iterdir()) == [
        "000000.png", "000020.png", "000040.png",
    ]  # fmt: skip
    capture = cv2.VideoCapture(str(out / "door" / "door.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 60
    assert int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)) == 2 * SIZE[1]
    summary = json.loads((out / "summary.json").read_text())
    door = summary["sources"]["door"]
    assert (door["frames_read"], door["processed"], door["dropped"]) == (60, 60, 0)
    assert door["drop"] == "never" and door["fps"] > 0 and summary["interrupted"] is False
    assert 0 < door["latency_p50_ms"] <= door["latency_p99_ms"]
    assert not list(out.rglob("*.part*"))


def test_python_api_yields_results_of_two_sources_and_learns_a_bg(model, clip, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(box_frames(30, start=20, stop=30)):
        write_image(folder / f"f{i:03d}.png", frame[:, :, ::-1])
    sources = {"door": str(clip["video"]), "hall": str(folder)}
    kept = {}
    with maskdepth.stream(model, sources, bg={"door": clip["bg"]}, threshold=0.6) as results:
        assert results.learning == ["hall"]
        for r in results:
            kept.setdefault(r.source, []).append((r.index, bool(r.objects)))
            assert r.prediction.mask.shape == r.frame.shape[:2]
    assert [i for i, _ in kept["door"]] == list(range(60))
    # the hall learned its bg from its first 25 frames (empty), then sees the box at 25..29
    assert kept["hall"] == [(i, i >= 25) for i in range(25, 30)]
    hall = results.summary["sources"]["hall"]
    assert hall["bg_learned_from"] == 25 and hall["processed"] == 5
    assert hall["kind"] == "folder"


def test_undecodable_frames_are_skipped_and_counted(model, clip, tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(box_frames(12)):
        write_image(folder / f"{i:03d}.jpg", frame)
    (folder / "004.jpg").write_bytes((folder / "004.jpg").read_bytes()[:200])  # truncated
    (folder / "007.jpg").write_bytes(b"not an image")
    options = {"out": tmp_path / "out", "save": "bg", "bg_every": 4}
    with maskdepth.stream(model, str(folder), bg=clip["bg"], **options) as results:
        indices = [r.index for r in results]
    assert indices == [0, 1, 2, 3, 5, 6, 8, 9, 10, 11]
    # the background every 4 frames processed (skipped or dropped frames do not starve it)
    pictures = sorted(p.name for p in (tmp_path / "out" / "frames" / "bg").iterdir())
    assert pictures == ["000000.png", "000005.png", "000010.png"]
    counts = json.loads((tmp_path / "out" / "summary.json").read_text())["sources"]["frames"]
    assert (counts["frames_read"], counts["undecodable"], counts["processed"]) == (10, 2, 10)


def test_unknown_options_and_bad_values_fail_at_once(model, clip):
    with pytest.raises(MaskDepthError, match="unknown option.*colour"):
        maskdepth.stream(model, str(clip["video"]), colour=1)
    with pytest.raises(MaskDepthError, match="--save.*sparkles"):
        maskdepth.stream(model, str(clip["video"]), save="mask,sparkles")
    with pytest.raises(MaskDepthError, match="no source of that name"):
        maskdepth.stream(model, str(clip["video"]), bg={"yard": clip["bg"]})


# ------------------------------------------------------------------------------ drops


def _source(video: Path, drop: str) -> Source:
    from maskdepth.runtime.stream.background import BackgroundModel
    from maskdepth.runtime.stream.sources import Reader

    reader = Reader(parse_sources([str(video)])[0])
    return Source(reader, BackgroundModel(np.zeros((2, 2, 3), np.uint8)), StreamConfig(drop=drop))


def test_drop_oldest_keeps_the_newest_frames_and_counts_the_rest(clip):
    source, stop = _source(clip["video"], "oldest"), threading.Event()
    mailbox = Mailbox([source], size=4)
    for i in range(10):
        mailbox.put(source, Item(i, 0.0, np.zeros(1), 0.0), stop)
    assert [item.index for _, item in mailbox.take(8)] == [6, 7, 8, 9]
    assert source.counts["dropped"] == 6
    source.reader.close()


def test_drop_never_waits_for_room_and_drops_nothing(clip):
    source, stop = _source(clip["video"], "never"), threading.Event()
    mailbox = Mailbox([source], size=2)
    producer = threading.Thread(
        target=lambda: [mailbox.put(source, Item(i, 0.0, np.zeros(1), 0.0), stop) for i in range(6)]
    )
    producer.start()
    taken: list[int] = []
    deadline = time.monotonic() + 20
    while len(taken) < 6 and time.monotonic() < deadline:
        taken += [item.index for _, item in mailbox.take(1)]
        assert len(source.waiting) <= 2
    producer.join(timeout=5)
    assert taken == list(range(6)) and source.counts["dropped"] == 0
    source.reader.close()


# ------------------------------------------------------------------------------ Ctrl-C, memory


def test_ctrl_c_finishes_the_files_and_writes_the_summary(model, tmp_path):
    """Ctrl-C mid-stream. The source is a camera that never ends (the MJPEG server over
    loopback), so the signal always lands while frames flow, however fast this machine is."""
    from test_stream_network import start_server, stop

    write_image(tmp_path / "bg.png", np.full((*SIZE, 3), BG_VALUE, np.uint8))
    server, port = start_server()
    out = tmp_path / "out"
    command = [sys.executable, "-m", "maskdepth", "stream", str(model), "--source"]
    command += [f"long=http://127.0.0.1:{port}/cam.mjpg", "--bg", str(tmp_path / "bg.png")]
    command += ["--out", str(out), "--save", "mask,video", "--drop", "never", "--quiet"]
    try:
        process = subprocess.Popen(command + ["--batch", "2"], stderr=subprocess.PIPE)
        events = out / "long" / "events.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if events.is_file() and events.read_text().count("\n") >= 20:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        stop(server)
    assert process.returncode == 130, err.decode()
    summary = json.loads((out / "summary.json").read_text())
    processed = summary["sources"]["long"]["processed"]
    assert summary["interrupted"] is True and processed >= 20
    lines = events.read_text().splitlines()
    assert [json.loads(x)["frame"] for x in lines] == list(range(processed))
    assert len(list((out / "long" / "mask").iterdir())) == processed
    capture = cv2.VideoCapture(str(out / "long" / "long.mp4"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == processed
    assert not [p for p in out.rglob("*") if ".part" in p.name]


def test_memory_stays_flat_over_thousands_of_frames(model, tmp_path):
    video = write_avi(tmp_path / "long.avi", box_frames(2500, start=0, stop=2500))
    bg = np.full((*SIZE, 3), BG_VALUE, np.uint8)
    tracemalloc.start()
    try:
        with maskdepth.stream(model, str(video), bg=bg, out=tmp_path / "out") as results:
            for r in results:
                if r.index == 500:
                    early = tracemalloc.get_traced_memory()[0]
        late = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert results.summary["sources"]["long"]["processed"] == 2500
    assert late - early < 1_000_000, (early, late)  # 2000 frames of 9 kB would be 18 MB


def test_no_torch_in_the_stream_loop():
    code = "import sys, maskdepth.runtime.stream; print('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert run.stdout.strip() == "False", run.stderr


def test_the_readme_stream_example_runs(tmp_path, monkeypatch, capsys):
    import re

    from maskdepth.benchmarks.scripts.stream_clip import difference_model

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    example = next(b for b in blocks if "maskdepth.stream(" in b)
    monkeypatch.chdir(tmp_path)
    Path("models").mkdir()
    difference_model(Path("models/model.onnx"), SIZE)
    write_image(Path("empty.jpg"), np.full((*SIZE, 3), BG_VALUE, np.uint8))
    writer = cv2.VideoWriter("door.mp4", cv2.VideoWriter.fourcc(*"mp4v"), 25.0, SIZE[::-1])
    for frame in box_frames(50):
        writer.write(frame)
    writer.release()
    exec(example, {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:4] for line in lines[:2]] == [
        ["door", "10", "enter", "1"], ["door", "40", "leave", "1"],
    ]  # fmt: skip
    assert lines[-1] == "50" and len(list(Path("live/door/mask").iterdir())) == 50


def test_a_gstreamer_pipeline_without_gstreamer_is_one_clear_line(model, tmp_path, capsys):
    if "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer: the pipeline would open")
    argv = ["stream", str(model), "--source", "videotestsrc num-buffers=5 ! appsink"]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "source gst0: this OpenCV has no GStreamer" in err[0]


def test_a_stream_closed_before_its_first_frame_still_writes_its_summary(model, clip, tmp_path):
    out = tmp_path / "out"
    results = maskdepth.stream(model, str(clip["video"]), bg=clip["bg"], out=out)
    results.close()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["sources"]["door"]["processed"] == 0
