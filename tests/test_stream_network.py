"""A real network stream over loopback: a separate process serves MJPEG over HTTP on
127.0.0.1 (a port the OS picks), ``stream`` reads it by URL; the server is killed mid-stream and
restarted on the same port, and the run reconnects, counts it and carries on."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_predictor import write_tiny_model

import maskdepth

SERVER = [sys.executable, "-m", "maskdepth.benchmarks.scripts.mjpeg_server", "--fps", "25"]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


def start_server(port: int = 0, *more: str) -> tuple[subprocess.Popen, int]:
    """Start the server; return it and the port it says it listens on (waits at most 30 s)."""
    command = [*SERVER, "--port", str(port), *more]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout=30):
            process.kill()
            raise AssertionError("the MJPEG server did not say its port within 30 s")
    line = process.stdout.readline().split()
    assert line[0] == "PORT", line
    return process, int(line[1])


def stop(process: subprocess.Popen) -> None:
    process.kill()
    process.wait(timeout=30)


def test_a_stream_over_http_survives_its_server_restarting(model, tmp_path):
    server, port = start_server()
    bg = np.full((48, 64, 3), 60, np.uint8)
    url = f"http://127.0.0.1:{port}/cam.mjpg"
    stamps, restarted = [], None
    deadline = time.monotonic() + 120
    try:
        options = {"reconnect": 20, "frames": 80, "drop": "never", "out": tmp_path / "out"}
        with maskdepth.stream(model, f"door={url}", bg=bg, threshold=0.6, **options) as results:
            for r in results:
                stamps.append((r.index, r.timestamp, bool(r.objects)))
                if len(stamps) == 15:  # mid-stream: the camera goes away and comes back
                    stop(server)
                    restarted, again = start_server(port)
                    assert again == port
                assert time.monotonic() < deadline, "the run did not end within 120 s"
    finally:
        for process in (server, restarted):
            if process is not None and process.poll() is None:
                stop(process)
    door = results.summary["sources"]["door"]
    assert door["kind"] == "url" and door["reconnects"] == 1
    assert (door["frames_read"], door["processed"], door["dropped"]) == (80, 80, 0)
    assert [i for i, _, _ in stamps] == list(range(80))
    gaps = np.diff([t for _, t, _ in stamps])
    outage = int(np.argmax(gaps))  # the frame after which the server was down
    assert gaps[outage] > 0.2 and len(stamps) - outage - 1 >= 20  # carried on after it
    assert sum(seen for _, _, seen in stamps) > 40  # the box of the served frames is found
    events = (tmp_path / "out" / "door" / "events.jsonl").read_text().splitlines()
    assert len(events) == 80


def test_a_stream_that_stalls_is_reopened(model):
    """The server sends 20 frames per connection, then holds the line in silence: after the
    read timeout the run reopens it (a new connection, 20 more frames) and counts it."""
    server, port = start_server(0, "--stall-after", "20")
    bg = np.full((48, 64, 3), 60, np.uint8)
    started = time.monotonic()
    try:
        url = f"cam=http://127.0.0.1:{port}/cam.mjpg"
        with maskdepth.stream(model, url, bg=bg, frames=30, drop="never") as results:
            indices = [r.index for r in results]
    finally:
        stop(server)
    cam = results.summary["sources"]["cam"]
    assert indices == list(range(30)) and cam["reconnects"] == 1
    assert time.monotonic() - started < 60


def test_a_camera_that_never_comes_back_is_given_up_and_the_command_says_so(
    model, tmp_path, capsys
):
    """The server dies mid-stream and stays down: after --reconnect 1 the source ends with its
    reason in summary.json, and ``maskdepth stream`` prints it and exits 1."""
    import json
    import threading

    from maskdepth.cli import main
    from maskdepth.runtime.image import write_image

    server, port = start_server(0, "--stall-after", "10")
    write_image(tmp_path / "bg.png", np.full((48, 64, 3), 60, np.uint8))
    events = tmp_path / "out" / "cam" / "events.jsonl"

    def kill_once_frames_arrive() -> None:
        deadline = time.monotonic() + 60
        while not (events.exists() and events.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        stop(server)

    killer = threading.Thread(target=kill_once_frames_arrive, daemon=True)
    killer.start()
    args = ["stream", str(model), "--source", f"cam=http://127.0.0.1:{port}/cam.mjpg",
            "--bg", str(tmp_path / "bg.png"), "--reconnect", "1", "--batch", "1",
            "--out", str(tmp_path / "out")]  # fmt: skip
    try:
        assert main(args) == 1
    finally:
        killer.join(timeout=70)
        if server.poll() is None:
            stop(server)
    cam = json.loads((tmp_path / "out" / "summary.json").read_text())["sources"]["cam"]
    assert cam["error"] == "gave up after 1 reopen attempts" and 1 <= cam["processed"] <= 10
    assert "error: gave up after 1 reopen attempts" in capsys.readouterr().out
