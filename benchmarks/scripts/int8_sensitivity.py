"""Which blocks of the network INT8 hurts: the INT8 file exported with one block at a time kept in
float (``--int8-exclude BLOCK``), against full INT8, each through ``maskdepth export``'s own
parity check on the same held-out samples.

    python -m maskdepth.benchmarks.scripts.int8_sensitivity CKPT [CKPT ...] --data DIR \\
        --out runs/int8

``--keep-float refiner`` keeps those blocks in float in every row (after a row of full INT8 and
one of them alone), so the sweep looks for what else to keep. A block whose float copy brings
IoU and RMSE back toward fp32 is a candidate for ``--int8-exclude auto`` (``AUTO_EXCLUDE`` and
``AUTO_EXCLUDE_REFINED`` in maskdepth/export/options.py). Writes ``int8_sensitivity.md`` and
``.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from maskdepth.benchmarks.measure import publish, time_files
from maskdepth.export.options import BLOCKS, METHODS, parse_exclude
from maskdepth.export.pipeline import ExportOptions, export

FULL_INT8 = "(none: full INT8)"  # the label of the row that keeps nothing in float


def sweep(checkpoint: Path, args: argparse.Namespace) -> list[dict]:
    """One INT8 export per calibration method and kept-in-float block, each gated against
    PyTorch fp32; with ``args.time``, their latencies side by side, over full INT8's."""
    rows: list[dict] = []
    files: dict[str, Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.calib_methods:
            for exclude in float_sets(args.keep_float, args.blocks):
                path = Path(tmp) / f"{len(rows)}.onnx"
                options = ExportOptions(
                    format="onnx-int8", data=args.data, int8_target=args.target,
                    parity_count=args.count, calib_count=args.count, calib_method=method,
                    tolerance={"*": 1.0}, int8_exclude=exclude,
                    size=(args.size, args.size) if args.size else None,
                )  # fmt: skip
                measured = _gated(checkpoint, path, options)
                rows.append({"checkpoint": str(checkpoint), "calibration": method,
                             "float": "+".join(exclude) or FULL_INT8, **measured})  # fmt: skip
                files[str(len(rows) - 1)] = path
        if args.time:
            _add_latency(rows, files, args)
    return rows


def float_sets(keep: tuple[str, ...], blocks: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The blocks each row keeps in float: none (full INT8), then ``keep`` alone (when given),
    then ``keep`` and one more block, for each of ``blocks`` not in ``keep``."""
    sets = [(), keep, *((*keep, block) for block in blocks if block not in keep)]
    return list(dict.fromkeys(sets))


def _gated(checkpoint: Path, path: Path, options: ExportOptions) -> dict:
    result = export(checkpoint, path, options)
    assert result.comparison is not None  # every ONNX export is gated
    measured = result.comparison.to_dict()
    return {"d_iou": measured["d_iou"], "d_rmse": measured["d_rmse"],
            "max_abs": measured["measured"]["max_abs"]}  # fmt: skip


def _add_latency(rows: list[dict], files: dict[str, Path], args: argparse.Namespace) -> None:
    """p50 of each file at its input size (interleaved calls), and its ratio to full INT8 with
    the same calibration (calibration does not change the graph, only its scales)."""
    from maskdepth.runtime.model_info import read_onnx_info

    size = read_onnx_info(str(next(iter(files.values())))).size[0]
    p50 = time_files(files, size, args.threads, args.repeats)
    full = {r["calibration"]: p50[str(i)] for i, r in enumerate(rows) if r["float"] == FULL_INT8}
    for i, row in enumerate(rows):
        row["p50_ms"] = p50[str(i)]
        row["x_full_int8"] = p50[str(i)] / full[row["calibration"]]


def markdown(report: dict) -> str:
    lines = [f"INT8 target {report['target']}; {report['count']} held-out samples; dIoU and "
             "dRMSE against PyTorch fp32", "",
             "| checkpoint | calibration | kept in float | dIoU | dRMSE | max abs diff | p50 ms "
             "| x full INT8 |", "|---|---|---|---:|---:|---:|---:|---:|"]  # fmt: skip
    lines += [f"| {Path(r['checkpoint']).parent.name} | {r['calibration']} | {r['float']} | "
              f"{r['d_iou']:+.4f} | {r['d_rmse']:+.4f} | {r['max_abs']:.3g} | "
              f"{r.get('p50_ms', float('nan')):.1f} | {r.get('x_full_int8', float('nan')):.3f} |"
              for r in report["rows"]]  # fmt: skip
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
    parser.add_argument(
        "--keep-float",
        type=parse_exclude,
        default=(),
        metavar="BLOCK[,BLOCK]",
        help="blocks kept in float in every row but full INT8's, e.g. refiner",
    )
    parser.add_argument(
        "--calib-methods", nargs="+", choices=list(METHODS), default=["minmax"], metavar="METHOD"
    )
    parser.add_argument("--time", action="store_true", help="also time every file, side by side")
    parser.add_argument("--size", type=int, help="export at this side (default: training size)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per file")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    rows = [row for checkpoint in args.checkpoints for row in sweep(checkpoint, args)]
    report = {"target": args.target, "count": args.count, "rows": rows}
    publish(args.out / "int8_sensitivity", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
