"""`maskdepth bench`: latency and accuracy parity of model files side by side, one row per
model file x backend x batch, with the PyTorch reference measured in the same run.

Latency is the model call alone (the runner's ``infer`` on a prepared, normalised batch; the
PyTorch forward for the reference), after warm-up, so every row times the same work and the
speed-ups are ratios measured side by side. Accuracy runs every held-out sample through each
backend once and compares with the reference's outputs and with the ground truth.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from maskdepth.benchmarks.bench_report import jsonable, plot, to_markdown
from maskdepth.benchmarks.bench_rows import Context, Row, add_floors, model_rows, reference_rows
from maskdepth.benchmarks.measure import machine
from maskdepth.options import device_option, option, positive
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.predictor import BACKENDS

__all__ = ["BenchOptions", "bench", "to_markdown"]


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
    data: Path | None = option(  # held-out samples; default: as export chooses them
        None,
        type=Path,
        help="held-out data (default: the --reference checkpoint's validation split of its "
        "training folder, else synthetic scenes)",
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
        "samples": context.described(),
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
