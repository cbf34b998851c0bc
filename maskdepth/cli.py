"""The `maskdepth` command: one entry point, a subcommand per job.

User errors (MaskDepthError, a missing file or optional dependency) print one line and exit 2;
heavy modules are imported only by the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from maskdepth import __version__
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.runners.cuda import DEVICES, check_device


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _add_dataset_reading(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data", metavar="DIR", help="dataset in the seed's layout (folders/zips)")
    parser.add_argument(
        "--skip-bad", action="store_true", help="skip broken or incomplete scenes, count them"
    )
    parser.add_argument(
        "--no-binarize",
        dest="binarize",
        action="store_false",
        help="keep masks as stored instead of thresholding them at 0.5",
    )


def _data_parsers(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="make, inspect and look at datasets")
    verbs = data.add_subparsers(dest="verb", required=True, metavar="VERB")

    compose = verbs.add_parser("compose", help="the seed's recipe on your images")
    compose.add_argument("--backgrounds", required=True, type=Path, help="folder of empty scenes")
    compose.add_argument(
        "--foregrounds", required=True, type=Path, help="folder of RGBA PNG cut-outs"
    )
    compose.add_argument("--out", required=True, type=Path)
    compose.add_argument("--size", type=int, default=224, help="square side of every image")
    compose.add_argument("--positions", type=positive, default=20, help="places per cut-out")
    compose.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True)
    compose.add_argument(
        "--fg-size", type=positive, help="cut-outs fit in this square (default: --size / 2)"
    )
    compose.add_argument("--white-key", action="store_true", help="white backgrounds -> alpha")
    compose.add_argument(
        "--png", action="store_true", help="lossless PNG instead of the seed's JPG"
    )
    compose.add_argument("--depth-model", type=Path, help="a monocular depth network as ONNX")
    compose.add_argument(
        "--depth-output",
        choices=["depth", "disparity"],
        default="depth",
        help="what the depth model outputs (disparity is inverted)",
    )
    compose.add_argument("--skip-bad", action="store_true", help="skip unreadable input images")
    _add_generation_options(compose)
    compose.set_defaults(run=_run_compose)

    synth = verbs.add_parser("synth", help="procedural scenes with exact depth")
    synth.add_argument("--out", required=True, type=Path)
    synth.add_argument("--count", required=True, type=positive, help="number of scenes")
    synth.add_argument("--size", type=int, default=224, help="square side of every image")
    synth.add_argument("--per-background", type=positive, default=20, help="scenes per bg")
    synth.add_argument("--jpg", action="store_true", help="the seed's JPG instead of lossless PNG")
    _add_generation_options(synth)
    synth.set_defaults(run=_run_synth)

    info = verbs.add_parser("info", help="what a dataset holds")
    _add_dataset_reading(info)
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument("--sample", type=positive, default=200, help="scenes decoded for stats")
    info.set_defaults(run=_run_info)

    show = verbs.add_parser("show", help="a bg | scene | mask | depth grid as a picture")
    _add_dataset_reading(show)
    show.add_argument("--out", required=True, type=Path, help="picture to write (.png or .jpg)")
    show.add_argument("--count", type=positive, default=8, help="scenes (rows) in the grid")
    show.set_defaults(run=_run_show)


def _add_generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=positive, help="processes (default: every core)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset in --out")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskdepth",
        description="Mask and dense depth of what is new in a fixed camera's scene.",
    )
    parser.add_argument("--version", action="version", version=f"maskdepth {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _data_parsers(sub)
    _train_parser(sub)
    _eval_parser(sub)
    _export_parser(sub)
    _predict_parser(sub)
    _bench_parser(sub)
    demo = sub.add_parser(
        "demo",
        help="the whole story on this machine, no data needed",
        description="Synthesise data, train u2netp-md, export ONNX fp32/fp16/INT8 (and an engine "
        "with TensorRT and CUDA), benchmark them against PyTorch, and write OUT/report.md.",
    )
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    demo.add_argument("--minutes", type=float, default=15.0, help="budget for the whole demo")
    demo.add_argument("--count", type=positive, default=3000, help="synthetic scenes to make")
    demo.add_argument("--size", type=int, help="image side (default: 64 on CPU, 224 on GPU)")
    demo.add_argument("--device", choices=DEVICES, default="auto", help="where to train")
    demo.set_defaults(run=_run_demo)
    _doctor_parser(sub)
    return parser


def _doctor_parser(sub: argparse._SubParsersAction) -> None:
    from maskdepth import doctor

    parser = sub.add_parser(
        "doctor",
        help="what this machine can do: GPU, CUDA, onnxruntime, TensorRT",
        description="One line per capability (GPU, driver, CUDA in PyTorch, onnxruntime "
        "providers, TensorRT flavours, engine targets), with the reason when it cannot.",
    )
    doctor.add_arguments(parser)
    parser.set_defaults(run=doctor.run)


def _train_parser(sub: argparse._SubParsersAction) -> None:
    from maskdepth.train.config import add_train_arguments  # no torch: --help stays fast

    train = sub.add_parser(
        "train",
        help="train a model",
        description="Train a mask + depth model; on several GPUs run "
        "'torchrun --nproc_per_node N -m maskdepth.train' with the same options.",
    )
    add_train_arguments(train)
    train.set_defaults(run=_run_train)


def _export_parser(sub: argparse._SubParsersAction) -> None:
    from maskdepth.export.arguments import add_export_arguments

    export = sub.add_parser(
        "export",
        help="export to ONNX fp32/fp16/INT8 or a TensorRT engine, checked for parity",
        description="Export a checkpoint; every file is compared with the PyTorch fp32 model "
        "on held-out samples and kept as NAME.parity-failed.EXT (exit 1) when over tolerance.",
    )
    add_export_arguments(export, positive)
    export.set_defaults(run=_run_export)


def _run_export(args: argparse.Namespace) -> int:
    from maskdepth.export.arguments import options_from_args
    from maskdepth.export.pipeline import export, format_result

    result = export(args.checkpoint, args.out, options_from_args(args))
    print(format_result(result))
    return 0 if result.passed is not False else 1


def _predict_parser(sub: argparse._SubParsersAction) -> None:
    predict = sub.add_parser(
        "predict",
        help="run a model on images or video",
        description="Mask and depth of the scenes against one background (a fixed camera). "
        "Images go to OUT/<kind>/<name>.png; a video gives OUT/<name>.mp4 (overlay | depth).",
    )
    predict.add_argument("model", type=Path, help="an exported model (.onnx or .engine)")
    predict.add_argument("--bg", required=True, type=Path, help="the empty scene (background)")
    scenes = predict.add_mutually_exclusive_group(required=True)
    scenes.add_argument("--scene", type=Path, help="one scene image")
    scenes.add_argument("--scenes", type=Path, metavar="DIR", help="a folder of scene images")
    scenes.add_argument("--video", type=Path, metavar="FILE", help="a video of the scene")
    predict.add_argument("--out", required=True, type=Path, help="folder for the results")
    predict.add_argument(
        "--save",
        help="what to write per scene, comma-separated from mask, depth, overlay, colormap "
        "(default: mask,depth,overlay for images; only the video for a video)",
    )
    predict.add_argument("--batch", type=positive, default=8, help="scenes per model run")
    predict.add_argument(
        "--threshold",
        type=_threshold,
        default=0.5,
        help="mask threshold in [0, 1] for the saved mask and overlay; 'none' saves probabilities",
    )
    predict.add_argument("--device", choices=DEVICES, default="auto")
    predict.add_argument("--threads", type=positive, help="CPU threads for onnxruntime")
    predict.add_argument(
        "--backend",
        choices=["onnxruntime", "onnxruntime-tensorrt", "tensorrt"],
        help="default: by the model's suffix",
    )
    predict.add_argument("--quiet", action="store_true", help="no progress bar")
    predict.set_defaults(run=_run_predict)


def _threshold(text: str) -> float | None:
    """argparse type: a float in [0, 1] or 'none'."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number in [0, 1] or none, got {text!r}"
        ) from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {value}")
    return value


