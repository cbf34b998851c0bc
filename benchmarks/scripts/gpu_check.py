# long file: one standalone script a GPU machine runs alone; six sections of short functions.
"""Prove the GPU half of maskdepth on one CUDA GPU within a time budget, and say why for every
part that cannot run there.

    python -m maskdepth.benchmarks.scripts.gpu_check --out runs/gpu_check [--minutes 8] \\
        [--device cuda]
    python -m maskdepth.benchmarks.scripts.gpu_check --out /tmp/check --device cpu \\
        --no-pytest  # dry run

Six sections, each a list of rows, written to ``DIR/gpu_check.json`` and ``DIR/gpu_check.md``
after every row (atomically, so a crash or a killed run keeps what was measured):

1. machine: CPU, cores and library versions (``measure.machine()``), torch, CUDA, the GPU, its
   compute capability and memory.
2. training throughput of ``u2netp-md`` on one synthetic batch at 64 and 224 px, batch 32 and
   64: fp32 eager NCHW (the seed's way) against AMP (bf16 where the GPU has it, else fp16 with a
   GradScaler: the trainer's ``amp_dtype``) with channels_last, and ``torch.compile`` of the AMP
   variant (its compile time apart). The project's loss and Adam; images/s and peak memory.
3. a short training run from scratch: ``synthesize`` on every core, then the trainer itself
   with a time budget (``max_minutes``); its final validation IoU and RMSE.
4. PyTorch inference at 224 px, batch 1 and 32: fp32, fp16 (``model.half()``) and CUDA graphs of
   both; p50/p99 ms and images/s of the model call on inputs already on the device.
5. exported paths: ONNX fp32 through ``maskdepth export`` (with its parity gate), then
   onnxruntime's CPU, CUDA and TensorRT providers and native TensorRT (an fp16 engine) through
   the runtime's runners: latency and parity against the PyTorch model, or one row saying why not.
6. ``pytest -m gpu`` in a subprocess (but the tests of this check, which would run it again):
   its summary line; the full log in ``DIR/pytest_gpu.log``.

``--minutes`` is a hard total. Each section gets a share (time a section leaves unused passes
on to the next), the clock is checked before every row, and a row that would not fit is written
with status "out of time" instead of being run. A row that cannot run carries ``status`` and
``why`` instead of numbers; a row that fails does not stop the others. ``--device cpu`` runs it
all at toy sizes (32 px, batch 2, a few steps, a few dozen scenes) as a dry run of the script;
CUDA-only rows say "needs CUDA". Nothing is installed or downloaded. Scratch data, the training
run and the exported models go to ``DIR/work``.

Exit code: 0 when every row ran or said why it could not, 1 when a row failed, 2 for bad options.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import re
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from maskdepth.benchmarks.measure import repeat_batch
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic

if TYPE_CHECKING:
    from torch import nn

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
NEEDS_CUDA = "needs CUDA (--device cpu)"
OUT_OF_TIME = "out of time"
MIN_CALLS, MAX_CALLS = 5, 300  # timed calls per latency row
PYTEST_MIN_S = 20.0
BRIEF_KEYS = ("value", "scenes_per_s", "images_per_s", "p50_ms", "p99_ms", "peak_gib",
              "compile_s", "val_iou", "val_rmse", "max_abs", "parity", "summary")  # fmt: skip


@dataclass(frozen=True)
class Scale:
    """How big each section's work is: the real sizes on CUDA, toy sizes on the CPU."""

    sizes: tuple[int, ...]  # training throughput: square sides
    batches: tuple[int, ...]  # training throughput: batch sizes
    steps: int  # timed training steps per throughput row, at most
    warmup: int  # untimed steps after the first (which builds kernels or compiles)
    row_seconds: float  # timed seconds per throughput or latency row, about
    first_step_guess_s: float  # a first step's time before one was measured
    compile_guess_s: float  # a compile's time before one was measured
    synth_guess_s: float  # writing the dataset
    run_size: int  # the training run
    run_batch: int
    run_count: int  # synthetic scenes (10% validation)
    run_steps: int | None  # the training run's step cap (None: as many as fit)
    run_min_s: float  # the least training budget worth starting
    infer_size: int
    infer_batches: tuple[int, ...]
    parity_count: int  # held-out samples for parity
    export_guess_s: float
    engine_guess_s: float


CUDA_SCALE = Scale(
    sizes=(64, 224), batches=(32, 64), steps=30, warmup=3, row_seconds=3.0,
    first_step_guess_s=5.0, compile_guess_s=90.0, synth_guess_s=30.0, run_size=224,
    run_batch=32, run_count=2000, run_steps=None, run_min_s=30.0, infer_size=224,
    infer_batches=(1, 32), parity_count=64, export_guess_s=30.0, engine_guess_s=120.0,
)  # fmt: skip
CPU_SCALE = Scale(
    sizes=(32,), batches=(2,), steps=2, warmup=0, row_seconds=0.3, first_step_guess_s=1.0,
    compile_guess_s=120.0, synth_guess_s=3.0, run_size=32, run_batch=4, run_count=40,
    run_steps=6, run_min_s=3.0, infer_size=32, infer_batches=(1, 2), parity_count=8,
    export_guess_s=5.0, engine_guess_s=30.0,
)  # fmt: skip


