"""`maskdepth demo`: the whole story on this machine with no data, one timed stage after another.

Synthesise a dataset, train u2netp-md within the time budget, export ONNX fp32 / fp16 / INT8
(and a TensorRT engine where TensorRT and CUDA are present), benchmark them against the PyTorch
model, draw predictions, and write ``report.md``. A stage that fails is reported with its
reason, and the stages that do not need it still run.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from maskdepth.options import device_option, option, positive
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic

EXPORTS = [("fp32", "onnx"), ("fp16", "onnx-fp16"), ("int8", "onnx-int8")]
# Minutes the stages after training take on 2 CPU cores at 64 px, measured (eval 0.15, three
# exports 0.45-0.7, bench 0.4, pictures and report 0.05: 1.0-1.3), plus headroom for a busier
# machine; a smaller budget (tests) keeps 30% of it for them.
OVERHEAD_MINUTES = 2.0


@dataclass
class DemoPlan:
    minutes: float = option(15.0, type=float, help="budget for the whole demo")
    count: int = option(  # synthetic scenes (10% validation)
        3000, type=positive, help="synthetic scenes to make"
    )
    size: int | None = option(None, type=int, help="image side (default: 64 on CPU, 224 on GPU)")
    batch: int | None = None  # None: the trainer's default
    val_every: int = 200  # steps between validations (for the curves; ~10 s each at 64 px)
    device: str = device_option(help="where to train")  # auto: the GPU when torch sees one
    bench_seconds: float = 2.0  # timed per bench row
    tolerance: dict | None = None  # parity bounds of the exports (default: export's)

    @property
    def overhead_minutes(self) -> float:
        return min(OVERHEAD_MINUTES, 0.3 * self.minutes)


def _stage(name: str, log: list[dict], work: Callable[[], str]) -> bool:
    print(f"[{len(log) + 1}] {name} ...", flush=True)
    start = time.perf_counter()
    try:
        detail, ok = work(), True
    except (MaskDepthError, MissingDependencyError, FileNotFoundError, OSError) as exc:
        detail, ok = f"failed: {exc}", False
    except Exception as exc:  # a bug: keep going, but keep the whole story for the report
        detail, ok = f"failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", False
    seconds = time.perf_counter() - start
    log.append({"stage": name, "ok": ok, "seconds": round(seconds, 2), "detail": detail})
    print(f"    {'done' if ok else 'FAILED'} in {seconds:.1f} s: {detail.splitlines()[0]}")
    return ok


def _skip(name: str, log: list[dict], why: str) -> None:
    log.append({"stage": name, "ok": None, "seconds": 0.0, "detail": f"skipped: {why}"})
    print(f"[{len(log)}] {name}: skipped ({why})")


def run_demo(out: str | Path, plan: DemoPlan | None = None) -> int:
    """Run every stage under ``out`` and write ``report.md``; exit code 1 if any stage failed."""
    import torch

    plan = plan or DemoPlan()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    gpu = plan.device == "cuda" or (plan.device == "auto" and torch.cuda.is_available())
    size = plan.size or (224 if gpu else 64)
    paths = _Paths(out)
    paths.clear_results()  # a failed run must not show the last run's pictures or tables
    log: list[dict] = []
    facts: dict = {"size": size, "device": "cuda" if gpu else "cpu", "plan": plan.__dict__}

    def make_data() -> str:
        from maskdepth.train.data.synth import synthesize

        result = synthesize(paths.data, plan.count, size=size, seed=0, overwrite=True)
        return f"{result['scenes']} scenes at {size}x{size} in {paths.data}"

    def fit() -> str:
        budget = plan.minutes - plan.overhead_minutes - (time.perf_counter() - started) / 60
        result = _train(paths, plan, size, budget, facts)
        return result

    def evaluate_run() -> str:
        from maskdepth.train.evaluate import evaluate

        facts["eval"] = evaluate(paths.checkpoint, split="val", workers=0, progress=False)
        return f"val IoU {facts['eval']['iou']:.4f}, RMSE {facts['eval']['rmse']:.4f}"

    data_ok = _stage("synthesise a dataset", log, make_data)
    trained = data_ok and _stage("train u2netp-md", log, fit)
    if not data_ok:
        _skip("train u2netp-md", log, "no dataset")
    if trained:
        _stage("evaluate on the validation split", log, evaluate_run)
        exported = _exports(paths, log, facts, plan)
        _engine(paths, log, facts)
        _stage("draw predictions", log, lambda: _draw(paths, exported))
        if exported:
            _stage("benchmark against PyTorch", log, lambda: _bench(paths, exported, facts, plan))
        else:
            _skip("benchmark against PyTorch", log, "no exported model")
    facts["total_seconds"] = time.perf_counter() - started
    report = _write_report(paths, log, facts, size)
    print(f"report: {report}")
    return 0 if all(stage["ok"] is not False for stage in log) else 1


class _Paths:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.data = out / "data"
        self.run = out / "run"
        self.checkpoint = self.run / "best.pt"
        self.models = out / "models"
        self.bench = out / "bench"
        self.predictions = out / "predictions.png"
        self.curves = self.run / "curves.png"

    def clear_results(self) -> None:
        for stale in (self.predictions, self.out / "report.md", self.bench / "bench.md"):
            stale.unlink(missing_ok=True)


def _train(paths: _Paths, plan: DemoPlan, size: int, budget_minutes: float, facts: dict) -> str:
    """Train with the default recipe; the trainer's planner fits the schedule to the budget."""
    from maskdepth.train.config import TrainConfig
    from maskdepth.train.trainer import train

    if budget_minutes <= 0.2:
        raise MaskDepthError(f"no time left to train ({budget_minutes:.1f} min); raise --minutes")
    config = TrainConfig(
        data=str(paths.data),
        sizes=[size],
        out=str(paths.run),
        max_minutes=budget_minutes,
        val_every=plan.val_every,
        device=plan.device,
    )
    if plan.batch is not None:  # else the trainer's default
        config = replace(config, batch=plan.batch)
    facts["train_command"] = (
        f"maskdepth train --data {paths.data} --size {size} --max-minutes {budget_minutes:.1f} "
        f"--val-every {plan.val_every} --device {plan.device} --out {paths.run}"
        + (f" --batch {plan.batch}" if plan.batch else "")
    )
    result = train(config)
    facts["train"] = {
        "budget_min": budget_minutes,
        "steps": result["step"],
        "stopped": result["stopped"],
        "seconds": result["seconds"],
    }
    return (
        f"{result['step']} steps in {result['seconds'] / 60:.1f} of {budget_minutes:.1f} min "
        f"({result['stopped']}); val IoU {result['metrics'].get('iou', 0):.4f}, "
        f"RMSE {result['metrics'].get('rmse', 0):.4f}"
    )


