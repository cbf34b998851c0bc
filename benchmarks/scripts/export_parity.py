"""File sizes, export times and the parity table of every export form of one checkpoint.

    python -m maskdepth.benchmarks.scripts.export_parity runs/train_quality/best.pt \\
        --out runs/export_parity

Exports ONNX fp32, fp16 and INT8 (for TensorRT and for the CPU) through `maskdepth export`'s own
pipeline, each gated against the PyTorch fp32 model on the same held-out samples, then builds
TensorRT engines from them where a flavour is installed (TensorRT-RTX builds without a GPU;
their parity needs CUDA). Writes ``export_parity.md`` and ``export_parity.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from maskdepth.benchmarks.measure import describe, machine
from maskdepth.export.pipeline import ExportOptions, export
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic

FORMS: list[tuple[str, str, str | None]] = [  # name, format, INT8 target
    ("onnx fp32", "onnx", None),
    ("onnx fp16", "onnx-fp16", None),
    ("onnx int8 (tensorrt)", "onnx-int8", "tensorrt"),
    ("onnx int8 (cpu)", "onnx-int8", "cpu"),
]


def run(args: argparse.Namespace) -> dict:
    rows = []
    for name, fmt, int8_target in FORMS:
        out = args.out / f"model.{name.split(' (')[0].split()[-1]}{_suffix(int8_target)}.onnx"
        options = ExportOptions(
            format=fmt, data=args.data, parity_count=args.parity_count,
            calib_count=args.calib_count,
        )  # fmt: skip
        if int8_target is not None:
            options.int8_target = int8_target
        start = time.perf_counter()
        result = export(args.checkpoint, out, options)
        comparison = result.comparison
        assert comparison is not None  # every ONNX export is gated against PyTorch
        row = {"form": name, "file": str(result.path), "mb": result.size_bytes / 1e6,
               "seconds": time.perf_counter() - start, "steps": result.seconds,
               "passed": result.passed}  # fmt: skip
        row |= comparison.to_dict()
        rows.append(row)
        print(comparison.table(name), flush=True)
    rows += build_engines(args, rows)
    return {"machine": machine(), "checkpoint": str(args.checkpoint), "rows": rows}


def _suffix(int8_target: str | None) -> str:
    return f"-{int8_target}" if int8_target is not None else ""


def build_engines(args: argparse.Namespace, rows: list[dict]) -> list[dict]:
    """Engines from the fp32, fp16 and TensorRT INT8 files, or one row saying what blocked it."""
    try:
        from maskdepth.export.engine import build_engine_from_onnx
    except ImportError as exc:
        return [{"form": "engine", "blocked": f"no engine builder: {exc}"}]
    built = []
    for row in rows:
        if "(cpu)" in row["form"]:
            continue
        onnx_path = Path(row["file"])
        start = time.perf_counter()
        try:
            result = build_engine_from_onnx(onnx_path, onnx_path.with_suffix(".engine"))
        except (MaskDepthError, MissingDependencyError) as exc:
            built.append({"form": row["form"].replace("onnx", "engine"), "blocked": str(exc)})
            continue
        built.append({"form": row["form"].replace("onnx", "engine"), "file": str(result.path),
                      "mb": result.size_bytes / 1e6, "seconds": time.perf_counter() - start,
                      "passed": result.passed, "note": result.note})  # fmt: skip
    return built


def to_markdown(report: dict) -> str:
    lines = [
        f"# Export parity: {report['checkpoint']}", "",
        describe(report["machine"]), "",
        "| form | MB | export s | max abs mask | max abs depth | IoU | dIoU | RMSE | dRMSE "
        "| parity |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]  # fmt: skip
    for row in report["rows"]:
        if "blocked" in row:
            lines.append(f"| {row['form']} | | | | | | | | | blocked: {row['blocked']} |")
        elif "max_abs" not in row:
            verdict = "not checked (needs CUDA)" if row["passed"] is None else row["passed"]
            lines.append(f"| {row['form']} | {row['mb']:.2f} | {row['seconds']:.1f} | | | | | | "
                         f"| {verdict} |")  # fmt: skip
        else:
            lines.append(
                f"| {row['form']} | {row['mb']:.2f} | {row['seconds']:.1f} | "
                f"{row['max_abs']['mask']:.2g} | {row['max_abs']['depth']:.2g} | "
                f"{row['candidate']['iou']:.4f} | {row['d_iou']:+.4f} | "
                f"{row['candidate']['rmse']:.4f} | {row['d_rmse']:+.4f} | "
                f"{'ok' if row['passed'] else 'FAILED'} |"
            )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="e.g. runs/train_quality/best.pt")
    parser.add_argument("--out", type=Path, default=Path("runs/export_parity"))
    parser.add_argument("--data", type=Path, help="held-out data (default: synthetic scenes)")
    parser.add_argument("--parity-count", type=int, default=64)
    parser.add_argument("--calib-count", type=int, default=256)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    markdown = to_markdown(report)
    write_bytes_atomic(args.out / "export_parity.md", markdown.encode())
    write_bytes_atomic(args.out / "export_parity.json", json.dumps(report, indent=2).encode())
    print(markdown)
    return 0 if all(row.get("passed") is not False for row in report["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
