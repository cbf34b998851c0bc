"""`maskdepth bench`: latency and accuracy parity of model files side by side, one row per
model file x backend x batch, with the PyTorch reference measured in the same run.

Latency is the model call alone (the runner's ``infer`` on a prepared, normalised batch; the
PyTorch forward for the reference), after warm-up, so every row times the same work and the
speed-ups are ratios measured side by side. Accuracy runs every held-out sample through each
backend once and compares with the reference's outputs and with the ground truth.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from maskdepth.benchmarks.bench_report import jsonable, plot, to_markdown
from maskdepth.benchmarks.bench_rows import Context, Row, add_floors, model_rows, reference_rows
from maskdepth.benchmarks.measure import machine
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.runners.cuda import DEVICES

__all__ = ["BenchOptions", "add_bench_arguments", "bench", "options_from_args", "to_markdown"]


@dataclass
class BenchOptions:
    data: Path | None = None  # held-out samples; default: synthetic scenes
    reference: Path | None = None  # a checkpoint: the PyTorch fp32 row and the parity baseline
    batches: tuple[int, ...] = (1, 8)
    count: int = 256
    warmup: int = 3
    iters: int | None = None  # timed calls per row; default: as many as fit in ``seconds``
    seconds: float = 3.0
    device: str = "auto"
    backends: tuple[str, ...] | None = None  # default: onnxruntime for .onnx, tensorrt for .engine
    threads: int | None = None


def bench(models: list[Path], out: Path, options: BenchOptions, progress: bool = True) -> dict:
    """Benchmark every model file; write bench.md, bench.json and bench.png into ``out``."""
    from tqdm import tqdm

    models = [Path(m) for m in models]
    for path in models:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
    out.mkdir(parents=True, exist_ok=True)
    context = Context(options)
    rows: list[Row] = []
    jobs = [(m, b) for m in models for b in _backends(m, options)]
    if options.reference:
        rows += reference_rows(context)
    for path, backend in tqdm(jobs, desc="bench", unit="model", disable=not progress):
        rows += model_rows(path, backend, context)
    peak = add_floors(rows, options.threads)
    report = {
        "machine": machine() | {"sgemm_gflops": peak},
        "options": jsonable(asdict(options)),
        "rows": [r.to_dict() for r in rows],
    }
    write_bytes_atomic(out / "bench.json", json.dumps(report, indent=2).encode())
    write_bytes_atomic(out / "bench.md", to_markdown(report).encode())
    plot(report, out / "bench.png")
    return report


def _backends(path: Path, options: BenchOptions) -> list[str]:
    engine = path.suffix.lower() in (".engine", ".plan")
    if options.backends:
        return list(options.backends)
    return ["tensorrt"] if engine else ["onnxruntime"]


def _batches(text: str) -> tuple[int, ...]:
    import argparse

    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected batch sizes like 1,8, got {text!r}")
    return values


def add_bench_arguments(parser, positive) -> None:
    parser.add_argument(
        "models", nargs="+", type=Path, metavar="MODEL", help="exported files (.onnx, .engine)"
    )
    parser.add_argument("--data", type=Path, help="held-out data (default: synthetic scenes)")
    parser.add_argument("--out", required=True, type=Path, help="folder for bench.md/json/png")
    parser.add_argument(
        "--reference", type=Path, help="the checkpoint: PyTorch fp32 row and the parity baseline"
    )
    parser.add_argument("--batch", type=_batches, default=(1, 8), help="e.g. 1,8")
    parser.add_argument("--count", type=positive, default=256, help="held-out samples")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per row")
    parser.add_argument("--iters", type=positive, help="timed calls per row")
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="time per row when --iters is not given"
    )
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument(
        "--backend",
        nargs="+",
        choices=["onnxruntime", "onnxruntime-tensorrt", "tensorrt"],
        help="default: onnxruntime for .onnx, tensorrt for .engine",
    )
    parser.add_argument("--threads", type=positive, help="CPU threads (onnxruntime, PyTorch)")


def options_from_args(args) -> BenchOptions:
    return BenchOptions(
        data=args.data,
        reference=args.reference,
        batches=args.batch,
        count=args.count,
        warmup=args.warmup,
        iters=args.iters,
        seconds=args.seconds,
        device=args.device,
        backends=tuple(args.backend) if args.backend else None,
        threads=args.threads,
    )