# ------------------------------------------------------------------------------ clock and report


class Clock:
    """The ``--minutes`` budget: a deadline per section (its share plus what the sections
    before it left unused), never past the total."""

    def __init__(self, minutes: float) -> None:
        self.started = time.perf_counter()
        self.total = 60.0 * minutes
        self.section_end = self.started + self.total

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def begin(self, key: str) -> None:
        keys = [k for k, _, _ in SECTIONS]
        shares = [share for _, _, share in SECTIONS]
        upto = sum(shares[: keys.index(key) + 1]) / sum(shares)
        self.section_end = self.started + self.total * upto

    def left(self) -> float:
        """Seconds left in the current section."""
        return self.section_end - time.perf_counter()

    def allows(self, seconds: float) -> bool:
        return self.left() >= seconds


class Report:
    """Every section's rows, written as JSON and markdown after every row."""

    def __init__(self, out: Path, options: dict, clock: Clock) -> None:
        self.json_path, self.md_path = out / "gpu_check.json", out / "gpu_check.md"
        self.clock = clock
        self.data: dict = {
            "tool": "maskdepth.benchmarks.scripts.gpu_check",
            "options": options,
            "elapsed_s": 0.0,
            "finished": False,
            "sections": {
                key: {"title": title, "status": "pending", "budget_s": None, "seconds": None,
                      "rows": []}
                for key, title, _ in SECTIONS
            },
        }  # fmt: skip

    def start(self, key: str) -> None:
        section = self.data["sections"][key]
        section["status"], section["budget_s"] = "running", round(max(self.clock.left(), 0), 1)
        self.write()

    def finish(self, key: str, seconds: float) -> None:
        section = self.data["sections"][key]
        section["status"], section["seconds"] = "done", round(seconds, 1)
        self.write()

    def add(self, key: str, row: dict) -> dict:
        self.data["sections"][key]["rows"].append(row)
        print(
            f"gpu_check {self.clock.elapsed():6.1f}s {key} | {row['name']}: {_brief(row)}",
            file=sys.stderr,
            flush=True,
        )
        self.write()
        return row

    def write(self) -> None:
        self.data["elapsed_s"] = round(self.clock.elapsed(), 1)
        text = json.dumps(self.data, indent=1, default=str) + "\n"
        write_bytes_atomic(self.json_path, text.encode())
        write_bytes_atomic(self.md_path, to_markdown(self.data).encode())


@dataclass
class Check:
    """One run of the check: options, clock, report and what earlier sections made."""

    out: Path
    device: str  # "cuda" | "cpu"
    scale: Scale
    clock: Clock
    report: Report
    compile: bool
    pytest: bool
    checkpoint: Path | None = None  # the training run's best.pt
    data: Path | None = None  # the synthetic dataset
    onnx: Path | None = None  # the exported fp32 ONNX file (passed its gate)
    missing: dict[str, str] = field(default_factory=dict)  # why checkpoint/onnx are None

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @property
    def work(self) -> Path:
        return self.out / "work"

    def add(self, key: str, row: dict) -> dict:
        return self.report.add(key, row)

    def trained(self) -> Path:
        """The training run's checkpoint; the rows that need one run only when it exists."""
        if self.checkpoint is None:
            raise MaskDepthError(self.missing.get("checkpoint", "no checkpoint"))
        return self.checkpoint

    def fits(self, key: str, name: str, seconds: float) -> bool:
        """True when ``seconds`` fit in the section; else an out-of-time row says so."""
        if self.clock.allows(seconds):
            return True
        self.add(key, out_of_time(name, seconds, self.clock.left()))
        return False


def skipped(name: str, why: str, status: str = "skipped") -> dict:
    """A row that did not run: its status ("skipped", "failed", "out of time") and why."""
    return {"name": name, "status": status, "why": why}


def out_of_time(name: str, needs: float, left: float) -> dict:
    why = f"needs ~{needs:.0f} s, {max(left, 0.0):.0f} s left of this section's share of --minutes"
    return skipped(name, why, OUT_OF_TIME)