def _run_predict(args: argparse.Namespace) -> int:
    from maskdepth.runtime.predict_cli import run_predict

    result = run_predict(
        args.model,
        args.bg,
        args.out,
        scene=args.scene,
        scenes=args.scenes,
        video=args.video,
        save=args.save,
        batch=args.batch,
        threshold=args.threshold,
        device=args.device,
        threads=args.threads,
        backend=args.backend,
        progress=not args.quiet,
    )
    if "video" in result:
        what = f"{result['video']} ({result['count']} frames)"
    else:
        what = f"{result['count']} scenes to {result['out']}"
    print(
        f"wrote {what} in {result['seconds']:.1f} s ({result['per_s']:.1f}/s) "
        f"on {result['device']} via {result['provider']}"
    )
    return 0


def _bench_parser(sub: argparse._SubParsersAction) -> None:
    from maskdepth.benchmarks.bench import add_bench_arguments

    bench = sub.add_parser(
        "bench",
        help="latency and accuracy parity of model files side by side",
        description="One row per model file x backend x batch (and the PyTorch reference): "
        "latency, throughput, IoU/RMSE and their change; writes bench.md, bench.json, bench.png.",
    )
    add_bench_arguments(bench, positive)
    bench.set_defaults(run=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from maskdepth.benchmarks.bench import bench, options_from_args, to_markdown

    report = bench(args.models, args.out, options_from_args(args))
    print(to_markdown(report))
    print(f"wrote {args.out / 'bench.md'}, bench.json, bench.png")
    failed = [r for r in report["rows"] if r["status"].startswith("failed")]
    return 1 if failed else 0


def _eval_parser(sub: argparse._SubParsersAction) -> None:
    evaluate = sub.add_parser("eval", help="score a checkpoint on a dataset")
    evaluate.add_argument("checkpoint", type=Path, help="a maskdepth checkpoint (.pt)")
    evaluate.add_argument("--data", help="dataset folder or 'synth' (default: the training data)")
    evaluate.add_argument("--split", choices=["val", "all"], default="val")
    evaluate.add_argument("--json", type=Path, help="also write the metrics here")
    evaluate.add_argument("--batch", type=positive, default=16)
    evaluate.add_argument("--workers", type=int, default=2, help="loader processes (0: none)")
    evaluate.add_argument("--device", choices=DEVICES, default="auto")
    evaluate.add_argument("--skip-bad", action="store_true", help="skip broken scenes, count them")
    evaluate.add_argument(
        "--raw-weights", action="store_true", help="the trained weights, not their EMA"
    )
    evaluate.set_defaults(run=_run_eval)


def _run_eval(args: argparse.Namespace) -> int:
    from maskdepth.train.evaluate import evaluate, format_result, write_json

    result = evaluate(
        args.checkpoint,
        args.data,
        args.split,
        batch=args.batch,
        workers=args.workers,
        device=args.device,
        skip_bad=args.skip_bad,
        use_ema=not args.raw_weights,
    )
    print(format_result(result))
    if args.json:
        write_json(args.json, result)
    return 0


def _run_train(args: argparse.Namespace) -> int:
    from maskdepth.train.config import config_from_args
    from maskdepth.train.stages import train_stages

    train_stages(config_from_args(args))
    return 0


def _report(result: dict, out: Path) -> None:
    print(
        f"wrote {result['scenes']:,} scenes ({result['backgrounds']} backgrounds) to {out} "
        f"in {result['seconds']:.1f} s: {result['scenes_per_s']:.1f} scenes/s"
    )
    if result.get("skipped"):
        shown = ", ".join(result.get("skipped_paths", []))
        print(f"skipped {result['skipped']} unusable input images: {shown}", file=sys.stderr)


def _run_compose(args: argparse.Namespace) -> int:
    from maskdepth.train.data.compose import compose

    result = compose(
        args.out,
        args.backgrounds,
        args.foregrounds,
        size=args.size,
        positions=args.positions,
        flip=args.flip,
        fg_size=args.fg_size or args.size // 2,
        seed=args.seed,
        white_key=args.white_key,
        image_format="png" if args.png else "jpg",
        depth_model=args.depth_model,
        depth_output=args.depth_output,
        workers=args.workers,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
    )
    _report(result, args.out)
    return 0


def _run_synth(args: argparse.Namespace) -> int:
    from maskdepth.train.data.synth import synthesize

    result = synthesize(
        args.out,
        args.count,
        size=args.size,
        seed=args.seed,
        per_background=args.per_background,
        image_format="jpg" if args.jpg else "png",
        workers=args.workers,
        overwrite=args.overwrite,
    )
    _report(result, args.out)
    return 0


def _open_dataset(args: argparse.Namespace):
    from maskdepth.train.data.sources import open_source

    return open_source(args.data, binarize_mask=args.binarize, skip_bad=args.skip_bad)


def _run_info(args: argparse.Namespace) -> int:
    from maskdepth.train.data.inspect import describe, format_info

    info = describe(_open_dataset(args), sample_count=args.sample, skip_bad=args.skip_bad)
    print(json.dumps(info) if args.json else format_info(info))
    return 0


def _run_show(args: argparse.Namespace) -> int:
    from maskdepth.train.data.inspect import show

    print(f"wrote {show(_open_dataset(args), args.out, args.count, skip_bad=args.skip_bad)}")
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from maskdepth.benchmarks.demo import DemoPlan, run_demo

    if not args.minutes > 0:
        raise MaskDepthError(f"--minutes {args.minutes}: expected a positive number")
    return run_demo(
        args.out,
        DemoPlan(minutes=args.minutes, count=args.count, size=args.size, device=args.device),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _quiet_opencv()
    name = " ".join(filter(None, ["maskdepth", args.command, getattr(args, "verb", None)]))
    try:
        if getattr(args, "device", None):
            check_device(args.device)
        return args.run(args)
    except (MaskDepthError, MissingDependencyError, FileNotFoundError) as exc:
        print(f"{name}: error: {exc}", file=sys.stderr)
    except OSError as exc:  # a folder that is a file, a disk that is full, no permission, ...
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    return 2


def _quiet_opencv() -> None:
    """OpenCV prints its own warnings (a truncated PNG) before ours; our errors say it once."""
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
