"""A real ``tritonserver`` on 127.0.0.1, for the tests and the serving benchmark.

    with TritonServer(ensure_env(), "REPO") as server:
        Predictor(f"grpc://{server.grpc}/maskdepth")

It binds to the loopback address only, on ports the OS gives; when another process takes one
of them between the pick and the bind, the server says "already in use" and exits, and it is
started again on new ports (a bounded number of tries). Readiness is a bounded poll of the
health endpoint; a server that exits or does not become ready in time raises
:class:`TritonServerError` with the last lines of its log. The server and the python backend
stubs it starts share one process group, which :meth:`TritonServer.stop` ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from maskdepth.benchmarks.triton_env import TritonEnv

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
PORT_TRIES = 5
POLL_S = 0.2


class TritonServerError(RuntimeError):
    """The server did not start; the message holds the reason and its log's last lines."""


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports the OS has free on 127.0.0.1 now (held together while picked,
    so they differ); a race with another process is handled by the caller's retry."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class TritonServer:
    """One ``tritonserver`` process serving ``repository`` from the environment ``env``."""

    def __init__(
        self,
        env: TritonEnv,
        repository: str | os.PathLike,
        log: str | os.PathLike | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.env = env
        self.repository = Path(repository)
        self.log = Path(log) if log else self.repository.parent / "tritonserver.log"
        self.start_timeout_s = start_timeout_s
        self.extra_args = extra_args
        self.http_port = self.grpc_port = 0
        self.start_s = 0.0  # seconds from the first start to ready, port retries included
        self._process: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def command(self) -> list[str]:
        return [
            str(self.env.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.env.backends}",
            "--http-address=127.0.0.1",
            "--grpc-address=127.0.0.1",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            "--allow-metrics=false",
            "--exit-timeout-secs=5",
            # python backend shared-memory regions named per server: servers never share one
            f"--backend-config=python,shm-region-prefix-name=maskdepth{os.getpid()}_{self.http_port}_",
            *self.extra_args,
        ]

    def start(self) -> TritonServer:
        began = time.monotonic()
        for _ in range(PORT_TRIES):
            self.http_port, self.grpc_port = free_ports(2)
            with open(self.log, "w") as log:
                self._process = subprocess.Popen(
                    self.command(),
                    env=self.env.environ(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: stop() ends the stubs with it
                )
            if self._wait_ready(began + self.start_timeout_s):
                self.start_s = time.monotonic() - began
                return self
            self.stop()  # exited: "already in use"; end its stubs too, try new ports
        raise TritonServerError(f"no free ports after {PORT_TRIES} tries: {self._tail()}")

    def _wait_ready(self, deadline: float) -> bool:
        """True once ready; False when it exited because a port was taken; raises otherwise."""
        assert self._process is not None
        url = f"http://{self.http}/v2/health/ready"
        while time.monotonic() < deadline:
            try:
                code = self._process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                if _answers(url):
                    return True
                continue
            if "already in use" in self.log.read_text(errors="replace"):
                return False
            raise TritonServerError(f"tritonserver exited with code {code}: {self._tail()}")
        self.stop()
        raise TritonServerError(
            f"tritonserver not ready after {self.start_timeout_s:.0f} s: {self._tail()}"
        )

    def _tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"no log at {self.log}"
        return " | ".join(line.strip() for line in text[-lines:] if line.strip())

    def stop(self) -> None:
        """End the server (SIGTERM: it unloads its models and stops its stubs itself, within
        --exit-timeout-secs), SIGKILL if it lingers, then whatever of its group outlived it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_TIMEOUT_S)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)  # its own group (start_new_session)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False