def attempt(name: str, work: Callable[[], dict]) -> dict:
    """``work()``'s fields as an ok row (it may set its own status and why), or a failed row
    with the error's first line: one row's failure never stops the others."""
    start = time.perf_counter()
    try:
        row = {"name": name, "status": "ok", **work()}
    except Exception as exc:
        row = skipped(name, _first_line(exc), "failed")
        if not isinstance(exc, (MaskDepthError, MissingDependencyError)):
            row["traceback"] = traceback.format_exc()[-3000:]
            traceback.print_exc(file=sys.stderr)
    row["seconds"] = round(time.perf_counter() - start, 2)
    _free_memory()
    return row


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    line = lines[0] if lines else ""
    if not isinstance(exc, (MaskDepthError, MissingDependencyError)):
        line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line[:400]


# ------------------------------------------------------------------------------ torch helpers


def _sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak(device) -> float | str:
    """GiB allocated at most since the last reset, or why there is no such number."""
    import torch

    if torch.device(device).type != "cuda":
        return "needs CUDA"
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3)


def _place(module, device, dtype=None, memory_format=None):
    """``module.to(device, dtype, memory_format=...)``, in place; returns it."""
    module = module.to(device) if dtype is None else module.to(device, dtype)
    if memory_format is not None:
        module = module.to(memory_format=memory_format)
    return module


def _free_memory() -> None:
    gc.collect()
    try:
        import torch
    except ImportError:
        return
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _latency(call: Callable[[], object], batch: int, seconds: float) -> dict:
    """p50/p99 ms and images/s of ``call`` (which runs ``batch`` images and waits for them),
    by the runtime benchmark's own timing and statistics, about ``seconds`` of calls."""
    from maskdepth.benchmarks.measure import Case, summary, time_interleaved

    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    repeats = int(min(MAX_CALLS, max(MIN_CALLS, seconds / max(once, 1e-6))))
    case = Case(call, batch, {})
    time_interleaved([case], warmup=2, repeats=repeats, settle=0.0)
    stats = summary(case)
    return {k: round(stats[k], 3) for k in ("mean_ms", "p50_ms", "p99_ms", "images_per_s")} | {
        "calls": stats["calls"]
    }


# ------------------------------------------------------------------------------ 1. machine


def machine_info() -> dict:
    """``measure.machine()`` (CPU, cores, GPU, versions) plus what torch sees of CUDA."""
    from maskdepth.benchmarks import measure

    try:
        info = measure.machine()
    except Exception as exc:  # it reads the GPU through ctypes: never stop the check for it
        info = measure.machine(gpu=None) | {"machine()": f"failed: {_first_line(exc)}"}
    versions = info.pop("versions", {})
    if versions:
        info["versions"] = ", ".join(f"{k} {v}" for k, v in versions.items())
    return info | torch_info()


def torch_info() -> dict:
    """torch, its CUDA and cuDNN, and the GPU it sees (name, capability, memory, bf16)."""
    import warnings

    import torch

    info: dict = {
        "torch": torch.__version__,
        "torch CUDA": torch.version.cuda or "none (CPU build)",
    }
    if not torch.cuda.is_available():
        return info | {"torch.cuda": "not available"}
    props = torch.cuda.get_device_properties(0)
    major, minor = torch.cuda.get_device_capability(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # allow_tf32 is deprecated in newer torch
        tf32 = getattr(torch.backends.cudnn, "allow_tf32", None)
    return info | {
        "cudnn": torch.backends.cudnn.version(),
        "devices": torch.cuda.device_count(),
        "device": torch.cuda.get_device_name(0),
        "capability": f"{major}.{minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "multiprocessors": props.multi_processor_count,
        "bf16": torch.cuda.is_bf16_supported(),
        "cudnn.benchmark": torch.backends.cudnn.benchmark,
        "cudnn tf32": tf32,
        "matmul precision": torch.get_float32_matmul_precision(),
    }


def section_machine(check: Check) -> None:
    for name, value in machine_info().items():
        check.add("machine", {"name": name, "status": "ok", "value": value})


# ------------------------------------------------------------------------------ 2. throughput


def _synthetic_batch(device, batch: int, size: int, memory_format) -> tuple:
    import torch

    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(batch, 6, size, size, generator=generator)
    mask = (torch.rand(batch, 1, size, size, generator=generator) > 0.9).float()
    depth = torch.rand(batch, 1, size, size, generator=generator)
    inputs = inputs.to(device).contiguous(memory_format=memory_format)
    return inputs, mask.to(device), depth.to(device)


def _time_steps(step: Callable[[], None], device, batch: int, scale: Scale) -> dict:
    """The first step apart (kernels, compilation), then up to ``scale.steps`` timed steps."""
    _reset_peak(device)
    start = time.perf_counter()
    step()
    _sync(device)
    first = time.perf_counter() - start
    for _ in range(scale.warmup):
        step()
    _sync(device)
    count, start = 0, time.perf_counter()
    while count < scale.steps and (count < 2 or time.perf_counter() - start < scale.row_seconds):
        step()
        count += 1
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        "images_per_s": round(count * batch / seconds, 2),
        "step_ms": round(1000 * seconds / count, 2),
        "steps": count,
        "first_step_s": round(first, 2),
    }


