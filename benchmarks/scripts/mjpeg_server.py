"""A live camera on loopback: MJPEG over HTTP (``multipart/x-mixed-replace``, what many IP
cameras serve), paced at its frame rate, for the stream tests and ``stream_speed.py``.

    python -m maskdepth.benchmarks.scripts.mjpeg_server [--port 0] [--fps 25] [--size 64x48]

Binds 127.0.0.1 only, on ``--port`` (0: one the OS picks) with SO_REUSEADDR, so a restarted
server gets the same port back at once; prints ``PORT <n>`` on stdout when it listens. The
frames are a grey scene with a bright box moving along; each client gets its own paced copy.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time

import cv2
import numpy as np

BOUNDARY = b"maskdepthframe"


def frame_jpeg(index: int, width: int, height: int) -> bytes:
    frame = np.full((height, width, 3), 60, np.uint8)
    x = (index * 2) % max(width - width // 4, 1)
    frame[height // 4 : height // 2, x : x + width // 4] = 220
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def serve_client(
    conn: socket.socket, fps: float, width: int, height: int, stall: int | None = None
) -> None:
    """Send frames at ``fps`` until the client goes away; after ``stall`` frames keep the
    connection open and send nothing more (a camera that hangs)."""
    try:
        conn.settimeout(10.0)
        request = b""
        while b"\r\n\r\n" not in request and len(request) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                return
            request += chunk
        conn.sendall(
            b"HTTP/1.0 200 OK\r\nCache-Control: no-cache\r\nConnection: close\r\n"
            b"Content-Type: multipart/x-mixed-replace; boundary=" + BOUNDARY + b"\r\n\r\n"
        )
        start, index = time.perf_counter(), 0
        while stall is None or index < stall:
            data = frame_jpeg(index, width, height)
            head = b"--%s\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
            conn.sendall(head % (BOUNDARY, len(data)) + data + b"\r\n")
            index += 1
            delay = start + index / fps - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing: a real camera's frame interval
        while conn.recv(4096):  # hung: hold the line until the client gives up
            continue
    except OSError:
        return
    finally:
        conn.close()


def listen(port: int) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(8)
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fps", type=float, default=25.0)
    parser.add_argument("--size", default="64x48", help="WIDTHxHEIGHT")
    parser.add_argument("--stall-after", type=int, default=None, help="frames, then silence")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    server = listen(args.port)
    print(f"PORT {server.getsockname()[1]}", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(
            target=serve_client,
            args=(conn, args.fps, width, height, args.stall_after),
            daemon=True,
        ).start()


if __name__ == "__main__":
    main()
