"""Which onnxruntime settings make the Predictor fastest on this CPU: graph optimisation levels
(and loading a saved optimised model), then images/s at batch 1, 8 and 32 with 1 and 2 threads,
for the fp32 file and both INT8 files of u2netp-md.

    python -m maskdepth.benchmarks.scripts.session_settings --out runs/session_settings [--size 224]

Same seeded random-weight model and files as ``export_graph`` (latency does not depend on the
weights); every number is a median of timed calls after warm-up, in one process, one setting
after another. Writes ``session_settings.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from maskdepth.benchmarks.exports import export_files
from maskdepth.benchmarks.measure import latency_stats, publish, time_calls

LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


def _session(path: Path, threads: int, level: str = "ORT_ENABLE_ALL", save: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    if save is not None:
        options.optimized_model_filepath = str(save)
    start = time.perf_counter()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session, time.perf_counter() - start


def _median_ms(session, size: int, batch: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    feed = {n: rng.random((batch, 3, size, size), dtype=np.float32) for n in ("bg", "scene")}
    times = time_calls(functools.partial(session.run, None, feed), warmup=1, iters=repeats)
    return latency_stats(times, batch)["p50_ms"]


def levels(files: dict[str, Path], size: int, threads: int, repeats: int, tmp: Path) -> list:
    rows = []
    for name, path in files.items():
        for level in LEVELS:
            session, load = _session(path, threads, level)
            ms = _median_ms(session, size, 1, repeats)
            rows.append({"file": name, "setting": level, "load_s": load, "p50_ms": ms})
        saved = tmp / f"{path.stem}.optimized.onnx"
        _session(path, threads, save=saved)
        session, load = _session(saved, threads, "ORT_DISABLE_ALL")
        ms = _median_ms(session, size, 1, repeats)
        rows.append({"file": name, "setting": "saved optimised model", "load_s": load,
                     "p50_ms": ms})  # fmt: skip
    return rows


def batches(files: dict[str, Path], size: int, repeats: int) -> list:
    rows = []
    for name, path in files.items():
        for threads in (1, 2):
            session, _ = _session(path, threads)
            for batch in (1, 8, 32):
                ms = _median_ms(session, size, batch, repeats if batch < 32 else 2)
                rows.append({"file": name, "threads": threads, "batch": batch, "p50_ms": ms,
                             "images_per_s": 1e3 * batch / ms})  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    lines = [f"u2netp-md at {report['size']}x{report['size']}; medians of timed calls", "",
             "| file | setting (2 threads, batch 1) | load s | p50 ms |",
             "|---|---|---:|---:|"]  # fmt: skip
    lines += [f"| {r['file']} | {r['setting']} | {r['load_s']:.2f} | {r['p50_ms']:.1f} |"
              for r in report["levels"]]  # fmt: skip
    lines += ["", "| file | threads | batch | p50 ms | images/s |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['file']} | {r['threads']} | {r['batch']} | {r['p50_ms']:.1f} | "
              f"{r['images_per_s']:.1f} |" for r in report["batches"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per setting")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_files(Path(tmp), args.size, ["tensorrt", "cpu"], forms=("scales (now)",))
        files = {k.split(",")[0]: v for k, v in exported.items()}
        report = {"size": args.size,
                  "levels": levels(files, args.size, 2, args.repeats, Path(tmp)),
                  "batches": batches(files, args.size, args.repeats)}  # fmt: skip
    publish(args.out / "session_settings", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