def train_throughput(device: str, variant: str, size: int, batch: int, scale: Scale) -> dict:
    """Images/s of forward, the project's loss, backward and an Adam step on one fixed batch,
    set up as the trainer does (``amp_dtype``, channels_last, GradScaler for fp16)."""
    import torch

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.losses import LossConfig, compute_loss
    from maskdepth.train.models import create_model
    from maskdepth.train.trainer import CHANNELS_LAST, amp_dtype, scales_loss

    dev = torch.device(device)
    dtype = amp_dtype(variant != FP32, dev)
    fmt = torch.contiguous_format if variant == FP32 else CHANNELS_LAST
    torch.manual_seed(0)
    model = _place(create_model(MODEL), dev, memory_format=fmt).train()
    if variant == COMPILED:
        torch.compiler.reset()  # each compile row is measured from scratch
    net = torch.compile(model) if variant == COMPILED else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(dev.type, enabled=scales_loss(dtype))
    defaults = TrainConfig()
    loss_config = LossConfig(
        mask=defaults.loss_mask, depth=defaults.loss_depth, side_weight=defaults.side_weight
    )
    inputs, mask, depth = _synthetic_batch(dev, batch, size, fmt)

    def step() -> None:
        with torch.autocast(dev.type, dtype=dtype, enabled=dtype is not None):
            outputs = net(inputs)
        loss, _ = compute_loss(outputs, mask, depth, loss_config)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    measured = _time_steps(step, dev, batch, scale)
    if variant == COMPILED:
        measured["compile_s"] = measured.pop("first_step_s")
    precision = str(dtype).removeprefix("torch.") if dtype is not None else "fp32"
    return {"size": size, "batch": batch, "precision": precision, **measured,
            "peak_gib": _peak(dev)}  # fmt: skip


def _throughput_jobs(scale: Scale) -> list[tuple[str, int, int]]:
    """The eager rows first, the compiled ones (slow to start) with what time is left."""
    shapes = [(size, batch) for size in scale.sizes for batch in scale.batches]
    return [(v, s, b) for v in (FP32, AMP) for s, b in shapes] + [
        (COMPILED, s, b) for s, b in shapes
    ]


def section_throughput(check: Check) -> None:
    key, scale = "train_throughput", check.scale
    first_step, compile_s, compile_failed = scale.first_step_guess_s, None, None
    for variant, size, batch in _throughput_jobs(scale):
        name = f"{variant}, {size} px, batch {batch}"
        if variant == COMPILED and not check.compile:
            why = "torch.compile off (--no-compile; off by default with --device cpu)"
            check.add(key, skipped(name, why))
            continue
        if variant == COMPILED and compile_failed:
            check.add(key, skipped(name, f"torch.compile failed above: {compile_failed}"))
            continue
        needs = scale.row_seconds + first_step
        if variant == COMPILED:
            needs = 1.2 * compile_s if compile_s else scale.compile_guess_s
        if not check.fits(key, name, needs):
            continue
        work = partial(train_throughput, check.device, variant, size, batch, scale)
        row = check.add(key, attempt(name, work))
        if variant == COMPILED:
            compile_s = row.get("compile_s", compile_s)
            compile_failed = row["why"] if row["status"] == "failed" else None
        elif row["status"] == "ok":
            first_step = row["first_step_s"]


# ------------------------------------------------------------------------------ 3. training run


def make_data(check: Check) -> dict:
    """The project's synthetic scenes, written with every core (``maskdepth data synth``)."""
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.data.synth import synthesize

    scale, workers = check.scale, default_workers()
    folder = check.work / "synth"
    result = synthesize(
        folder, scale.run_count, size=scale.run_size, seed=0, workers=workers,
        overwrite=True, progress=False,
    )  # fmt: skip
    check.data = folder
    return {"scenes": result["scenes"], "size": scale.run_size, "workers": workers,
            "scenes_per_s": result["scenes_per_s"], "folder": str(folder)}  # fmt: skip


def train_run(check: Check, budget_s: float) -> dict:
    """The trainer (``train_stages``, as ``maskdepth train``) from scratch within ``budget_s``."""
    import torch

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.stages import train_stages
    from maskdepth.train.trainer import amp_dtype

    scale, run = check.scale, check.work / "run"
    shutil.rmtree(run, ignore_errors=True)  # the trainer refuses a folder that holds a run
    config = TrainConfig(
        data=str(check.data), model=MODEL, sizes=[scale.run_size], batch=scale.run_batch,
        out=str(run), device=check.device, amp=check.cuda, steps=scale.run_steps,
        workers=default_workers() if check.cuda else 0, max_minutes=budget_s / 60,
        samples=2, progress=False,
    )  # fmt: skip
    result = train_stages(config)
    check.checkpoint = Path(result["best_path"])
    metrics, dtype = result["metrics"], amp_dtype(config.amp, torch.device(check.device))
    return {
        "size": scale.run_size, "batch": scale.run_batch,
        "amp": str(dtype).removeprefix("torch.") if dtype else "off",
        "budget_s": round(budget_s, 1), "steps": result["step"], "epochs": result["epochs"],
        "stopped": result["stopped"], "images_per_s": result["images_per_s"],
        "data_wait": result["data_wait"], "val_iou": metrics.get("iou"),
        "val_rmse": metrics.get("rmse"), "best_iou": result["best"]["iou"],
        "best_rmse": result["best"]["rmse"], "checkpoint": str(check.checkpoint),
    }  # fmt: skip


