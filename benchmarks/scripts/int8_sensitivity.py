"""Which blocks of the network INT8 hurts: the INT8 file exported with one block at a time kept in
float (``--int8-exclude BLOCK``), against full INT8, each through ``maskdepth export``'s own
parity check on the same held-out samples.

    python -m maskdepth.benchmarks.scripts.int8_sensitivity CKPT [CKPT ...] --data DIR \\
        --out runs/int8

A block whose float copy brings IoU and RMSE back toward fp32 is a candidate for
``--int8-exclude auto`` (``AUTO_EXCLUDE`` in maskdepth/export/onnx_int8.py). Writes
``int8_sensitivity.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from maskdepth.benchmarks.measure import publish
from maskdepth.export.onnx_int8 import BLOCKS, parse_exclude
from maskdepth.export.pipeline import ExportOptions, export


def sweep(
    checkpoint: Path, data: Path | None, target: str, count: int, blocks: tuple[str, ...]
) -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        for block in ["(none: full INT8)", *blocks]:
            options = ExportOptions(
                format="onnx-int8", data=data, int8_target=target, parity_count=count,
                calib_count=count, tolerance={"*": 1.0},
                int8_exclude=() if block.startswith("(") else (block,),
            )  # fmt: skip
            result = export(checkpoint, Path(tmp) / f"{len(rows)}.onnx", options)
            assert result.comparison is not None  # every ONNX export is gated
            measured = result.comparison.to_dict()
            rows.append({"checkpoint": str(checkpoint), "float": block,
                         "d_iou": measured["d_iou"], "d_rmse": measured["d_rmse"],
                         "max_abs": measured["measured"]["max_abs"]})  # fmt: skip
    return rows


def markdown(report: dict) -> str:
    lines = [f"INT8 target {report['target']}; {report['count']} held-out samples; dIoU and "
             "dRMSE against PyTorch fp32", "",
             "| checkpoint | kept in float | dIoU | dRMSE | max abs diff |",
             "|---|---|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {Path(r['checkpoint']).parent.name} | {r['float']} | {r['d_iou']:+.4f} | "
              f"{r['d_rmse']:+.4f} | {r['max_abs']:.3g} |" for r in report["rows"]]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", type=Path, nargs="+")
    parser.add_argument("--data", type=Path, help="held-out samples (default: each's own)")
    parser.add_argument("--target", choices=["tensorrt", "cpu"], default="tensorrt")
    parser.add_argument("--count", type=int, default=64, help="parity and calibration samples")
    parser.add_argument(
        "--blocks", type=parse_exclude, default=tuple(BLOCKS), help="comma-separated (all)"
    )
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = [
        row
        for checkpoint in args.checkpoints
        for row in sweep(checkpoint, args.data, args.target, args.count, args.blocks)
    ]
    report = {"target": args.target, "count": args.count, "rows": rows}
    publish(args.out / "int8_sensitivity", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
