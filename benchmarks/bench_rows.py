"""The rows of `maskdepth bench`: the PyTorch reference and each model file x backend x batch,
each timed on a prepared batch and compared with the reference through the one ``compare()``.

The parity baseline is the PyTorch fp32 model on the CPU, as in the export gate (CUDA
convolutions may run in TF32); the PyTorch latency rows run on the device asked for.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from maskdepth.benchmarks.floor import floor_ms, onnx_flops, sgemm_gflops
from maskdepth.benchmarks.measure import latency_stats, repeat_batch, time_calls
from maskdepth.runtime.compare import Recorded, compare, score
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.preprocess import Preprocessing

if TYPE_CHECKING:
    from maskdepth.export.samples import HeldOut


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
        return latency_stats(self.latency_ms, self.batch, self.floor_ms)

    def to_dict(self) -> dict:
        return asdict(self) | {"latency": self.stats()}


class Context:
    """The options, the held-out samples and the recorded reference, made once per
    pre-processing (size, mean and std: two files of one size may normalise differently)."""

    def __init__(self, options) -> None:
        self.options = options
        self._samples: dict[Preprocessing, HeldOut] = {}
        self._reference: dict[Preprocessing, Recorded] = {}
        self.model = None
        self.ckpt: dict = {}
        if options.reference:
            from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

            self.ckpt = load_checkpoint(options.reference)
            self.model, self.pre = model_from_checkpoint(self.ckpt)

    def described(self) -> list[str]:
        """Where the held-out samples of each pre-processing came from ("8 validation scenes
        of DIR", "16 synthetic scenes (...)")."""
        return [held.description for held in self._samples.values()]

    def samples(self, pre: Preprocessing) -> HeldOut:
        if pre not in self._samples:
            from maskdepth.export.samples import held_out_samples

            self._samples[pre] = held_out_samples(
                self.ckpt, pre, self.options.count, self.options.data
            )
        return self._samples[pre]

    def reference(self, pre: Preprocessing) -> Recorded | None:
        """The PyTorch fp32 model's outputs on the samples (None without ``--reference``)."""
        if self.model is None:
            return None
        if pre not in self._reference:
            from maskdepth.train.torch_runner import TorchRunner

            runner = TorchRunner(self.model, device="cpu", threads=self.options.threads)
            self._reference[pre] = Recorded(runner).record(self.samples(pre))
        return self._reference[pre]


def reference_rows(context: Context) -> list[Row]:
    """The PyTorch fp32 model: latency per batch and its accuracy on the samples."""
    from maskdepth.train.torch_runner import TorchRunner

    options = context.options
    checkpoint = options.reference
    assert checkpoint is not None and context.model is not None  # bench() calls it with one
    samples = context.samples(context.pre)
    reference = context.reference(context.pre)
    assert reference is not None  # None only without a model
    result = score(reference, samples)
    row_of = functools.partial(
        Row,
        model=str(checkpoint),
        format="pytorch",
        precision="fp32",
        backend="pytorch",
        provider=TorchRunner.provider,
        mb=Path(checkpoint).stat().st_size / 1e6,
        iou=result["iou"],
        rmse=result["rmse"],
        d_iou=0.0,
        d_rmse=0.0,
        max_abs=0.0,
    )
    try:
        runner = TorchRunner(context.model, device=options.device, threads=options.threads)
    except MaskDepthError as exc:  # e.g. --device cuda with a CPU-only torch: time nothing
        return [row_of(batch=b, status=f"failed: {exc}") for b in options.batches]
    rows = []
    with runner:
        for size in options.batches:
            feed = repeat_batch(samples, size)
            latency = _time(functools.partial(runner.infer, feed), options)
            rows.append(
                row_of(batch=size, device=runner.device, latency_ms=latency, status="reference")
            )
    return rows


def model_rows(path: Path, backend: str, context: Context) -> list[Row]:
    """One row per batch size for ``path`` on ``backend``; a failure fails this file's rows."""
    from maskdepth.runtime.predictor import open_runner

    options = context.options
    fmt = "engine" if path.suffix.lower() in (".engine", ".plan") else "onnx"
    row_of = functools.partial(
        Row, model=str(path), format=fmt, backend=backend, mb=path.stat().st_size / 1e6
    )
    try:
        runner, info = open_runner(path, backend, options.device, options.threads)
    except (MaskDepthError, MissingDependencyError, OSError) as exc:
        reason = str(exc).splitlines()[0]
        return [row_of(precision="?", batch=b, status=f"failed: {reason}") for b in options.batches]
    row_of = functools.partial(
        row_of, precision=info.precision, provider=runner.provider, device=runner.device
    )
    try:
        accuracy = _accuracy(runner, info, context)
        rows = []
        for size in options.batches:
            row = row_of(batch=size, **accuracy)
            try:
                feed = repeat_batch(context.samples(info.preprocessing), size)
                row.latency_ms = _time(functools.partial(runner.infer, feed), options)
            except (MaskDepthError, RuntimeError) as exc:
                row.status = f"failed: {str(exc).splitlines()[0]}"
            rows.append(row)
    except (MaskDepthError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        rows = [row_of(batch=b, status=f"failed: {reason}") for b in options.batches]
    finally:
        runner.deactivate()
    return rows


def _accuracy(runner, info, context: Context) -> dict:
    """IoU and RMSE against the ground truth, and against the reference when there is one."""
    samples = context.samples(info.preprocessing)
    reference = context.reference(info.preprocessing)
    if reference is None:
        result = score(runner, samples)
        return {"iou": result["iou"], "rmse": result["rmse"]}
    comparison = compare(reference, runner, samples, precision=info.precision)
    status = "ok" if comparison else "runs, parity failed: " + "; ".join(comparison.failures())
    return {
        "iou": comparison.candidate["iou"],
        "rmse": comparison.candidate["rmse"],
        "d_iou": comparison.d_iou,
        "d_rmse": comparison.d_rmse,
        "max_abs": comparison.measured()["max_abs"],
        "status": status,
    }


def _time(call, options) -> list[float]:
    return time_calls(call, options.warmup, options.iters, options.seconds)


def add_floors(rows: list[Row], threads: int | None) -> dict[str, float]:
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