def _exports(paths: _Paths, log: list[dict], facts: dict, plan: DemoPlan) -> dict[str, Path]:
    from maskdepth.export.pipeline import ExportOptions, export

    made: dict[str, Path] = {}
    facts["exports"] = {}
    for precision, fmt in EXPORTS:
        target = paths.models / f"model.{precision}.onnx"
        options = ExportOptions(
            format=fmt, data=paths.data, calib_count=128, tolerance=plan.tolerance
        )

        def work(target=target, options=options, precision=precision) -> str:
            result = export(paths.checkpoint, target, options)
            comparison = result.comparison
            if comparison is None:  # only an engine export skips parity, and these are ONNX
                raise MaskDepthError(f"{target.name}: parity was not checked")
            facts["exports"][precision] = {"mb": result.size_bytes / 1e6, **comparison.to_dict()}
            if not result.passed:
                raise MaskDepthError("; ".join(comparison.failures()))
            made[precision] = result.path
            return (
                f"{target.name} {result.size_bytes / 1e6:.2f} MB, dIoU "
                f"{comparison.d_iou:+.4f}, dRMSE {comparison.d_rmse:+.4f}"
            )

        _stage(f"export ONNX {precision}", log, work)
    return made


def _engine(paths: _Paths, log: list[dict], facts: dict) -> None:
    from maskdepth.runtime.runners.cuda import gpu_info

    if gpu_info() is None:
        _skip("build a TensorRT engine", log, "no CUDA GPU on this machine")
        return
    from maskdepth.export.pipeline import ExportOptions, export

    def work() -> str:
        result = export(
            paths.checkpoint,
            paths.models / "model.engine",
            ExportOptions(format="engine", data=paths.data, precision="fp16"),
        )
        return f"{result.path} ({result.size_bytes / 1e6:.1f} MB), parity {result.passed}"

    _stage("build a TensorRT engine", log, work)


