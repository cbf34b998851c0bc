"""What every benchmark measures the same way: the machine it ran on, timed calls, latency
statistics (one set of key names: ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p99_ms``,
``images_per_s``, ``calls``, ``x_floor``), batches of real samples, and the report files.

Every latency is per call, after warm-up, by ``time.perf_counter``; every figure is stored with
the machine description from :func:`machine`.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.runners.cuda import GpuInfo

# The libraries behind the numbers, reported with their versions when installed.
LIBRARIES = (
    "maskdepth",
    "numpy",
    "opencv-python-headless",
    "opencv-python",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch",
    "tensorrt",
    "tensorrt-rtx-cu12",
)


# ------------------------------------------------------------------------------ the machine


def cpu_name() -> str:
    """The CPU's model name (Linux), or what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def versions() -> dict[str, str]:
    """Installed version of each of ``LIBRARIES``."""
    import importlib.metadata as metadata

    found = {}
    for package in LIBRARIES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[package] = metadata.version(package)
    return found


def machine(gpu: GpuInfo | None | Literal["probe"] = "probe") -> dict:
    """CPU, cores, GPU (``gpu``: the GPU to describe, by default the one found here), the
    library versions behind the numbers and the load average (1, 5, 15 min) when asked."""
    from maskdepth.runtime.runners.cuda import gpu_info

    gpu = gpu_info() if gpu == "probe" else gpu
    return {
        "cpu": cpu_name(),
        "cores": cores(),
        "gpu": f"{gpu.name} (compute capability {gpu.compute_capability})" if gpu else "none",
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def describe(info: dict, *libraries: str) -> str:
    """One line for a report: ``Machine: CPU, N cores, GPU: ...; python X, lib version, ...``
    (``libraries``: those to name, by default every one found)."""
    found = info["versions"]
    names = libraries or tuple(found)
    listed = ", ".join(f"{k} {found[k]}" for k in names if k in found)
    return (
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info['gpu']}; "
        f"python {info['python']}" + (f", {listed}" if listed else "")
    )


# ------------------------------------------------------------------------------ timing


def time_calls(
    call: Callable[[], object], warmup: int, iters: int | None = None, seconds: float = 3.0
) -> list[float]:
    """Milliseconds per call after ``warmup`` untimed calls: ``iters`` calls, or as many as fit
    in ``seconds`` (at least 5)."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(samples) < (iters or 10**9):
        start = time.perf_counter()
        call()
        samples.append(1000.0 * (time.perf_counter() - start))
        if iters is None and time.perf_counter() > deadline and len(samples) >= 5:
            break
    return samples


@dataclass
class Case:
    """One thing to time among others: ``call`` runs ``batch`` images."""

    call: Callable[[], object]
    batch: int
    fields: dict
    times_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)  # e.g. Predictor: outside the session


def time_interleaved(cases: list[Case], warmup: int, repeats: int, settle: float = 0.05) -> None:
    """Warm every case up, then time them in rounds, one call of each per round: load from
    other work on the machine then falls on every runner alike, and the ratios stay fair.
    ``settle`` seconds between calls let the last runner's spinning threads (onnxruntime's
    pool, OpenMP) go idle before the next one starts."""
    for case in cases:
        for _ in range(warmup):
            case.call()
        case.overhead_ms.clear()
    for _ in range(repeats):
        for case in cases:
            time.sleep(settle)
            start = time.perf_counter()
            case.call()
            case.times_ms.append(1000.0 * (time.perf_counter() - start))


def time_files(files: dict[str, Path], size: int, threads: int, repeats: int) -> dict:
    """p50 ms of each ONNX file at batch 1 on the CPU, one onnxruntime session each, the calls
    interleaved (:func:`time_interleaved`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    sessions = {name: ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
                for name, p in files.items()}  # fmt: skip
    rng = np.random.default_rng(1)
    feed = {n: rng.random((1, 3, size, size), dtype=np.float32) for n in ("bg", "scene")}
    cases = [Case(functools.partial(session.run, None, feed), 1, {"file": name})
             for name, session in sessions.items()]  # fmt: skip
    time_interleaved(cases, warmup=3, repeats=repeats, settle=0.0)
    return {case.fields["file"]: summary(case)["p50_ms"] for case in cases}


def latency_stats(ms: list[float], batch: int, floor_ms: float | None = None) -> dict:
    """Mean and percentiles (ms per call), images/s and, given the floor, mean / floor."""
    if not ms:
        return {}
    samples = np.asarray(ms, dtype=np.float64)
    mean = float(samples.mean())
    stats = {
        "mean_ms": mean,
        **{f"p{q}_ms": float(np.percentile(samples, q)) for q in (50, 90, 99)},
        "images_per_s": 1000.0 * batch / mean,
        "calls": len(ms),
    }
    if floor_ms:
        stats["x_floor"] = mean / floor_ms
    return stats


def summary(case: Case) -> dict:
    """A case's fields, batch and :func:`latency_stats` (and pre/post time when measured)."""
    row = {**case.fields, "batch": case.batch, **latency_stats(case.times_ms, case.batch)}
    if case.overhead_ms:
        row["prepost_ms"] = float(np.mean(case.overhead_ms))
        row["prepost_share"] = row["prepost_ms"] / row["mean_ms"]
    return row


def repeat_batch(samples, size: int) -> dict[str, np.ndarray]:
    """A feed of ``size`` real samples from ``samples`` (anything with ``batches(n)`` of
    objects with ``feed``), repeated when there are fewer."""
    first = next(iter(samples.batches(min(size, len(samples))))).feed
    reps = -(-size // len(first["bg"]))
    return {k: np.ascontiguousarray(np.concatenate([v] * reps)[:size]) for k, v in first.items()}


# ------------------------------------------------------------------------------ reports


def publish(stem: Path, report: dict, text: str) -> None:
    """Print ``text``; write it as STEM.md and ``report`` as STEM.json."""
    print(text)
    stem.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(stem.with_suffix(".json"), json.dumps(report, indent=1).encode())
    write_bytes_atomic(stem.with_suffix(".md"), text.encode())
