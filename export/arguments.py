"""`maskdepth export`'s options (no torch here: building the CLI's parser stays fast)."""

from __future__ import annotations

import argparse
from pathlib import Path

from maskdepth.runtime.runners.cuda import DEVICES

FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "engine")


def _tolerance(text: str) -> dict[str, float]:
    """``0.01`` (every bound of the precision) or ``iou=0.01,rmse=0.004,max_abs=1e-3``."""
    try:
        if "=" not in text:
            return {"*": float(text)}
        pairs = (item.split("=", 1) for item in text.split(","))
        return {key.strip(): float(value) for key, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number or KEY=VALUE pairs (max_abs, iou, rmse), got {text!r}"
        ) from None


def add_export_arguments(parser: argparse.ArgumentParser, positive) -> None:
    parser.add_argument("checkpoint", type=Path, help="a maskdepth checkpoint (.pt)")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--out", required=True, type=Path, help="file to write")
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size, multiples of 32 (default: the training size)",
    )
    parser.add_argument(
        "--dynamic",
        action="store_true",
        help="dynamic height and width too (batch is always dynamic)",
    )
    parser.add_argument(
        "--max-batch", type=positive, default=32, help="largest batch of the engine's profile"
    )
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where onnxruntime runs the parity check of an ONNX file (engines: on the GPU)",
    )
    parser.add_argument(
        "--data", type=Path, help="held-out samples for calibration and parity (default: synthetic)"
    )
    parser.add_argument("--calib-count", type=positive, default=256)
    parser.add_argument(
        "--calib-method", choices=["minmax", "entropy", "percentile"], default="minmax"
    )
    parser.add_argument(
        "--int8-target",
        choices=["tensorrt", "cpu"],
        default="tensorrt",
        help="tensorrt: symmetric int8 activations; cpu: onnxruntime's uint8",
    )
    parser.add_argument(
        "--int8-exclude",
        default="auto",
        metavar="auto|none|BLOCK[,BLOCK]",
        help="blocks kept in float in an INT8 file (first, encoder.0-5, decoder.0-4, sides, "
        "fuse); auto: the sensitivity sweep's choice",
    )
    parser.add_argument(
        "--parity-count", type=positive, default=64, help="held-out samples in the parity check"
    )
    parser.add_argument(
        "--tolerance",
        type=_tolerance,
        help="override the parity bounds: 0.01, or iou=0.01,rmse=0.004",
    )
    parser.add_argument(
        "--raw-weights", action="store_true", help="export the trained weights, not their EMA"
    )
    engine = parser.add_argument_group("engines (--format engine)")
    engine.add_argument(
        "--from",
        dest="from_onnx",
        type=Path,
        help="build from this ONNX file (default: export one first)",
    )
    engine.add_argument(
        "--precision",
        choices=["fp32", "fp16", "int8"],
        help="of the graph to compile (default: fp16, or --from's)",
    )
    engine.add_argument("--workspace", type=positive, metavar="MB", help="builder workspace")
    engine.add_argument("--timing-cache", type=Path, help="reused across builds")
    engine.add_argument(
        "--compute-capability",
        dest="compute_capabilities",
        nargs="+",
        metavar="CC",
        help="TensorRT-RTX targets, e.g. 8.6 8.9 (default: all)",
    )


def options_from_args(args: argparse.Namespace):
    from .onnx_int8 import parse_exclude
    from .pipeline import ExportOptions

    return ExportOptions(
        format=args.format,
        size=tuple(args.size) if args.size else None,
        dynamic=args.dynamic,
        max_batch=args.max_batch,
        opset=args.opset,
        data=args.data,
        calib_count=args.calib_count,
        calib_method=args.calib_method,
        int8_target=args.int8_target,
        int8_exclude=None if args.int8_exclude == "auto" else parse_exclude(args.int8_exclude),
        parity_count=args.parity_count,
        tolerance=args.tolerance,
        use_ema=not args.raw_weights,
        from_onnx=args.from_onnx,
        precision=args.precision,
        workspace_mb=args.workspace,
        timing_cache=args.timing_cache,
        compute_capabilities=tuple(args.compute_capabilities or ()) or None,
        device=args.device,
    )