def _draw(paths: _Paths, exported: dict[str, Path]) -> str:
    """bg | scene | true mask | predicted mask | true depth | predicted depth, from the
    deployable file (ONNX fp32 through the Predictor) or, without one, the PyTorch model."""
    import numpy as np

    from maskdepth.runtime.image import write_image
    from maskdepth.runtime.visualize import depth_colormap, grid, mask_picture
    from maskdepth.train.checkpoint import load_checkpoint
    from maskdepth.train.datasets import data_from_checkpoint

    source, _, val = data_from_checkpoint(load_checkpoint(paths.checkpoint))
    chosen = val[np.linspace(0, len(val) - 1, min(6, len(val))).astype(int)]
    samples = [source[int(i)] for i in chosen]
    predict = _predictor(paths, exported)
    rows = []
    for sample in samples:
        mask, depth = predict(sample.bg, sample.scene)
        rows.append(
            [
                sample.bg,
                sample.scene,
                mask_picture(sample.mask),
                mask_picture(mask),
                depth_colormap(sample.depth),
                depth_colormap(depth),
            ]
        )
    labels = ["background", "scene", "true mask", "predicted mask", "true depth", "predicted depth"]
    write_image(paths.predictions, grid(rows, labels, cell=160), jpeg_quality=92)
    return f"{len(rows)} validation scenes in {paths.predictions}"


def _predictor(paths: _Paths, exported: dict[str, Path]):
    if "fp32" in exported:
        from maskdepth.runtime.predictor import Predictor

        model = Predictor(exported["fp32"], device="cpu")

        def run(bg, scene):
            result = model.predict(scene, bg=bg)
            return result.mask, result.depth

        return run
    from maskdepth.runtime.preprocess import prepare_pair
    from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
    from maskdepth.train.torch_runner import TorchRunner

    network, pre = model_from_checkpoint(load_checkpoint(paths.checkpoint))
    runner = TorchRunner(network, device="cpu")
    runner.activate()

    def run_torch(bg, scene):
        inputs = prepare_pair(bg, scene, pre)[None]
        out = runner.infer({"bg": inputs[:, :3], "scene": inputs[:, 3:]})
        return out["mask"][0, 0], out["depth"][0, 0]

    return run_torch


def _bench(paths: _Paths, exported: dict[str, Path], facts: dict, plan: DemoPlan) -> str:
    from maskdepth.benchmarks.bench import BenchOptions, bench

    options = BenchOptions(
        data=paths.data,
        reference=paths.checkpoint,
        batches=(1, 8),
        count=64,
        seconds=plan.bench_seconds,
    )
    report = bench(list(exported.values()), paths.bench, options, progress=False)
    facts["bench"] = report
    rows = [r for r in report["rows"] if r["batch"] == 8 and r["latency"]]
    fastest = min(rows, key=lambda r: r["latency"]["mean_ms"])
    return f"{len(report['rows'])} rows; fastest at batch 8: {Path(fastest['model']).name}"


