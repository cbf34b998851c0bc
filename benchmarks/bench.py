"""`maskdepth bench`: latency and accuracy parity of model files side by side, one row per
model file x backend x batch, with the PyTorch reference measured in the same run.

Latency is the model call alone (the runner's ``infer`` on a prepared, normalised batch; the
PyTorch forward for the reference), after warm-up, so every row times the same work and the
speed-ups are ratios measured side by side. Accuracy runs every held-out sample through each
backend once and compares with the reference's outputs and with the ground truth.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from maskdepth.benchmarks.floor import floor_ms, onnx_flops, sgemm_gflops
from maskdepth.runtime.compare import DEFAULT_TOLERANCES, DiffAccumulator
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.metrics import MetricAccumulator
from maskdepth.runtime.options import device_option, option, positive
from maskdepth.runtime.predictor import BACKENDS
from maskdepth.runtime.runners.cuda import GpuInfo

ACCURACY_BATCH = 8


def _batches(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8, got {text!r}")
    return values


@dataclass
class BenchOptions:
    data: Path | None = option(  # held-out samples; default: synthetic scenes
        None, type=Path, help="held-out data (default: synthetic scenes)"
    )
    reference: Path | None = option(  # a checkpoint: the PyTorch fp32 row and the parity baseline
        None, type=Path, help="the checkpoint: PyTorch fp32 row and the parity baseline"
    )
    batches: tuple[int, ...] = option(
        (1, 8), "--batch", type=_batches, metavar="BATCH", help="e.g. 1,8"
    )
    count: int = option(256, type=positive, help="held-out samples")
    warmup: int = option(3, type=int, help="untimed calls per row")
    iters: int | None = option(  # default: as many as fit in ``seconds``
        None, type=positive, help="timed calls per row"
    )
    seconds: float = option(3.0, type=float, help="time per row when --iters is not given")
    device: str = device_option()
    backends: tuple[str, ...] | None = option(
        None,
        "--backend",
        nargs="+",
        choices=BACKENDS,
        convert=tuple,
        help="default: onnxruntime for .onnx, tensorrt for .engine",
    )
    threads: int | None = option(None, type=positive, help="CPU threads (onnxruntime, PyTorch)")


@dataclass
class Row:
    model: str
    format: str
    precision: str
    backend: str
    batch: int
    provider: str = ""
    device: str = ""
    mb: float = 0.0
    latency_ms: list[float] = field(default_factory=list)
    iou: float | None = None
    rmse: float | None = None
    d_iou: float | None = None
    d_rmse: float | None = None
    max_abs: float | None = None
    status: str = "ok"
    gflop: float | None = None  # the work of one call (ONNX files run on the CPU)
    floor_ms: float | None = None  # that work at the machine's measured sgemm peak

    def stats(self) -> dict:
        if not self.latency_ms:
            return {}
        samples = np.asarray(self.latency_ms)
        mean = float(samples.mean())
        floor = {"x_floor": mean / self.floor_ms} if self.floor_ms else {}
        return {
            "mean": mean,
            **{f"p{q}": float(np.percentile(samples, q)) for q in (50, 90, 99)},
            "images_per_s": 1000.0 * self.batch / mean,
            **floor,
        }

    def to_dict(self) -> dict:
        return asdict(self) | {"latency": self.stats()}


def bench(models: list[Path], out: Path, options: BenchOptions, progress: bool = True) -> dict:
    """Benchmark every model file; write bench.md, bench.json and bench.png into ``out``."""
    from tqdm import tqdm

    models = [Path(m) for m in models]
    for path in models:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
    out.mkdir(parents=True, exist_ok=True)
    context = _Context(options)
    rows: list[Row] = []
    jobs = [(m, b) for m in models for b in _backends(m, options)]
    if options.reference:
        rows += context.reference_rows(progress)
    for path, backend in tqdm(jobs, desc="bench", unit="model", disable=not progress):
        rows += _bench_model(path, backend, context)
    peak = _add_floors(rows, options.threads)
    report = {
        "machine": machine() | {"sgemm_gflops": peak},
        "options": _jsonable(asdict(options)),
        "rows": [r.to_dict() for r in rows],
    }
    write_bytes_atomic(out / "bench.json", json.dumps(report, indent=2).encode())
    write_bytes_atomic(out / "bench.md", to_markdown(report).encode())
    plot(report, out / "bench.png")
    return report


def _add_floors(rows: list[Row], threads: int | None) -> dict[str, float]:
    """Set each CPU row of an ONNX file with static sizes to its work and floor; returns the
    sgemm rates measured for it (empty when no row runs on the CPU)."""
    cpu = [r for r in rows if r.device == "cpu" and r.format == "onnx" and r.latency_ms]
    if not cpu:
        return {}
    rates = sgemm_gflops(threads)
    gflops: dict[str, float | None] = {}
    for row in cpu:
        if row.model not in gflops:
            try:
                gflops[row.model] = onnx_flops(row.model) / 1e9
            except ValueError:  # dynamic height and width: no fixed amount of work
                gflops[row.model] = None
        per_image = gflops[row.model]
        if per_image is not None:
            row.gflop = per_image * row.batch
            row.floor_ms = floor_ms(per_image, max(rates.values()), row.batch)
    return rates


def _backends(path: Path, options: BenchOptions) -> list[str]:
    engine = path.suffix.lower() in (".engine", ".plan")
    if options.backends:
        return list(options.backends)
    return ["tensorrt"] if engine else ["onnxruntime"]


class _Context:
    """Held-out samples and reference outputs, made once per input size."""

    def __init__(self, options: BenchOptions) -> None:
        self.options = options
        self._samples: dict = {}
        self._reference: dict = {}
        self.model = None
        self.ckpt: dict = {}
        if options.reference:
            from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

            self.ckpt = load_checkpoint(options.reference)
            self.model, self.pre = model_from_checkpoint(self.ckpt)

    def samples(self, pre):
        if pre.size not in self._samples:
            from maskdepth.export.samples import held_out_samples

            self._samples[pre.size] = held_out_samples(
                self.ckpt, pre, self.options.count, self.options.data
            )
        return self._samples[pre.size]

    def reference(self, pre) -> list | None:
        if self.model is None:
            return None
        if pre.size not in self._reference:
            from maskdepth.export.parity import reference_outputs

            self._reference[pre.size] = reference_outputs(self.model, self.samples(pre))
        return self._reference[pre.size]

    def reference_rows(self, progress: bool) -> list[Row]:
        """The PyTorch fp32 model: latency per batch and its accuracy on the samples."""
        import torch

        from maskdepth.train.models.u2net import InferenceModel

        checkpoint = self.options.reference
        assert checkpoint is not None and self.model is not None  # bench() calls it with one
        if self.options.threads:
            torch.set_num_threads(self.options.threads)
        wrapped = InferenceModel(self.model).eval()
        samples = self.samples(self.pre)
        reference = self.reference(self.pre)
        assert reference is not None  # None only without a model
        scores = MetricAccumulator()
        for batch, outputs in zip(samples.batches(8), reference):
            scores.update(outputs["mask"], batch.mask, outputs["depth"], batch.depth)
        result = scores.compute()
        rows = []
        for size in self.options.batches:
            feed = _feed(samples, size)
            tensors = [torch.from_numpy(feed[k]) for k in ("bg", "scene")]
            with torch.inference_mode():
                latency = _time(functools.partial(wrapped, *tensors), self.options)
            rows.append(
                Row(
                    model=str(checkpoint),
                    format="pytorch",
                    precision="fp32",
                    backend="pytorch",
                    batch=size,
                    provider="eager",
                    device="cpu",
                    mb=Path(checkpoint).stat().st_size / 1e6,
                    latency_ms=latency,
                    iou=result["iou"],
                    rmse=result["rmse"],
                    d_iou=0.0,
                    d_rmse=0.0,
                    max_abs=0.0,
                    status="reference",
                )
            )
        return rows


def _bench_model(path: Path, backend: str, context: _Context) -> list[Row]:
    from maskdepth.runtime.predictor import open_runner

    fmt = "engine" if path.suffix.lower() in (".engine", ".plan") else "onnx"
    row_of = functools.partial(
        Row, model=str(path), format=fmt, backend=backend, mb=path.stat().st_size / 1e6
    )
    try:
        runner, info = open_runner(path, backend, context.options.device, context.options.threads)
    except (MaskDepthError, MissingDependencyError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        return [
            row_of(precision="?", batch=b, status=f"failed: {reason}")
            for b in context.options.batches
        ]
    rows = []
    try:
        accuracy = _accuracy(runner, info, context)
        for size in context.options.batches:
            row = row_of(
                precision=info.precision,
                batch=size,
                provider=runner.provider,
                device=runner.device,
                **accuracy,
            )
            try:
                feed = _feed(context.samples(info.preprocessing), size)
                row.latency_ms = _time(functools.partial(runner.infer, feed), context.options)
            except (MaskDepthError, RuntimeError) as exc:
                row.status = f"failed: {str(exc).splitlines()[0]}"
            rows.append(row)
    except (MaskDepthError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        rows = [
            row_of(
                precision=info.precision,
                batch=b,
                provider=runner.provider,
                device=runner.device,
                status=f"failed: {reason}",
            )
            for b in context.options.batches
        ]
    finally:
        runner.deactivate()
    return rows


def _accuracy(runner, info, context: _Context) -> dict:
    """IoU and RMSE against the ground truth, and against the reference when there is one."""
    samples = context.samples(info.preprocessing)
    reference = context.reference(info.preprocessing)
    if reference is None:
        scores = MetricAccumulator()
        for batch in samples.batches(ACCURACY_BATCH):
            out = runner.infer(batch.feed)
            scores.update(out["mask"], batch.mask, out["depth"], batch.depth)
        result = scores.compute()
        return {"iou": result["iou"], "rmse": result["rmse"]}
    diffs = DiffAccumulator()
    for batch, expected in zip(samples.batches(ACCURACY_BATCH), reference):
        diffs.update(expected, runner.infer(batch.feed), batch.mask, batch.depth)
    comparison = diffs.result(info.precision, DEFAULT_TOLERANCES[info.precision])
    status = "ok" if comparison else "runs, parity failed: " + "; ".join(comparison.failures())
    return {
        "iou": comparison.candidate["iou"],
        "rmse": comparison.candidate["rmse"],
        "d_iou": comparison.d_iou,
        "d_rmse": comparison.d_rmse,
        "max_abs": comparison.measured()["max_abs"],
        "status": status,
    }


def _feed(samples, size: int) -> dict[str, np.ndarray]:
    """A batch of ``size`` real samples (repeated when there are fewer)."""
    batch = next(iter(samples.batches(min(size, len(samples)))))
    reps = -(-size // len(batch.feed["bg"]))
    return {
        k: np.ascontiguousarray(np.concatenate([v] * reps)[:size]) for k, v in batch.feed.items()
    }


def _time(call: Callable[[], object], options: BenchOptions) -> list[float]:
    """Milliseconds per call after ``options.warmup`` calls."""
    for _ in range(options.warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + options.seconds
    while len(samples) < (options.iters or 10**9):
        start = time.perf_counter()
        call()
        samples.append(1000.0 * (time.perf_counter() - start))
        if options.iters is None and time.perf_counter() > deadline and len(samples) >= 5:
            break
    return samples


def machine(gpu: GpuInfo | None | Literal["probe"] = "probe") -> dict:
    """CPU, cores, GPU (``gpu``: the GPU to describe, by default the one found here) and the
    library versions behind the numbers."""
    import importlib.metadata as metadata
    import os

    from maskdepth.benchmarks.data_throughput import cpu_name
    from maskdepth.runtime.runners.cuda import gpu_info

    gpu = gpu_info() if gpu == "probe" else gpu
    versions = {}
    for package in (
        "maskdepth",
        "numpy",
        "opencv-python-headless",
        "onnx",
        "onnxruntime",
        "onnxruntime-gpu",
        "torch",
        "tensorrt",
        "tensorrt-rtx-cu12",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu": cpu_name(),
        "cores": len(os.sched_getaffinity(0)),
        "gpu": f"{gpu.name} (compute capability {gpu.compute_capability})" if gpu else "none",
        "python": platform.python_version(),
        "versions": versions,
    }


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()) or "not measured"


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def to_markdown(report: dict) -> str:
    info = report["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores, GPU: {info['gpu']}; "
        f"python {info['python']}, {versions}",
        "",
        "| model | format | precision | backend | provider | device | MB | batch | mean ms "
        "| p50 | p90 | p99 | images/s | GFLOP | x floor | IoU | dIoU | RMSE | dRMSE "
        "| max abs diff | status |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---|",
    ]
    for row in report["rows"]:
        lat = row["latency"]
        lines.append(
            f"| {Path(row['model']).name} | {row['format']} | {row['precision']} | "
            f"{row['backend']} | {row['provider']} | {row['device']} | {row['mb']:.1f} | "
            f"{row['batch']} | {_fmt(lat.get('mean'), '.2f')} | {_fmt(lat.get('p50'), '.2f')} | "
            f"{_fmt(lat.get('p90'), '.2f')} | {_fmt(lat.get('p99'), '.2f')} | "
            f"{_fmt(lat.get('images_per_s'), '.1f')} | {_fmt(row.get('gflop'), '.1f')} | "
            f"{_fmt(lat.get('x_floor'), '.2f')} | {_fmt(row['iou'], '.4f')} | "
            f"{_fmt(row['d_iou'], '+.4f')} | {_fmt(row['rmse'], '.4f')} | "
            f"{_fmt(row['d_rmse'], '+.4f')} | {_fmt(row['max_abs'], '.2g')} | {row['status']} |"
        )
    lines.append("")
    lines.append(
        "Latency: the model call alone on a prepared batch, after warm-up "
        "(ms per batch; images/s = batch / mean). Floor (CPU rows of ONNX files): the file's "
        "FLOPs, counted from its graph, at the best sgemm rate measured in this run "
        f"({_rates(info.get('sgemm_gflops', {}))}); x floor = mean / floor. Accuracy: every "
        "held-out sample, once."
    )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path | None:
    """Latency per image against IoU, one labelled point per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in report["rows"] if r["latency"] and r["iou"] is not None]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    names = list(dict.fromkeys(f"{Path(r['model']).name} ({r['backend']})" for r in rows))
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    markers = ["o", "s", "^", "D", "v", "P"]
    batches = sorted({r["batch"] for r in rows})
    for row in rows:
        name = f"{Path(row['model']).name} ({row['backend']})"
        marker = markers[batches.index(row["batch"]) % len(markers)]
        ax.scatter(
            row["latency"]["mean"] / row["batch"],
            row["iou"],
            s=70,
            marker=marker,
            color=colours[name],
            edgecolors="black",
            linewidths=0.5,
        )
    # Legend: colour = model file and backend, marker = batch size.
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours[n], label=n) for n in names]
    handles += [
        plt.Line2D(
            [], [], ls="", marker=markers[i % len(markers)], color="grey", label=f"batch {b}"
        )
        for i, b in enumerate(batches)
    ]
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    ax.set_xlabel("latency per image (ms): mean time per call / batch; left is faster")
    ax.set_ylabel("mask IoU on the held-out samples (higher is better)")
    ax.set_title(
        f"maskdepth bench: {report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores, GPU: {report['machine']['gpu']}",
        fontsize=10,
    )
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
