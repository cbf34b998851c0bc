# long file: one standalone script a GPU machine runs alone; six sections of short functions.
"""Prove the GPU half of maskdepth on one CUDA GPU within a time budget, and say why for every
part that cannot run there.

    python -m maskdepth.benchmarks.scripts.gpu_check --out runs/gpu_check [--minutes 8]
    python -m maskdepth.benchmarks.scripts.gpu_check --out /tmp/check --device cpu \\
        --pytest-files test_doctor.py  # a dry run at toy sizes

Six sections of rows, written to ``DIR/gpu_check.json`` and ``DIR/gpu_check.md`` after every
row (atomically: a killed run keeps what it measured), each made by the project's own code:

1. machine: ``measure.machine()`` and what torch sees of CUDA.
2. training throughput of u2netp-md on one synthetic batch (64 and 224 px, batch 32 and 64):
   the trainer's state (``TrainState``: model, Adam, GradScaler, ``amp_dtype``) and its step,
   fp32 NCHW eager against AMP channels_last and ``torch.compile`` of it, timed by
   ``torch.utils.benchmark``; images/s and peak memory.
3. a short training run: ``synthesize``, then ``train_stages`` (``maskdepth train``) in the
   section's time; its validation IoU and RMSE.
4. PyTorch inference at 224 px, batch 1 and 32: the exported form (``InferenceModel``) in fp32,
   fp16 and CUDA graphs of both, timed by ``measure.time_calls``, against fp32 eager.
5. exported: ``export`` (``maskdepth export``: ONNX fp32, an fp16 engine, each through its parity
   gate), then ``maskdepth bench``'s rows (``bench_rows.model_rows``) for onnxruntime's CPU,
   CUDA and TensorRT providers and native TensorRT, against the PyTorch reference.
6. ``pytest -m gpu`` on the repository's tests (``--pytest-files`` picks some): its summary
   line; the log in ``DIR/pytest_gpu.log``. On the CPU the GPU tests report themselves skipped.

``--minutes`` is a hard total: each section has a share (time one leaves passes on), and a row
that would not fit says "out of time" instead of running. A row that cannot run carries
``status`` and ``why``; one that fails does not stop the others. ``--device cpu`` runs it all at
toy sizes; CUDA-only rows say "needs CUDA". Scratch data and models go to ``DIR/work``.

Exit code: 0 when every row ran or said why it could not, 1 when a row failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic

MODEL = "u2netp-md"
SECTIONS = (  # key, title, share of --minutes
    ("machine", "1. Machine", 0.02),
    ("train_throughput", f"2. Training throughput: {MODEL} on one synthetic batch", 0.28),
    ("train_run", "3. A short training run from scratch", 0.27),
    ("inference", "4. PyTorch inference", 0.10),
    ("exported", "5. Exported model: onnxruntime and TensorRT", 0.18),
    ("pytest", "6. pytest -m gpu", 0.15),
)
FP32, AMP, COMPILED = "fp32 NCHW eager", "amp channels_last", "amp channels_last compile"
INFERENCE = ("fp32", "fp16", "fp32 CUDA graph", "fp16 CUDA graph")
CPU_EP, CUDA_EP, TRT_EP = (
    "CPUExecutionProvider",
    "CUDAExecutionProvider",
    "TensorrtExecutionProvider",
)
BACKENDS = (  # row label, Predictor backend, device, the provider that must run it
    (f"onnxruntime {CPU_EP}", "onnxruntime", "cpu", CPU_EP),
    (f"onnxruntime {CUDA_EP}", "onnxruntime", "cuda", CUDA_EP),
    (f"onnxruntime {TRT_EP}", "onnxruntime-tensorrt", "cuda", TRT_EP),
    ("TensorRT native (fp16 engine)", "tensorrt", "cuda", None),
)
NEEDS_CUDA, OUT_OF_TIME = "needs CUDA (--device cpu)", "out of time"
TESTS = Path(__file__).resolve().parents[2] / "tests"  # benchmarks/scripts/ -> the repository
EXPECTED = (MaskDepthError, MissingDependencyError)  # errors that say why in one line
LATENCY = ("mean_ms", "p50_ms", "p99_ms", "images_per_s")
BRIEF_KEYS = (
    "value",
    "scenes_per_s",
    "images_per_s",
    "p50_ms",
    "p99_ms",
    "peak_gib",
    "compile_s",
    "val_iou",
    "val_rmse",
    "max_abs",
    "parity",
    "summary",
)


@dataclass(frozen=True)
class Scale:
    """How big each section's work is: the real sizes on CUDA, toy sizes on the CPU."""

    sizes: tuple[int, ...]  # training throughput: square sides and batch sizes
    batches: tuple[int, ...]
    steps: int  # timed training steps per throughput row
    warmup: int  # untimed steps after the first (which builds kernels or compiles)
    row_seconds: float  # timed seconds per latency row, about
    run: tuple[int, int, int, int | None]  # training run: size, batch, scenes, step cap
    infer_size: int
    infer_batches: tuple[int, ...]
    parity_count: int  # held-out samples for parity
    guess_s: dict[str, int]  # a row's time before one was measured


