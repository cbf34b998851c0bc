"""Served against in-process: throughput and latency of a model on a real Triton server here.

    python -m maskdepth.benchmarks.scripts.triton_throughput --checkpoint CKPT --out runs/serve
        [--size 96] [--clients 4] [--seconds 20]

Exports CKPT as a python-network Triton repository (``maskdepth export --format triton
--triton-network python``: what a CPU-only server runs), starts ``tritonserver`` from the
serving environment (:mod:`maskdepth.benchmarks.triton_env`) on 127.0.0.1 and times, in the same
run on the same machine and the same scenes, ``--clients`` concurrent clients each with its own
``Predictor("grpc://...")`` against the in-process ``Predictor`` on the repository's own ONNX
file called by as many threads (and by one), each for ``--seconds``. The ratio is served
images/s over in-process images/s at the same concurrency; p50/p99 are per request.

perf_analyzer is not used: the ``perf-analyzer`` package on the index is an empty placeholder
(0.1.0, no binary), so the clients are the project's own loop (``time.perf_counter`` around
each ``predict``). Writes ``triton_throughput.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from maskdepth.benchmarks.measure import describe, latency_stats, machine, publish
from maskdepth.benchmarks.triton_env import ensure_env
from maskdepth.benchmarks.triton_server import TritonServer
from maskdepth.runtime.predictor import Predictor

SCENE_SIZE = (240, 320)  # (height, width) of the scenes sent: a small camera frame


def closed_loop(make, clients: int, seconds: float, pairs: list) -> dict:
    """``clients`` threads, each with ``make()``'s predictor, calling predict back to back for
    ``seconds`` after one warm-up call each, started together: images/s and per-call ms."""
    barrier = threading.Barrier(clients)
    times: list[list[float]] = [[] for _ in range(clients)]

    def client(slot: int) -> float:
        predictor = make()
        scene, bg = pairs[slot % len(pairs)]
        predictor.predict(scene, bg=bg)
        barrier.wait(timeout=120)
        began = time.perf_counter()
        while (now := time.perf_counter()) - began < seconds:
            predictor.predict(scene, bg=bg)
            times[slot].append(1000.0 * (time.perf_counter() - now))
        return time.perf_counter() - began

    with ThreadPoolExecutor(clients) as pool:
        spans = list(pool.map(client, range(clients)))
    calls = [t for slot in times for t in slot]
    stats = latency_stats(calls, 1)
    stats["images_per_s"] = len(calls) / max(spans)
    stats["clients"] = clients
    return stats


def export_repository(checkpoint: Path, out: Path, size: int | None, max_batch: int) -> Path:
    """``out/repo``: CKPT as a python-network repository (kept from an earlier run)."""
    from maskdepth.export.pipeline import ExportOptions, export, format_result

    repo = out / "repo"
    if not (repo / "maskdepth" / "config.pbtxt").is_file():
        options = ExportOptions(format="triton", triton_network="python", max_batch=max_batch,
                                parity_count=16, size=(size, size) if size else None)  # fmt: skip
        made = export(checkpoint, repo, options)
        print(format_result(made))
        if made.passed is False:
            raise SystemExit(f"export of {checkpoint} failed its parity gate")
    return repo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/triton_throughput"))
    parser.add_argument("--size", type=int, default=None, help="network input side")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    repo = export_repository(args.checkpoint, args.out, args.size, max(args.clients, 1))
    rng = np.random.default_rng(0)
    pairs = [tuple(rng.integers(0, 256, (*SCENE_SIZE, 3), np.uint8) for _ in range(2))
             for _ in range(args.clients)]  # fmt: skip
    model = repo / "maskdepth_net" / "1" / "model.onnx"
    local = Predictor(model, device="cpu")
    rows = {
        "in-process, 1 thread": closed_loop(lambda: local, 1, args.seconds, pairs),
        f"in-process, {args.clients} threads": closed_loop(
            lambda: local, args.clients, args.seconds, pairs
        ),
    }
    began = time.monotonic()
    with TritonServer(ensure_env(), repo, log=args.out / "tritonserver.log") as server:
        start_s = time.monotonic() - began
        url = f"grpc://{server.grpc}/maskdepth"
        rows[f"served (gRPC), {args.clients} clients"] = closed_loop(
            lambda: Predictor(url), args.clients, args.seconds, pairs
        )
    served, inproc = list(rows.values())[2], list(rows.values())[1]
    ratio = served["images_per_s"] / inproc["images_per_s"]
    report = {"machine": machine(gpu=None), "model": local.info.model, "size": local.size,
              "scene": SCENE_SIZE, "server_start_s": start_s, "rows": rows,
              "served_vs_in_process": ratio}  # fmt: skip
    lines = [
        "# Served (Triton, python network) against in-process",
        "",
        describe(report["machine"], "onnxruntime", "numpy"),
        f"{local.info.model} at {local.size[0]}x{local.size[1]}, scenes "
        f"{SCENE_SIZE[0]}x{SCENE_SIZE[1]}; {args.seconds:.0f} s per row; server start "
        f"{start_s:.1f} s",
        "",
        "| row | images/s | p50 ms | p99 ms | calls |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {r['images_per_s']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['calls']} |"
            for name, r in rows.items()
        ),  # fmt: skip
        "",
        f"served / in-process at {args.clients} concurrent: {ratio:.2f}x",
    ]
    publish(args.out / "triton_throughput", report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