def section_train_run(check: Check) -> None:
    key, scale = "train_run", check.scale
    name = f"train {MODEL} at {scale.run_size} px from scratch"
    check.missing["checkpoint"] = f"no checkpoint: the training run was {OUT_OF_TIME}"
    if not check.fits(key, "synthesize data", scale.synth_guess_s):
        check.add(key, skipped(name, f"no data: synthesizing was {OUT_OF_TIME}", OUT_OF_TIME))
        return
    made = check.add(key, attempt("synthesize data", partial(make_data, check)))
    if made["status"] != "ok":
        check.missing["checkpoint"] = f"no checkpoint: no data ({made['why']})"
        check.add(key, skipped(name, f"no data: {made['why']}"))
        return
    budget = 0.8 * check.clock.left()  # the rest: its last validation and checkpoint
    if budget < scale.run_min_s:
        check.add(key, out_of_time(name, scale.run_min_s / 0.8, check.clock.left()))
        return
    row = check.add(key, attempt(name, partial(train_run, check, budget)))
    if row["status"] != "ok":
        check.missing["checkpoint"] = f"no checkpoint: the training run {row['status']}"


# ------------------------------------------------------------------------------ 4. inference


def _inference_model(check: Check) -> tuple[nn.Module, str]:
    """The training run's model (EMA when it has one), or seeded random weights without one:
    latency does not depend on the weights."""
    import torch

    if check.checkpoint is not None:
        from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

        return model_from_checkpoint(load_checkpoint(check.checkpoint))[0], "trained"
    from maskdepth.train.models import create_model

    torch.manual_seed(0)
    return create_model(MODEL).eval(), "random"