def _write_report(paths: _Paths, log: list[dict], facts: dict, size: int) -> Path:
    out = paths.out
    total = facts["total_seconds"]
    lines = [
        "# maskdepth demo",
        "",
        f"Device: {facts['device']}; images {size}x{size}; {total / 60:.1f} min in all.",
        "",
        "| stage | result | seconds | detail |",
        "|---|---|---:|---|",
    ]
    for stage in log:
        verdict = {True: "ok", False: "**failed**", None: "skipped"}[stage["ok"]]
        detail = stage["detail"].splitlines()[0].replace("|", "/")
        lines.append(f"| {stage['stage']} | {verdict} | {stage['seconds']:.1f} | {detail} |")
    for stage in log:
        if stage["ok"] is False:
            lines += ["", f"## {stage['stage']} failed", "", "```", stage["detail"], "```"]
    if "eval" in facts:
        e = facts["eval"]
        lines += [
            "",
            "## Accuracy (validation split, PyTorch fp32)",
            "",
            f"IoU {e['iou']:.4f} (target 0.90), Dice {e['dice']:.4f}, RMSE {e['rmse']:.4f}, "
            f"delta<1.25 {e['delta1']:.4f} on {e['count']} scenes.",
        ]
    if paths.curves.is_file():
        lines += ["", "## Training", "", f"![training curves](run/{paths.curves.name})"]
    if paths.predictions.is_file():
        lines += [
            "",
            "## Predictions (ONNX fp32 through the Predictor)",
            "",
            f"![predictions]({paths.predictions.name})",
        ]
    lines += _exports_table(facts)
    bench_md = paths.bench / "bench.md"
    if bench_md.is_file():
        lines += [
            "",
            "## Latency and parity (maskdepth bench)",
            "",
            bench_md.read_text(),
            "![latency against IoU](bench/bench.png)",
        ]
    lines += ["", "## Reproduce", "", "```", *_commands(paths, facts, size), "```", ""]
    path = out / "report.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    write_bytes_atomic(out / "stages.json", json.dumps(log, indent=2).encode())
    return path


def _exports_table(facts: dict) -> list[str]:
    """The export parity section: one row per exported ONNX file."""
    lines: list[str] = []
    if facts.get("exports"):
        lines += [
            "",
            "## Export parity (against PyTorch fp32, held-out validation scenes)",
            "",
            "| file | MB | max abs mask | max abs depth | IoU | dIoU | RMSE | dRMSE | ok |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for precision, e in facts["exports"].items():
            lines.append(
                f"| model.{precision}.onnx | {e['mb']:.2f} | {e['max_abs']['mask']:.2g} | "
                f"{e['max_abs']['depth']:.2g} | {e['candidate']['iou']:.4f} | {e['d_iou']:+.4f} "
                f"| {e['candidate']['rmse']:.4f} | {e['d_rmse']:+.4f} | "
                f"{'yes' if e['passed'] else 'no'} |"
            )
    return lines


def _commands(paths: _Paths, facts: dict, size: int) -> list[str]:
    count = facts["plan"]["count"]
    models = " ".join(str(paths.models / f"model.{p}.onnx") for p, _ in EXPORTS)
    return [
        f"maskdepth data synth --out {paths.data} --count {count} --size {size} --overwrite",
        facts.get("train_command", f"maskdepth train --data {paths.data} --out {paths.run}"),
        f"maskdepth eval {paths.checkpoint}",
        *(
            f"maskdepth export {paths.checkpoint} --format {fmt} --data {paths.data} "
            f"--calib-count 128 --out {paths.models / f'model.{p}.onnx'}"
            for p, fmt in EXPORTS
        ),
        f"maskdepth bench {models} --reference {paths.checkpoint} --data {paths.data} "
        f"--count 64 --seconds 2 --out {paths.bench}",
    ]
