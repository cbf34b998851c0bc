"""What an export is asked to do: :class:`ExportOptions`, whose fields are also the options of
``maskdepth export``, and the names its options take (formats, INT8 calibration methods, targets
and blocks). No torch and no onnx here: building the CLI's parser stays fast."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from maskdepth.options import device_option, option, positive
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import PRECISIONS

FORMATS = ("onnx", "onnx-fp16", "onnx-int8", "engine", "triton")
PRECISION_OF = {"onnx": "fp32", "onnx-fp16": "fp16", "onnx-int8": "int8"}
# INT8 calibration (maskdepth.export.onnx_int8). Not onnxruntime's "entropy": quantize_static
# gives it as many histogram bins as quantized bins (128 and 128), which makes it minmax (measured:
# identical files' parity to the fourth decimal).
METHODS = ("minmax", "percentile")
TARGETS = ("tensorrt", "cpu")  # INT8 graphs for TensorRT or onnxruntime's CPU kernels
DEFAULT_OPSET = 17
MIN_PARITY_SAMPLES = 64
ENGINES = "engines (--format engine)"  # the help's group of the engine-only options
TRITON = "Triton repositories (--format triton)"
TRITON_NETWORKS = ("onnxruntime", "tensorrt", "python")  # what runs maskdepth_net


def _tolerance(text: str) -> dict[str, float]:
    """``0.01`` (every bound of the precision) or ``iou=0.01,rmse=0.004,max_abs=1e-3``."""
    try:
        if "=" not in text:
            return {"*": float(text)}
        pairs = (item.split("=", 1) for item in text.split(","))
        return {key.strip(): float(value) for key, value in pairs}
    except ValueError:
        raise argparse.ArgumentTypeError(
            "expected a number or KEY=VALUE pairs (max_abs, mean_abs, iou, rmse; "
            f"depth.max_abs for one output), got {text!r}"
        ) from None


# The network's blocks by node-name path inside the exported graph, under one of NETWORK_SCOPES
# (a plain model's U2-Net is "/model/", a refined model's "/model/base/"): the unit of
# --int8-exclude and of the sensitivity sweep (benchmarks/scripts/int8_sensitivity.py). Both
# decoders share a block; "refiner" is a refined model's refiner (nothing in a plain model).
# FRAME_BLOCKS are not paths (export.onnx_int8.frame_nodes): "frame", the nodes in no module
# (the input Concat, the output Sigmoids; a refined model's downscale to the base size, the
# Concat of the base's logits, the Slices of the refined ones), and "outputs", the frame's tail
# from the network's last layer to the graph outputs (the Sigmoids; a refined model's Slices).
NETWORK_SCOPES = ("/model/", "/model/base/")
FRAME_BLOCKS = ("frame", "outputs")
BLOCKS: dict[str, tuple[str, ...]] = {
    "first": ("encoder/stages.0/project/",),
    **{f"encoder.{i}": (f"encoder/stages.{i}/",) for i in range(6)},
    **{f"decoder.{i}": tuple(f"decoders.{d}/stages.{i}/" for d in (0, 1)) for i in range(5)},
    "sides": tuple(f"decoders.{d}/sides." for d in (0, 1)),
    "fuse": tuple(f"decoders.{d}/fuse/" for d in (0, 1)),
    "refiner": ("refiner/",),
    **{name: () for name in FRAME_BLOCKS},
}
# What --int8-exclude auto keeps in float: chosen by the sweep (README, Export). Empty: on the
# models measured, no block's float copy moved IoU or RMSE by more than the sweep's noise.
AUTO_EXCLUDE: tuple[str, ...] = ()
# A refined model's: its refiner and its outputs kept in float (measured: README, Export). A
# trained refiner's mask logits span about +-240, so INT8 on them (the refiner's last Concat,
# the Slices and Sigmoids after it) is a step of 1.9 at the decision boundary: |dIoU| 0.016.
AUTO_EXCLUDE_REFINED: tuple[str, ...] = ("refiner", "outputs")


def parse_exclude(text: str) -> tuple[str, ...]:
    """``--int8-exclude``: auto, none, or block names separated by commas."""
    if text == "auto":
        return AUTO_EXCLUDE
    if text == "none":
        return ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in BLOCKS]
    if unknown or not names:
        raise MaskDepthError(
            f"--int8-exclude {text}: expected auto, none or blocks from {', '.join(BLOCKS)}"
        )
    return names


def _exclude(text: str) -> tuple[str, ...] | None:
    """``--int8-exclude``: None for auto (the pipeline's AUTO_EXCLUDE), else the blocks."""
    return None if text == "auto" else parse_exclude(text)


@dataclass
class ExportOptions:
    format: str = option("onnx", choices=FORMATS)
    size: tuple[int, int] | None = option(  # default: the training size
        None,
        type=int,
        nargs=2,
        metavar=("H", "W"),
        convert=tuple,
        help="input size, multiples of 32 (default: the training size)",
    )
    dynamic: bool = option(  # False: batch only; True: batch, height and width
        False, action="store_true", help="dynamic height and width too (batch is always dynamic)"
    )
    max_batch: int = option(
        32, type=positive, help="largest batch of the engine's profile (Triton: max_batch_size)"
    )
    opset: int = option(DEFAULT_OPSET, type=int)
    device: str = device_option(
        "cpu", help="where onnxruntime runs the parity check of an ONNX file (engines: on the GPU)"
    )
    data: Path | None = option(  # held-out samples; default: see export.samples
        None,
        type=Path,
        help="held-out samples for calibration and parity (default: the validation split of "
        "the checkpoint's training folder, else synthetic scenes)",
    )
    calib_count: int = option(256, type=positive)
    calib_method: str = option("minmax", choices=METHODS)
    int8_target: str = option(
        "tensorrt",
        choices=TARGETS,
        help="tensorrt: symmetric int8 activations; cpu: onnxruntime's uint8",
    )
    int8_exclude: tuple[str, ...] | None = option(  # blocks kept in float; None: AUTO_EXCLUDE
        None,
        default="auto",
        metavar="auto|none|BLOCK[,BLOCK]",
        convert=_exclude,
        help="blocks kept in float in an INT8 file (first, encoder.0-5, decoder.0-4, sides, "
        "fuse, refiner, frame, outputs); auto: the sensitivity sweep's choice",
    )
    parity_count: int = option(
        MIN_PARITY_SAMPLES, type=positive, help="held-out samples in the parity check"
    )
    tolerance: dict | None = option(  # e.g. {"iou": 0.02}; {"*": x} sets every bound
        None,
        type=_tolerance,
        help="override the parity bounds: 0.01, or iou=0.01,rmse=0.004,depth.max_abs=1e-3",
    )
    use_ema: bool = option(
        True,
        "--raw-weights",
        action="store_false",
        help="export the trained weights, not their EMA",
    )
    # engines
    from_onnx: Path | None = option(
        None,
        "--from",
        type=Path,
        group=ENGINES,
        help="build from this ONNX file (default: export one first); --format triton: serve "
        "this ONNX file, or this plan (with its sidecar) for --triton-network tensorrt",
    )
    precision: str | None = option(  # of the ONNX graph an engine is built from
        None,
        choices=PRECISIONS,
        group=ENGINES,
        help="of the graph to compile (default: fp16, or --from's); --format triton: of the "
        "network (default fp32; tensorrt: fp16)",
    )
    workspace_mb: int | None = option(
        None, "--workspace", type=positive, metavar="MB", group=ENGINES, help="builder workspace"
    )
    timing_cache: Path | None = option(None, type=Path, group=ENGINES, help="reused across builds")
    compute_capabilities: tuple[str, ...] | None = option(
        None,
        "--compute-capability",
        nargs="+",
        metavar="CC",
        convert=tuple,
        group=ENGINES,
        help="TensorRT-RTX targets, e.g. 8.6 8.9 (default: all)",
    )
    # Triton repositories
    triton_network: str = option(
        "onnxruntime",
        choices=TRITON_NETWORKS,
        group=TRITON,
        help="what runs maskdepth_net: onnxruntime (fp16/int8 through its TensorRT "
        "accelerator), a TensorRT plan, or the python backend with maskdepth's runtime (CPU)",
    )
    instances: int = option(1, type=positive, group=TRITON, help="instances of each model")

    @property
    def precision_of_graph(self) -> str:
        """The precision of the ONNX graph this export makes (or an engine compiles)."""
        return PRECISION_OF.get(self.format, self.precision or "fp16")