def _cuda_graph(net, inputs: tuple) -> Callable[[], tuple]:
    """A CUDA graph of ``net(*inputs)``, captured after warm-up on a side stream; a call replays
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

    def replay() -> tuple:
        graph.replay()
        return outputs

    return replay


def inference_latency(
    model: nn.Module, variant: str, batch: int, check: Check, references: dict
) -> dict:
    """Latency of the exported form (bg, scene -> mask, depth probabilities) on the device,
    and its largest difference from fp32 eager on the same inputs."""
    import torch

    from maskdepth.train.models.u2net import InferenceModel
    from maskdepth.train.trainer import CHANNELS_LAST

    device, size = torch.device(check.device), check.scale.infer_size
    dtype = torch.float16 if variant.startswith("fp16") else torch.float32
    generator = torch.Generator().manual_seed(batch)
    planes = [torch.rand(batch, 3, size, size, generator=generator) * 4 - 2 for _ in range(2)]
    inputs = tuple(p.to(device, dtype).contiguous(memory_format=CHANNELS_LAST) for p in planes)
    net = _place(InferenceModel(copy.deepcopy(model)), device, dtype, CHANNELS_LAST).eval()
    _reset_peak(device)
    with torch.no_grad():
        if batch not in references:
            reference = _place(InferenceModel(model), device, None, CHANNELS_LAST).eval()
            references[batch] = reference(*(t.float() for t in inputs))
        call = _cuda_graph(net, inputs) if "graph" in variant else partial(net, *inputs)

        def timed() -> None:
            call()
            _sync(device)

        stats = _latency(timed, batch, check.scale.row_seconds)
        outputs = call()
        diff = max(float((o.float() - r).abs().max()) for o, r in zip(outputs, references[batch]))
    return {"size": size, "batch": batch, **stats, "max_abs_vs_fp32": diff,
            "peak_gib": _peak(device)}  # fmt: skip


def section_inference(check: Check) -> None:
    key, scale = "inference", check.scale
    if not check.fits(key, "load the model", 1.0):
        return
    model, weights = _inference_model(check)
    references: dict = {}
    for variant in INFERENCE:
        for batch in scale.infer_batches:
            name = f"{variant}, {scale.infer_size} px, batch {batch}, {weights} weights"
            if "graph" in variant and not check.cuda:
                check.add(key, skipped(name, NEEDS_CUDA))
                continue
            if variant == "fp16" and not check.cuda:
                why = f"{NEEDS_CUDA}: fp16 convolutions on the CPU take seconds per call"
                check.add(key, skipped(name, why))
                continue
            if check.fits(key, name, scale.row_seconds + 2.0):
                work = partial(inference_latency, model, variant, batch, check, references)
                check.add(key, attempt(name, work))


# ------------------------------------------------------------------------------ 5. exported


def _parity_fields(comparison) -> dict:
    if comparison is None:
        return {"parity": "not checked"}
    return {
        "iou": round(comparison.candidate["iou"], 4),
        "d_iou": round(comparison.d_iou, 5),
        "rmse": round(comparison.candidate["rmse"], 4),
        "d_rmse": round(comparison.d_rmse, 5),
        "max_abs": float(f"{comparison.measured()['max_abs']:.3g}"),
        "parity": "ok" if comparison else "; ".join(comparison.failures()),
        "parity_samples": comparison.count,
    }


def _export_row(result) -> dict:
    row = {"file": str(result.path), "mb": round(result.size_bytes / 1e6, 2),
           "export_s": round(sum(result.seconds.values()), 1),
           **_parity_fields(result.comparison)}  # fmt: skip
    if result.passed is False:
        row |= {"status": "failed", "why": f"parity against PyTorch: {row['parity']}"}
    return row


def export_onnx(check: Check) -> dict:
    """``maskdepth export --format onnx``: fp32 ONNX, gated against PyTorch (onnxruntime CPU)."""
    from maskdepth.export.pipeline import ExportOptions, export

    options = ExportOptions(format="onnx", data=check.data, parity_count=check.scale.parity_count)
    result = export(check.trained(), check.work / "models" / "model.onnx", options)
    if result.passed:
        check.onnx = result.path
    return _export_row(result)


def build_engine(check: Check) -> dict:
    """``maskdepth export --format engine --precision fp16``: fp16 ONNX, then the plan, each
    gated against PyTorch."""
    from maskdepth.export.pipeline import ExportOptions, export

    options = ExportOptions(
        format="engine", precision="fp16", data=check.data,
        parity_count=check.scale.parity_count, max_batch=max(check.scale.infer_batches),
    )  # fmt: skip
    result = export(check.trained(), check.work / "models" / "model.engine", options)
    row = _export_row(result)
    if result.note:
        row["note"] = result.note
    return row


def _and(values) -> str:
    values = list(values)
    return ", ".join(values[:-1]) + f" and {values[-1]}" if len(values) > 1 else "".join(values)


def tensorrt_why_not() -> str | None:
    """Why native TensorRT cannot build and run an engine here (None: it can), in the words
    of the project's builder and runner."""
    from maskdepth.export.tensorrt_build import RTX_COMPUTE_CAPABILITIES, load_flavour
    from maskdepth.runtime.runners.cuda import open_cuda_memory

    try:
        flavour = load_flavour()
    except (MaskDepthError, MissingDependencyError) as exc:
        return _first_line(exc)
    gpu = flavour.gpu
    if gpu is None:
        return "needs CUDA: the CUDA driver sees no GPU"
    cc = gpu.compute_capability
    if flavour.name == "tensorrt_rtx" and cc not in RTX_COMPUTE_CAPABILITIES:
        return (
            f"TensorRT for RTX {flavour.version} targets compute capabilities "
            f"{_and(RTX_COMPUTE_CAPABILITIES)}, not {cc} ({gpu.name}); build on this GPU with "
            "tensorrt (pip install tensorrt)"
        )
    try:
        open_cuda_memory(gpu.index).close()
    except (MaskDepthError, MissingDependencyError) as exc:
        return _first_line(exc)
    return None


def backend_why_not(backend: str, device: str, check: Check) -> str | None:
    """Why ``backend`` on ``device`` cannot run here (None: it can)."""
    if device == "cuda" and not check.cuda:
        return NEEDS_CUDA
    try:
        if backend == "tensorrt":
            return tensorrt_why_not()
        if device == "cpu":
            return None
        import importlib.metadata as metadata

        import onnxruntime as ort
    except Exception as exc:  # an import that fails: say which
        return f"cannot check: {_first_line(exc)}"
    wanted = TRT_EP if backend == "onnxruntime-tensorrt" else CUDA_EP
    available = ort.get_available_providers()
    if wanted in available:
        return None
    try:
        metadata.version("onnxruntime-gpu")
        hint = "its GPU libraries (CUDA, cuDNN, TensorRT) did not load"
    except metadata.PackageNotFoundError:
        hint = "the CPU-only build; needs onnxruntime-gpu (pip install 'maskdepth[gpu]')"
    return f"onnxruntime {ort.__version__} has no {wanted} (it has {', '.join(available)}): {hint}"