GUESS_CUDA = dict(step=8, compile=90, synth=30, run=30, export=30, engine=120, pytest=20)
GUESS_CPU = dict(step=3, compile=120, synth=3, run=3, export=5, engine=30, pytest=10)
CUDA_SCALE = Scale(
    (64, 224), (32, 64), 30, 3, 3.0, (224, 32, 2000, None), 224, (1, 32), 64, GUESS_CUDA
)
CPU_SCALE = Scale((32,), (2,), 2, 0, 0.3, (32, 4, 40, 6), 32, (1, 2), 8, GUESS_CPU)


@dataclass
class Check:
    """One run: options, the clock, the report (written after every row) and what earlier
    sections made (``made``: data, checkpoint, onnx; ``missing``: why one is not there)."""

    out: Path
    device: str  # "cuda" | "cpu"
    minutes: float
    compile: bool
    pytest_files: list[str] | None  # None: no pytest; []: every test file
    scale: Scale = CPU_SCALE
    started: float = field(default_factory=time.perf_counter)
    section_end: float = 0.0
    made: dict[str, Path] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def begin(self, key: str) -> None:
        """Start section ``key``: its deadline is its share plus what earlier ones left."""
        shares = [share for _, _, share in SECTIONS]
        upto = sum(shares[: [k for k, _, _ in SECTIONS].index(key) + 1]) / sum(shares)
        self.section_end = self.started + 60 * self.minutes * upto
        self.report["sections"][key] |= {"status": "running", "budget_s": round(self.left(), 1)}

    def left(self) -> float:
        return max(self.section_end - time.perf_counter(), 0.0)

    def fits(self, key: str, name: str, seconds: float) -> bool:
        """True when ``seconds`` fit in the section; else an out-of-time row says so."""
        if self.left() >= seconds:
            return True
        why = f"needs ~{seconds:.0f} s, {self.left():.0f} s left of this section's share"
        self.add(key, skipped(name, why, OUT_OF_TIME))
        return False

    def add(self, key: str, row: dict) -> dict:
        self.report["sections"][key]["rows"].append(row)
        elapsed = time.perf_counter() - self.started
        print(f"gpu_check {elapsed:6.1f}s {key} | {row['name']}: {_brief(row)}", file=sys.stderr)
        self.write()
        return row

    def write(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        text = json.dumps(self.report, indent=1, default=str) + "\n"
        write_bytes_atomic(self.out / "gpu_check.json", text.encode())
        write_bytes_atomic(self.out / "gpu_check.md", to_markdown(self.report).encode())


def skipped(name: str, why: str, status: str = "skipped") -> dict:
    """A row that did not run: its status ("skipped", "failed", "out of time") and why."""
    return {"name": name, "status": status, "why": why}


def attempt(name: str, work: Callable[[], dict]) -> dict:
    """``work()``'s fields as an ok row (it may set its own status), or a failed row with the
    error's first line (and the traceback of an unexpected error)."""
    start = time.perf_counter()
    try:
        row = {"name": name, "status": "ok", **work()}
    except Exception as exc:
        line = (str(exc).strip().splitlines() or [""])[0][:400]
        row = skipped(name, line if isinstance(exc, EXPECTED) else f"{type(exc).__name__}: {line}")
        row["status"] = "failed"
        if not isinstance(exc, EXPECTED):
            row["traceback"] = traceback.format_exc()[-3000:]
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


def _peak(device) -> float | str:
    """GiB the device allocated at most since the last reset, or why there is no such number."""
    import torch

    if device.type != "cuda":
        return "needs CUDA"
    peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    torch.cuda.reset_peak_memory_stats(device)
    return peak


def section_machine(check: Check) -> None:
    import torch

    from maskdepth.benchmarks.measure import machine

    info = machine()
    info["versions"] = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    info |= {"torch": torch.__version__, "torch CUDA": torch.version.cuda or "none (CPU build)"}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info |= {
            "capability": f"{props.major}.{props.minor}",
            "bf16": torch.cuda.is_bf16_supported(),
            "memory_gib": round(props.total_memory / 2**30, 1),
            "cudnn": torch.backends.cudnn.version(),
            "multiprocessors": props.multi_processor_count,
        }
    else:
        info["torch.cuda"] = "not available"
    for name, value in info.items():
        check.add("machine", {"name": name, "status": "ok", "value": value})


def train_throughput(check: Check, variant: str, size: int, batch: int) -> dict:
    """Images/s of the trainer's step (forward under its autocast, the project's loss, backward,
    ``TrainState.step_optimizer``) on one fixed batch, by ``torch.utils.benchmark``."""
    import torch
    from torch.utils.benchmark import Timer

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.device import CHANNELS_LAST, autocast
    from maskdepth.train.distributed import Dist
    from maskdepth.train.losses import compute_loss
    from maskdepth.train.state import TrainState

    device, amp = torch.device(check.device), variant != FP32
    config = TrainConfig(model=MODEL, size=size, batch=batch, amp=amp, device=check.device)
    torch.manual_seed(0)
    state = TrainState(config, Dist(), device, steps_per_epoch=1, started=time.perf_counter())
    fmt = CHANNELS_LAST if amp else torch.contiguous_format
    state.model.to(memory_format=fmt)  # type: ignore[call-overload]  # the seed's NCHW for fp32
    if variant == COMPILED:
        torch.compiler.reset()  # each compile row is measured from scratch
        state.net = torch.compile(state.model)  # type: ignore[assignment]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 6, size, size, generator=generator)
    inputs = inputs.to(device).contiguous(memory_format=fmt)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float().to(device)
    depth = torch.rand(batch, 1, size, size, generator=generator).to(device)

    def step() -> None:
        with autocast(device, state.dtype):
            outputs = state.net(inputs)
        loss, _ = compute_loss(outputs, mask, depth, state.loss_config)
        state.scaler.scale(loss).backward()
        state.step_optimizer()

    _peak(device)
    # The Timer synchronises CUDA around its timing; it runs one thread unless told.
    timer = Timer("step()", globals={"step": step}, num_threads=torch.get_num_threads())
    first = timer.timeit(1).mean
    if check.scale.warmup:
        timer.timeit(check.scale.warmup)
    seconds = timer.timeit(check.scale.steps).mean
    precision = str(state.dtype).removeprefix("torch.") if state.dtype else "fp32"
    return {
        "size": size,
        "batch": batch,
        "precision": precision,
        "images_per_s": round(batch / seconds, 2),
        "step_ms": round(1000 * seconds, 2),
        "steps": check.scale.steps,
        "compile_s" if variant == COMPILED else "first_step_s": round(first, 2),
        "peak_gib": _peak(device),
    }


def section_throughput(check: Check) -> None:
    key, scale, guess = "train_throughput", check.scale, dict(check.scale.guess_s)
    shapes = [(size, batch) for size in scale.sizes for batch in scale.batches]
    for variant, size, batch in [(v, s, b) for v in (FP32, AMP, COMPILED) for s, b in shapes]:
        name = f"{variant}, {size} px, batch {batch}"
        if variant == COMPILED and not check.compile:
            why = "torch.compile off (--no-compile; off by default with --device cpu)"
            check.add(key, skipped(name, why))
        elif variant == COMPILED and "compile failed" in guess:
            check.add(key, skipped(name, f"torch.compile failed above: {guess['compile failed']}"))
        elif check.fits(key, name, guess["compile" if variant == COMPILED else "step"]):
            row = check.add(
                key, attempt(name, partial(train_throughput, check, variant, size, batch))
            )
            if variant == COMPILED and row["status"] == "failed":
                guess["compile failed"] = row["why"]
            elif row["status"] == "ok" and variant == COMPILED:
                guess["compile"] = 1.2 * row["compile_s"]
            elif row["status"] == "ok":
                guess["step"] = row["first_step_s"] + scale.row_seconds


def make_data(check: Check) -> dict:
    """The project's synthetic scenes, written with every core (``maskdepth data synth``)."""
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.data.synth import synthesize

    size, _, count, _ = check.scale.run
    folder, workers = check.out / "work" / "synth", default_workers()
    result = synthesize(
        folder, count, size=size, seed=0, workers=workers, overwrite=True, progress=False
    )
    check.made["data"] = folder
    return {
        "scenes": result["scenes"],
        "size": size,
        "workers": workers,
        "scenes_per_s": result["scenes_per_s"],
        "folder": str(folder),
    }


def train_run(check: Check, budget_s: float) -> dict:
    """``maskdepth train`` (``train_stages``) from scratch within ``budget_s``."""
    import shutil

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.stages import train_stages

    (size, batch, _, steps), run = check.scale.run, check.out / "work" / "run"
    shutil.rmtree(run, ignore_errors=True)  # the trainer refuses a folder that holds a run
    config = TrainConfig(
        data=str(check.made["data"]),
        model=MODEL,
        size=size,
        batch=batch,
        out=str(run),
        device=check.device,
        amp=check.cuda,
        steps=steps,
        max_minutes=budget_s / 60,
        workers=default_workers() if check.cuda else 0,
        samples=2,
        progress=False,
    )
    result = train_stages(config)
    check.made["checkpoint"], metrics = Path(result["best_path"]), result["metrics"]
    return {
        "size": size,
        "batch": batch,
        "amp": check.cuda,
        "budget_s": round(budget_s, 1),
        "steps": result["step"],
        **{k: result[k] for k in ("epochs", "stopped", "images_per_s", "data_wait")},
        "val_iou": metrics.get("iou"),
        "val_rmse": metrics.get("rmse"),
        "checkpoint": str(check.made["checkpoint"]),
    }


def section_train_run(check: Check) -> None:
    key, guess = "train_run", check.scale.guess_s
    name = f"train {MODEL} at {check.scale.run[0]} px from scratch"
    check.missing["checkpoint"] = f"no checkpoint: the training run was {OUT_OF_TIME}"
    if not check.fits(key, "synthesize data", guess["synth"]):
        check.add(key, skipped(name, f"no data: synthesizing was {OUT_OF_TIME}", OUT_OF_TIME))
    elif (made := check.add(key, attempt("synthesize data", partial(make_data, check))))[
        "status"
    ] != "ok":
        check.missing["checkpoint"] = f"no checkpoint: no data ({made['why']})"
        check.add(key, skipped(name, check.missing["checkpoint"]))
    elif check.fits(key, name, guess["run"] / 0.8):
        row = check.add(key, attempt(name, partial(train_run, check, 0.8 * check.left())))
        check.missing["checkpoint"] = f"no checkpoint: the training run {row['status']}"


def _cuda_graph(net, inputs: list) -> Callable[[], Any]:
    """A CUDA graph of ``net(*inputs)`` captured after warm-up on a side stream; a call replays
    it on the same input tensors and returns the same output tensors."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            net(*inputs)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = net(*inputs)

    def replay() -> Any:
        graph.replay()
        return outputs

    return replay


def inference_latency(check: Check, model, variant: str, batch: int) -> dict:
    """Latency of the exported form (bg, scene -> mask, depth) on inputs already on the
    device, and its largest difference from fp32 eager on the same inputs."""
    import torch

    from maskdepth.benchmarks.measure import latency_stats, time_calls
    from maskdepth.train.device import CHANNELS_LAST
    from maskdepth.train.models.u2net import InferenceModel

    device, size = torch.device(check.device), check.scale.infer_size
    dtype = torch.float16 if variant.startswith("fp16") else torch.float32
    generator = torch.Generator().manual_seed(batch)
    planes = [torch.rand(batch, 3, size, size, generator=generator) * 4 - 2 for _ in range(2)]
    inputs = [p.to(device, dtype).contiguous(memory_format=CHANNELS_LAST) for p in planes]
    fp32 = InferenceModel(model).to(device).eval()
    net = copy.deepcopy(fp32).to(dtype).to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    _peak(device)
    with torch.no_grad():
        reference = fp32(*(t.float() for t in inputs))
        call = _cuda_graph(net, inputs) if "graph" in variant else partial(net, *inputs)
        sync = torch.cuda.synchronize if check.cuda else lambda: None
        times = time_calls(lambda: (call(), sync()), warmup=2, seconds=check.scale.row_seconds)
        diff = max(float((o.float() - r).abs().max()) for o, r in zip(call(), reference))
    stats = latency_stats(times, batch)
    return {
        "size": size,
        "batch": batch,
        **{k: round(stats[k], 3) for k in LATENCY},
        "calls": stats["calls"],
        "max_abs_vs_fp32": diff,
        "peak_gib": _peak(device),
    }


def section_inference(check: Check) -> None:
    import torch

    from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
    from maskdepth.train.models import create_model

    key, scale, checkpoint = "inference", check.scale, check.made.get("checkpoint")
    if not check.fits(key, "load the model", 1.0):
        return
    torch.manual_seed(0)  # without a trained model, seeded weights: latency does not care
    model = (
        model_from_checkpoint(load_checkpoint(checkpoint))[0] if checkpoint else create_model(MODEL)
    )
    for variant in INFERENCE:
        for batch in scale.infer_batches:
            name = f"{variant}, {scale.infer_size} px, batch {batch}, "
            name += "trained weights" if checkpoint else "random weights"
            if variant != "fp32" and not check.cuda:
                slow = (
                    ": fp16 convolutions on the CPU take seconds per call"
                    if variant == "fp16"
                    else ""
                )
                check.add(key, skipped(name, NEEDS_CUDA + slow))
            elif check.fits(key, name, scale.row_seconds + 2.0):
                check.add(
                    key, attempt(name, partial(inference_latency, check, model, variant, batch))
                )


def export_file(check: Check, fmt: str) -> dict:
    """``maskdepth export --format onnx`` (fp32) or ``engine --precision fp16``, each gated
    against PyTorch on held-out samples; the file's size, time and parity."""
    from maskdepth.export.pipeline import ExportOptions, export

    options = ExportOptions(
        format=fmt, data=check.made["data"], parity_count=check.scale.parity_count
    )
    if fmt == "engine":
        options.precision, options.max_batch = "fp16", max(check.scale.infer_batches)
    result = export(
        check.made["checkpoint"], check.out / "work" / "models" / f"model.{fmt}", options
    )
    row = {
        "file": str(result.path),
        "mb": round(result.size_bytes / 1e6, 2),
        "export_s": round(sum(result.seconds.values()), 1),
    }
    if result.comparison is not None:
        c = result.comparison
        row |= {
            "iou": round(c.candidate["iou"], 4),
            "d_iou": round(c.d_iou, 5),
            "max_abs": float(f"{c.measured()['max_abs']:.3g}"),
            "parity": "ok" if c else "; ".join(c.failures()),
        }
    if result.passed is False:
        return row | {"status": "failed", "why": f"parity against PyTorch: {row['parity']}"}
    check.made[fmt] = result.path
    return row


def why_not(check: Check, backend: str, device: str, provider: str | None) -> str | None:
    """Why ``backend`` cannot run here, in the words of the project's builder and runner and
    onnxruntime's provider list (None: it can)."""
    if device == "cuda" and not check.cuda:
        return NEEDS_CUDA
    try:
        if backend == "tensorrt":
            from maskdepth.export.tensorrt_build import load_flavour
            from maskdepth.runtime.engine_sidecar import target_problem
            from maskdepth.runtime.runners.cuda import open_cuda_memory

            flavour = load_flavour()
            gpu = flavour.gpu
            if gpu is None:
                return "the CUDA driver sees no GPU"
            open_cuda_memory(gpu.index).close()
            return target_problem(flavour.name, flavour.target(), gpu.compute_capability, gpu.name)
        import onnxruntime as ort
    except Exception as exc:  # the builder's one line, or an import that fails
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    available = ort.get_available_providers()
    if provider in available:
        return None
    return f"onnxruntime {ort.__version__} has no {provider} (it has {', '.join(available)})"


def backend_rows(
    check: Check, label: str, path: Path, backend: str, device: str, provider: str | None
) -> dict:
    """``maskdepth bench``'s rows of ``path`` on ``backend``: latency per batch, and parity
    against the PyTorch reference on held-out samples."""
    from maskdepth.benchmarks.bench import BenchOptions
    from maskdepth.benchmarks.bench_rows import Context, model_rows

    scale = check.scale
    options = BenchOptions(
        data=check.made["data"],
        reference=check.made["checkpoint"],
        batches=scale.infer_batches,
        count=scale.parity_count,
        warmup=2,
        seconds=scale.row_seconds,
        device=device,
    )
    rows = []
    for row in model_rows(path, backend, Context(options)):
        name = f"{label}, {row.precision}, batch {row.batch}"
        if row.status.startswith("failed"):
            rows.append(skipped(name, row.status.removeprefix("failed: "), "failed"))
        elif provider and row.provider != provider:
            why = f"onnxruntime fell back to {row.provider}: {provider} did not start"
            return {"rows": [skipped(label, why)]}
        else:
            stats, parity = row.stats(), "ok" if row.status == "ok" else row.status
            rows.append(
                {
                    "name": name,
                    "status": "ok",
                    "provider": row.provider,
                    "device": row.device,
                    "batch": row.batch,
                    **{k: round(stats[k], 3) for k in LATENCY},
                    "calls": stats["calls"],
                    "iou": row.iou,
                    "d_iou": row.d_iou,
                    "rmse": row.rmse,
                    "d_rmse": row.d_rmse,
                    "max_abs": row.max_abs,
                    "parity": parity,
                }
            )
    return {"rows": rows}


def section_exported(check: Check) -> None:
    key, guess = "exported", check.scale.guess_s
    if "checkpoint" not in check.made:  # out of time too: say so, with the cause
        status = "skipped" if check.left() >= guess["export"] else OUT_OF_TIME
        for label in ["export ONNX fp32"] + [label for label, *_ in BACKENDS]:
            check.add(key, skipped(label, check.missing["checkpoint"], status))
        return
    check.missing["onnx"] = f"no ONNX file: the export was {OUT_OF_TIME}"
    if check.fits(key, "export ONNX fp32", guess["export"]):
        row = check.add(key, attempt("export ONNX fp32", partial(export_file, check, "onnx")))
        check.missing["onnx"] = f"no ONNX file: the export {row['status']}: {row.get('why', '')}"
    for label, backend, device, provider in BACKENDS:
        why = why_not(check, backend, device, provider)
        if why is not None or "onnx" not in check.made:
            check.add(key, skipped(label, why or check.missing["onnx"]))
            continue
        if backend == "tensorrt" and check.fits(key, f"build {label}", guess["engine"]):
            check.add(key, attempt(f"build {label}", partial(export_file, check, "engine")))
        path = check.made.get("engine" if backend == "tensorrt" else "onnx")
        if path is not None and check.fits(key, label, 2 * check.scale.row_seconds + 5):
            work = partial(backend_rows, check, label, path, backend, device, provider)
            result = attempt(label, work)  # its rows, or one failed row
            for row in result.get("rows", [result]):
                check.add(key, row)


def run_pytest(files: list[str], timeout: float, log: Path) -> dict:
    """``pytest -m gpu`` on the repository's tests (or ``files`` of them) in a subprocess."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += ["-k", "not gpu_check", *[str(TESTS / name) for name in files or ["."]]]
    try:  # not this check's own test, which would run the check again
        done = subprocess.run(
            command, cwd=TESTS.parent, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        write_bytes_atomic(
            log, b"".join(s for s in (exc.stdout, exc.stderr) if isinstance(s, bytes))
        )
        return {
            "status": OUT_OF_TIME,
            "why": f"pytest still running after {timeout:.0f} s; stopped",
        }
    output = done.stdout + done.stderr
    write_bytes_atomic(log, output.encode())
    lines = [line.strip().strip("=").strip() for line in output.splitlines() if line.strip()]
    pattern = r"\d+ (passed|failed|skipped|deselected|errors?)|no tests ran"
    summary = next((line for line in reversed(lines) if re.search(pattern, line)), "(no summary)")
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", summary)}
    row = {
        "tests": str(TESTS),
        "files": files or "all",
        "returncode": done.returncode,
        "summary": summary,
        **counts,
        "log": str(log),
    }
    return row | ({"status": "failed", "why": summary} if done.returncode not in (0, 5) else {})


def section_pytest(check: Check) -> None:
    key, name = "pytest", "pytest -m gpu"
    if check.pytest_files is None:
        check.add(key, skipped(name, "--no-pytest"))
    elif not (TESTS / "conftest.py").is_file():
        check.add(key, skipped(name, f"no tests at {TESTS}: run from a checkout of the repository"))
    elif check.fits(key, name, check.scale.guess_s["pytest"]):
        work = partial(run_pytest, check.pytest_files, check.left(), check.out / "pytest_gpu.log")
        check.add(key, attempt(name, work))


def _cell(value) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "yes", False: "no", None: ""}[value]
    if isinstance(value, float):
        return (
            f"{value:.1f}"
            if abs(value) >= 100
            else f"{value:.3f}"
            if abs(value) >= 0.01 or not value
            else f"{value:.3g}"
        )
    text = json.dumps(value, default=str) if isinstance(value, (dict, list, tuple)) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _brief(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('why', '')}"
    return "ok: " + ", ".join(f"{k} {_cell(row[k])}" for k in BRIEF_KEYS if k in row)


def to_markdown(report: dict) -> str:
    """The report as markdown: one table per section (name, status, every field, why)."""
    options, state = report["options"], "finished" if report["finished"] else "not finished"
    lines = [
        f"# maskdepth gpu_check: --device {options['device']}, --minutes {options['minutes']:g}",
        "",
        f"{state}; {report['elapsed_s']:.0f} s so far. Latency: the model call alone, "
        "after warm-up (ms per call).",
    ]
    for section in report["sections"].values():
        rows, budget, took = section["rows"], section["budget_s"], section["seconds"]
        timing = section["status"] + (f", budget {budget:.0f} s" if budget is not None else "")
        timing += f", took {took:.0f} s" if took is not None else ""
        hidden = {"name", "status", "why", "traceback"}
        head = [
            "name",
            "status",
            *dict.fromkeys(k for r in rows for k in r if k not in hidden),
            "why",
        ]
        table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        table += ["| " + " | ".join(_cell(r.get(k)) for k in head) + " |" for r in rows]
        lines += [
            "",
            f"## {section['title']}",
            "",
            f"({timing})",
            "",
            *(table if rows else ["(no rows)"]),
        ]
    return "\n".join(lines) + "\n"


RUNNERS = {
    "machine": section_machine,
    "train_throughput": section_throughput,
    "train_run": section_train_run,
    "inference": section_inference,
    "exported": section_exported,
    "pytest": section_pytest,
}


def run_check(check: Check, options: dict) -> dict:
    """Every section in order, each within its share of the clock; returns the report."""
    check.report = {
        "tool": "maskdepth.benchmarks.scripts.gpu_check",
        "options": options,
        "elapsed_s": 0.0,
        "finished": False,
        "sections": {
            key: {
                "title": title,
                "status": "pending",
                "budget_s": None,
                "seconds": None,
                "rows": [],
            }
            for key, title, _ in SECTIONS
        },
    }
    for key, _, _ in SECTIONS:
        check.begin(key)
        started = time.perf_counter()
        try:
            RUNNERS[key](check)
        except Exception as exc:  # a bug in a section: say so and go on with the next
            traceback.print_exc(file=sys.stderr)
            check.add(key, skipped(f"section {key}", f"{type(exc).__name__}: {exc}", "failed"))
        check.report["sections"][key] |= {
            "status": "done",
            "seconds": round(time.perf_counter() - started, 1),
        }
    check.report["finished"] = True
    check.write()
    return check.report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m maskdepth.benchmarks.scripts.gpu_check",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[2:]),
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for gpu_check.md/json")
    parser.add_argument("--minutes", type=float, default=8.0, help="hard total budget")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile rows (default: on with cuda, off with cpu)",
    )
    parser.add_argument("--no-pytest", dest="pytest", action="store_false", help="skip section 6")
    parser.add_argument(
        "--pytest-files",
        nargs="+",
        default=[],
        metavar="NAME",
        help="test files (in tests/) for section 6 (default: all)",
    )
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"--minutes {args.minutes}: expected a positive number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from maskdepth.train.device import pick_device
    from maskdepth.train.distributed import from_environment

    try:
        device = pick_device(args.device, from_environment()).type
    except MaskDepthError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    check = Check(
        args.out,
        device,
        args.minutes,
        device == "cuda" if args.compile is None else args.compile,
        args.pytest_files if args.pytest else None,
        CUDA_SCALE if device == "cuda" else CPU_SCALE,
    )
    options = {
        "device": device,
        "minutes": args.minutes,
        "out": str(args.out),
        "compile": check.compile,
        "pytest": check.pytest_files,
    }
    report = run_check(check, options)
    rows = [row for section in report["sections"].values() for row in section["rows"]]
    counts = {
        s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", OUT_OF_TIME, "failed")
    }
    print(
        f"gpu_check: {', '.join(f'{n} {s}' for s, n in counts.items())} in "
        f"{report['elapsed_s']:.0f} s; wrote gpu_check.md and gpu_check.json in {args.out}"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