class _Reference:
    """Held-out samples and the PyTorch fp32 model's outputs on them, made once."""

    def __init__(self, check: Check) -> None:
        self.check = check
        self.value: tuple | None = None

    def get(self) -> tuple:
        if self.value is None:
            from maskdepth.export.parity import reference_runner
            from maskdepth.export.samples import held_out_samples
            from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

            ckpt = load_checkpoint(self.check.trained())
            model, pre = model_from_checkpoint(ckpt)
            held_out = held_out_samples(ckpt, pre, self.check.scale.parity_count, self.check.data)
            self.value = (held_out, reference_runner(model, held_out))
        return self.value


def _runner_latency(runner, feed: dict, batch: int, seconds: float) -> dict:
    stats = _latency(partial(runner.infer, feed), batch, seconds)
    return {"provider": runner.provider, "device": runner.device, "batch": batch, **stats}


def backend_rows(check: Check, label: str, path: Path, backend: str, device: str,
                 provider: str | None, reference: _Reference) -> None:  # fmt: skip
    """Latency per batch through the runtime's runner (as the Predictor opens it), then
    parity of the same runner against the PyTorch model."""
    from maskdepth.export.parity import compare_runner
    from maskdepth.runtime.predictor import open_runner

    key, scale = "exported", check.scale
    held_out, outputs = reference.get()
    runner, info = open_runner(path, backend, device, None)
    rows = []
    try:
        if provider and runner.provider != provider:
            why = f"onnxruntime fell back to {runner.provider}: {provider} did not start"
            check.add(key, skipped(label, why))
            return
        for batch in scale.infer_batches:
            name = f"{label}, {info.precision}, batch {batch}"
            if not check.clock.allows(scale.row_seconds + 2.0):
                rows.append(out_of_time(name, scale.row_seconds + 2.0, check.clock.left()))
                continue
            feed = repeat_batch(held_out, batch)
            work = partial(_runner_latency, runner, feed, batch, scale.row_seconds)
            rows.append(attempt(name, work))
        comparison = compare_runner(runner, held_out, outputs, info.precision)
    finally:
        runner.deactivate()
    for row in rows:
        check.add(key, row | _parity_fields(comparison) if row["status"] == "ok" else row)


def section_exported(check: Check) -> None:
    key, scale = "exported", check.scale
    labels = ["export ONNX fp32"] + [label for label, *_ in BACKENDS]
    if check.checkpoint is None:  # out of time too: say so, with the cause
        status = "skipped" if check.clock.allows(scale.export_guess_s) else OUT_OF_TIME
        missing = check.missing.get("checkpoint", "no checkpoint")
        for label in labels:
            check.add(key, skipped(label, missing, status))
        return
    if check.fits(key, labels[0], scale.export_guess_s):
        row = check.add(key, attempt(labels[0], partial(export_onnx, check)))
        check.missing["onnx"] = f"no ONNX file: the export {row['status']}: {row.get('why', '')}"
    else:
        check.missing["onnx"] = f"no ONNX file: the export was {OUT_OF_TIME}"
    reference = _Reference(check)
    for label, backend, device, provider in BACKENDS:
        why, path = backend_why_not(backend, device, check), check.onnx
        if why is not None or path is None:
            check.add(key, skipped(label, why or check.missing["onnx"]))
            continue
        if backend == "tensorrt":
            name = f"build {label}"
            if not check.fits(key, name, scale.engine_guess_s):
                continue
            row = check.add(key, attempt(name, partial(build_engine, check)))
            if row["status"] != "ok":
                continue
            path = Path(row["file"])
        try:
            backend_rows(check, label, path, backend, device, provider, reference)
        except Exception as exc:
            check.add(key, skipped(label, _first_line(exc), "failed"))


# ------------------------------------------------------------------------------ 6. pytest


def _pytest_summary(output: str) -> str:
    """pytest's last summary line, without its ``=`` bars."""
    lines = [line.strip().strip("=").strip() for line in output.splitlines() if line.strip()]
    for line in reversed(lines):
        if re.search(r"\d+ (passed|failed|skipped|deselected|errors?)|no tests ran", line):
            return line
    return lines[-1] if lines else "(no output)"


def run_pytest(tests: Path, timeout: float, log: Path) -> dict:
    """``pytest -m gpu`` on the repository's tests in a subprocess, within ``timeout``."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += ["-k", "not gpu_check"]  # not this check's own test, which runs the check
    try:
        done = subprocess.run(
            [*command, str(tests)], cwd=tests.parent, capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        output = "".join(
            s.decode(errors="replace") if isinstance(s, bytes) else s or ""
            for s in (exc.stdout, exc.stderr)
        )
        write_bytes_atomic(log, output.encode())
        why = f"pytest still running after {timeout:.0f} s (the section's time); stopped"
        return {"status": OUT_OF_TIME, "why": why, "log": str(log)}
    output = done.stdout + done.stderr
    write_bytes_atomic(log, output.encode())
    summary = _pytest_summary(output)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", summary)}
    row = {"returncode": done.returncode, "summary": summary, **counts, "log": str(log)}
    if done.returncode not in (0, 5):  # 5: no test selected
        row |= {"status": "failed", "why": summary}
    return row


def section_pytest(check: Check) -> None:
    key, name = "pytest", "pytest -m gpu"
    tests = Path(__file__).resolve().parents[1] / "tests"
    if not check.cuda:
        check.add(key, skipped(name, NEEDS_CUDA))
    elif not check.pytest:
        check.add(key, skipped(name, "--no-pytest"))
    elif not (tests / "conftest.py").is_file():
        why = f"no tests at {tests}: run from an editable install of the repository"
        check.add(key, skipped(name, why))
    elif check.fits(key, name, PYTEST_MIN_S):
        log = check.out / "pytest_gpu.log"
        check.add(key, attempt(name, partial(run_pytest, tests, check.clock.left(), log)))


# ------------------------------------------------------------------------------ markdown


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:.1f}"
        return f"{value:.3f}" if magnitude >= 0.01 or value == 0 else f"{value:.3g}"
    if isinstance(value, (dict, list, tuple)):
        value = json.dumps(value, default=str)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _brief(row: dict) -> str:
    if row["status"] != "ok":
        return f"{row['status']}: {row.get('why', '')}"
    parts = [f"{k} {_cell(row[k])}" for k in BRIEF_KEYS if k in row]
    return "ok" + (": " + ", ".join(parts) if parts else "")


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    hidden = {"name", "status", "why", "traceback"}
    columns = list(dict.fromkeys(k for row in rows for k in row if k not in hidden))
    head = ["name", "status", *columns, "why"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(row.get(k)) for k in head) + " |" for row in rows]
    return lines


def to_markdown(report: dict) -> str:
    """The report as markdown: one table per section."""
    options = report["options"]
    state = "finished" if report["finished"] else "not finished (still running, or stopped)"
    lines = [
        f"# maskdepth gpu_check: --device {options['device']}, --minutes {options['minutes']:g}",
        "",
        f"{state}; {report['elapsed_s']:.0f} s so far. Latency: the model call alone on "
        "inputs already where the backend reads them, after warm-up (ms per call).",
    ]
    for section in report["sections"].values():
        budget, seconds = section["budget_s"], section["seconds"]
        timing = f"{section['status']}" + (f", budget {budget:.0f} s" if budget is not None else "")
        timing += f", took {seconds:.0f} s" if seconds is not None else ""
        lines += ["", f"## {section['title']}", "", f"({timing})", "", *_table(section["rows"])]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ main

RUNNERS: dict[str, Callable[[Check], None]] = {
    "machine": section_machine,
    "train_throughput": section_throughput,
    "train_run": section_train_run,
    "inference": section_inference,
    "exported": section_exported,
    "pytest": section_pytest,
}


def run_check(check: Check) -> dict:
    """Every section in order, each within its share of the clock; returns the report."""
    import torch

    if check.cuda:
        torch.backends.cudnn.benchmark = True  # as the trainer does on CUDA
    for key, _, _ in SECTIONS:
        check.clock.begin(key)
        check.report.start(key)
        started = time.perf_counter()
        try:
            RUNNERS[key](check)
        except Exception as exc:  # a bug in a section: say so and go on with the next
            traceback.print_exc(file=sys.stderr)
            check.add(key, skipped(f"section {key}", _first_line(exc), "failed"))
        check.report.finish(key, time.perf_counter() - started)
    check.report.data["finished"] = True
    check.report.write()
    return check.report.data


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
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        parser.error(f"--minutes {args.minutes}: expected a positive number")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from maskdepth.train.distributed import from_environment
    from maskdepth.train.trainer import pick_device

    try:
        device = pick_device(args.device, from_environment()).type
    except MaskDepthError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.minutes)
    options = {"device": device, "minutes": args.minutes, "out": str(args.out),
               "compile": args.compile, "pytest": args.pytest}  # fmt: skip
    check = Check(
        out=args.out, device=device, scale=CUDA_SCALE if device == "cuda" else CPU_SCALE,
        clock=clock, report=Report(args.out, options, clock),
        compile=device == "cuda" if args.compile is None else args.compile, pytest=args.pytest,
    )  # fmt: skip
    report = run_check(check)
    rows = [row for s in report["sections"].values() for row in s["rows"]]
    statuses = ("ok", "skipped", OUT_OF_TIME, "failed")
    counts = {s: sum(r["status"] == s for r in rows) for s in statuses}
    print(
        f"gpu_check: {', '.join(f'{n} {s}' for s, n in counts.items())} in "
        f"{report['elapsed_s']:.0f} s; wrote {check.report.md_path} and {check.report.json_path}"
    )
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
