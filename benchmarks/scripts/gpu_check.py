# long file: one standalone script a GPU machine runs alone; six sections of short functions.
"""Prove the GPU half of maskdepth on one CUDA GPU with the project's own code, and say why for
every part that cannot run there.

    python -m maskdepth.benchmarks.scripts.gpu_check --out runs/gpu_check [--minutes 8]
    python -m maskdepth.benchmarks.scripts.gpu_check --out /tmp/check --device cpu \\
        --pytest-files test_doctor.py  # a dry run at toy sizes

Six sections of rows, written to DIR/gpu_check.json and .md after every row (atomically):
1. machine: measure.machine() and maskdepth doctor's rows;
2. training throughput: the trainer's TrainState and step on one batch, fp32 NCHW against AMP
   channels_last and torch.compile, by torch.utils.benchmark;
3. maskdepth data synth, then maskdepth train with --max-minutes 15 % of --minutes;
4. PyTorch inference of the exported form: fp32, fp16 and CUDA graphs of both;
5. maskdepth export (ONNX fp32, an fp16 engine, each parity-gated), then maskdepth bench's rows
   for onnxruntime's CPU, CUDA and TensorRT providers and native TensorRT, where doctor says
   they run;
6. pytest -m gpu on the repository's tests in what is left of --minutes (at least 90 s).
Each row's work has a fixed size and time (toy sizes with --device cpu). A row that cannot run
says why; one that fails does not stop the others. Scratch goes to DIR/work.

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
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

from maskdepth.options import add_options, option, options_from
from maskdepth.runtime.engine_sidecar import FLAVOURS
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic

MODEL = "u2netp-md"
FP32, AMP, COMPILED = "fp32 NCHW eager", "amp channels_last", "amp channels_last compile"
INFERENCE = ("fp32", "fp16", "fp32 CUDA graph", "fp16 CUDA graph")
BACKENDS = (  # the provider a row must run on (label), bench's backend, device, doctor's row
    ("onnxruntime CPUExecutionProvider", "onnxruntime", "cpu", "run onnx cpu"),
    ("onnxruntime CUDAExecutionProvider", "onnxruntime", "cuda", "run onnx cuda"),
    ("onnxruntime TensorrtExecutionProvider", "onnxruntime-tensorrt", "cuda", "run onnx trt"),
    ("TensorRT native (fp16 engine)", "tensorrt", "cuda", "engine"),
)
NEEDS_CUDA, OUT_OF_TIME = "needs CUDA (--device cpu)", "out of time"
TRAIN_SHARE, PYTEST_MIN_S = 0.15, 90.0  # of --minutes: the training run's; pytest's least
TESTS = Path(__file__).resolve().parents[2] / "tests"  # benchmarks/scripts/ -> the repository
COMPILE, FILES = "torch.compile rows (default: on with cuda)", "test files in tests/ (default: all)"
EXPECTED = (MaskDepthError, MissingDependencyError)  # errors that say why in one line


def _minutes(text: str) -> float:
    if not float(text) > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return float(text)


@dataclass
class Check:
    """The options of one run (:func:`~maskdepth.options.option` fields), the report
    (written after every row) and what earlier sections made (``made``: data, checkpoint, onnx,
    engine) or found (``doctor``: each of doctor's rows' reason, "" when ok)."""

    out: Path = option(type=Path, required=True, help="folder for gpu_check.md and .json")
    minutes: float = option(8.0, type=_minutes, help="train gets 0.15 of it, pytest the rest")
    device: str = option("cuda", choices=["cuda", "cpu"])
    compile: bool | None = option(None, action=argparse.BooleanOptionalAction, help=COMPILE)
    pytest: bool = option(True, "--no-pytest", action="store_false", help="skip section 6")
    pytest_files: tuple[str, ...] = option((), nargs="+", metavar="NAME", help=FILES)
    started: float = field(default_factory=time.perf_counter)
    made: dict[str, Path] = field(default_factory=dict)
    doctor: dict[str, str] = field(default_factory=dict)
    report: dict = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    def size(self, cuda, cpu):
        """A real size on CUDA, a toy one on the CPU."""
        return cuda if self.cuda else cpu

    @property
    def seconds(self) -> float:  # timed seconds per throughput, inference and bench row
        return self.size(1.0, 0.2)

    def run(self, key: str, name: str, work: Callable[[], dict | list[dict]]) -> dict:
        """Add ``work()``'s fields as an ok row (it may set its own status) or its rows (a
        list), or a failed row with the error's first line (the traceback of a bug too)."""
        start = time.perf_counter()
        try:
            made = work()
        except Exception as exc:
            line = (str(exc).strip().splitlines() or [""])[0][:400]
            why = line if isinstance(exc, EXPECTED) else f"{type(exc).__name__}: {line}"
            row = {"name": name, "status": "failed", "why": why}
            if not isinstance(exc, EXPECTED):
                row["traceback"] = traceback.format_exc()[-3000:]
            return self.add(key, row)
        if isinstance(made, list):  # rows of their own
            return [self.add(key, row) for row in made][-1] if made else {}
        seconds = round(time.perf_counter() - start, 2)
        return self.add(key, {"name": name, "status": "ok", **made, "seconds": seconds})

    def skip(self, key: str, name: str, why: str, status: str = "skipped") -> dict:
        return self.add(key, {"name": name, "status": status, "why": why})

    def add(self, key: str, row: dict) -> dict:
        self.report["sections"][key]["rows"].append(row)
        elapsed = time.perf_counter() - self.started
        shown = row.get("why") or ", ".join(f"{k} {_cell(v)}" for k, v in list(row.items())[2:8])
        print(f"gpu_check {elapsed:6.1f}s {key} | {row['name']}: {row['status']}: {shown}")
        self.write()
        return row

    def write(self) -> None:
        self.report["elapsed_s"] = round(time.perf_counter() - self.started, 1)
        text = json.dumps(self.report, indent=1, default=str) + "\n"
        write_bytes_atomic(self.out / "gpu_check.json", text.encode())
        write_bytes_atomic(self.out / "gpu_check.md", to_markdown(self.report).encode())


def timed(call: Callable[[], object], seconds: float, batch: int) -> dict:
    """``torch.utils.benchmark`` (it synchronises CUDA): the first call, then the median per
    call over about ``seconds`` (``blocked_autorange``), images/s and the peak GPU memory."""
    import torch
    from torch.utils.benchmark import Timer

    if cuda := torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    timer = Timer("call()", globals={"call": call}, num_threads=torch.get_num_threads())
    first, measured = timer.timeit(1).mean, timer.blocked_autorange(min_run_time=seconds)
    row = {"first_s": round(first, 2), "ms": round(1000 * measured.median, 2)}
    row |= {"calls": len(measured.times) * measured.number_per_run}
    peak = round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else "needs CUDA"
    return row | {"images_per_s": round(batch / measured.median, 1), "peak_gib": peak}


def section_machine(check: Check) -> None:
    from maskdepth.benchmarks.measure import machine

    info = machine()
    info["versions"] = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    for name, value in info.items():
        check.add("machine", {"name": name, "status": "ok", "value": value})
    doctor = [sys.executable, "-m", "maskdepth", "doctor", "--torch", "--json"]  # torch's CUDA too
    done = subprocess.run(doctor, capture_output=True, text=True, timeout=300)
    for row in json.loads(done.stdout)["checks"]:  # each backend here, or why not
        check.doctor[row["name"]] = "" if row["ok"] else row["reason"]
        value = row["value"] if row["ok"] else f"no: {row['reason']}"
        check.add("machine", {"name": f"doctor: {row['name']}", "status": "ok", "value": value})


def train_throughput(check: Check, variant: str, size: int, batch: int) -> dict:
    """The trainer's step (forward under its autocast, the project's loss, backward,
    ``TrainState.step_optimizer``) on one fixed batch."""
    import torch

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.device import CHANNELS_LAST, autocast
    from maskdepth.train.distributed import Dist
    from maskdepth.train.losses import compute_loss
    from maskdepth.train.state import TrainState

    device, amp = torch.device(check.device), variant != FP32
    config = TrainConfig(model=MODEL, sizes=[size], batch=batch, amp=amp, device=check.device)
    torch.manual_seed(0)
    state = TrainState(config, Dist(), device, steps_per_epoch=1, started=time.perf_counter())
    fmt = CHANNELS_LAST if amp else torch.contiguous_format
    state.model.to(memory_format=fmt)  # type: ignore[call-overload]  # the seed's NCHW for fp32
    if variant == COMPILED:
        torch.compiler.reset()  # measured from scratch
        state.net = torch.compile(state.model, dynamic=False)  # type: ignore[assignment]
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

    precision = str(state.dtype or "fp32").removeprefix("torch.")
    row = {"size": size, "batch": batch, "precision": precision}
    return row | timed(step, check.seconds, batch)


def section_throughput(check: Check) -> None:
    shapes = check.size([(64, 32), (64, 64), (224, 32), (224, 64)], [(32, 2)])
    for variant, size, batch in [(v, s, b) for v in (FP32, AMP) for s, b in shapes]:
        work = partial(train_throughput, check, variant, size, batch)
        check.run("train_throughput", f"{variant}, {size} px, batch {batch}", work)
    size, batch = check.size((224, 64), (32, 2))  # one compile: it takes a minute
    name, work = f"{COMPILED}, {size} px, batch {batch}", partial(train_throughput, check)
    if check.compile:
        check.run("train_throughput", name, partial(work, COMPILED, size, batch))
    else:
        why = "torch.compile off (--no-compile; off by default with --device cpu)"
        check.skip("train_throughput", name, why)


def synthesize(check: Check) -> dict:
    """``maskdepth data synth``: the project's synthetic scenes, written with every core."""
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.data.synth import synthesize

    folder, size, count = check.out / "work" / "synth", check.size(224, 32), check.size(1000, 40)
    options = dict(size=size, seed=0, workers=default_workers(), overwrite=True, progress=False)
    result = synthesize(folder, count, **options)
    check.made["data"] = folder
    return {k: result[k] for k in ("scenes", "seconds", "scenes_per_s")} | {"folder": str(folder)}


def train_run(check: Check) -> dict:
    """``maskdepth train`` (``train_stages``) from scratch, ``--max-minutes`` its share; the
    result's fields as the trainer returns them (its validation metrics ``val_*``)."""
    import shutil

    from maskdepth.train.config import TrainConfig
    from maskdepth.train.data.parallel import default_workers
    from maskdepth.train.stages import train_stages

    run = check.out / "work" / "run"
    shutil.rmtree(run, ignore_errors=True)  # the trainer refuses a folder that holds a run
    shape = dict(size=check.size(224, 32), batch=check.size(32, 4), steps=check.size(None, 6))
    data, budget, workers = str(check.made["data"]), check.minutes * TRAIN_SHARE, default_workers()
    config = TrainConfig(data=data, model=MODEL, out=str(run), device=check.device, amp=check.cuda)
    config = replace(config, sizes=[shape["size"]], batch=shape["batch"], steps=shape["steps"])
    config = replace(config, max_minutes=budget, samples=2, progress=False)
    config.workers = check.size(workers, 0)
    result = train_stages(config)
    check.made["checkpoint"] = Path(result["best_path"])
    metrics = {f"val_{k}": v for k, v in result.pop("metrics").items()}
    result = {k: v for k, v in result.items() if k not in ("best", "out", "last_path")}
    return shape | {"max_minutes": budget, "steps": result.pop("step")} | metrics | result


def section_train_run(check: Check) -> None:
    name = f"train {MODEL} at {check.size(224, 32)} px from scratch"
    if check.run("train_run", "synthesize data", partial(synthesize, check))["status"] == "ok":
        check.run("train_run", name, partial(train_run, check))
    else:
        check.skip("train_run", name, "no data: synthesizing failed")


def _cuda_graph(net, inputs: list) -> Callable[[], object]:
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

    def replay() -> object:
        graph.replay()
        return outputs

    return replay


def inference(check: Check, model, variant: str, batch: int) -> dict:
    """The exported form (bg, scene -> mask, depth) on inputs already on the device, and its
    largest difference from fp32 eager on the same inputs."""
    import torch

    from maskdepth.train.device import CHANNELS_LAST
    from maskdepth.train.models.u2net import InferenceModel

    device, size = torch.device(check.device), check.size(224, 32)
    dtype = torch.float16 if variant.startswith("fp16") else torch.float32
    generator = torch.Generator().manual_seed(batch)
    planes = [torch.rand(batch, 3, size, size, generator=generator) * 4 - 2 for _ in range(2)]
    inputs = [p.to(device, dtype).contiguous(memory_format=CHANNELS_LAST) for p in planes]
    fp32 = InferenceModel(model).to(device).eval()
    net = copy.deepcopy(fp32).to(dtype).to(memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
    with torch.no_grad():
        reference = fp32(*(t.float() for t in inputs))
        call = _cuda_graph(net, inputs) if "graph" in variant else lambda: net(*inputs)
        row = {"size": size, "batch": batch} | timed(call, check.seconds, batch)
        outputs: tuple = call()  # type: ignore[assignment]
        diff = max(float((o.float() - r).abs().max()) for o, r in zip(outputs, reference))
    return row | {"max_abs_vs_fp32": diff}


def section_inference(check: Check) -> None:
    import torch

    from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
    from maskdepth.train.models import create_model

    checkpoint = check.made.get("checkpoint")
    torch.manual_seed(0)  # without a trained model, seeded weights: latency does not care
    model = model_from_checkpoint(load_checkpoint(checkpoint))[0] if checkpoint else None
    model = model or create_model(MODEL)
    weights = "trained weights" if checkpoint else "random weights"
    for variant, batch in [(v, b) for v in INFERENCE for b in check.size((1, 32), (1, 2))]:
        name = f"{variant}, {check.size(224, 32)} px, batch {batch}, {weights}"
        if variant != "fp32" and not check.cuda:
            check.skip("inference", name, NEEDS_CUDA)
        else:
            check.run("inference", name, partial(inference, check, model, variant, batch))


def export_file(check: Check, fmt: str) -> dict:
    """``maskdepth export --format onnx`` (fp32) or ``engine --precision fp16``, each gated
    against PyTorch on held-out samples; the file, its size, time and parity."""
    from maskdepth.export.pipeline import ExportOptions, export

    options = ExportOptions(format=fmt, data=check.made["data"], parity_count=check.size(64, 8))
    if fmt == "engine":
        options.precision, options.max_batch = "fp16", check.size(32, 2)
    path = check.out / "work" / "models" / f"model.{fmt}"
    result = export(check.made["checkpoint"], path, options)
    row = {"file": str(result.path), "mb": result.size_bytes / 1e6, **result.seconds}
    if (c := result.comparison) is not None:
        parity = "ok" if c else "; ".join(c.failures())
        row |= {"iou": c.candidate["iou"], "d_iou": c.d_iou, **c.measured(), "parity": parity}
    if result.passed is False:
        return row | {"status": "failed", "why": f"parity against PyTorch: {row['parity']}"}
    check.made[fmt] = result.path
    return row


def why_not(check: Check, device: str, doctor: str) -> str:
    """Why a backend cannot run here ("" when it can), in ``maskdepth doctor``'s words; the
    native engine needs a TensorRT flavour that both builds and runs here."""
    if device == "cuda" and not check.cuda:
        return NEEDS_CUDA
    if doctor != "engine":
        return check.doctor.get(doctor.replace("trt", "tensorrt-ep"), "doctor did not say")
    why = [
        check.doctor.get(f"build engine {f}", "?") or check.doctor[f"run engine {f}"]
        for f in FLAVOURS
    ]
    return "; ".join(f"{f}: {r}" for f, r in zip(FLAVOURS, why)) if all(why) else ""


def bench(check: Check, device: str, jobs: list[tuple[str, str, Path]]) -> list[dict]:
    """``maskdepth bench --device DEVICE``'s rows (its PyTorch reference, then each file on its
    backend) with their fields as bench writes them; a row on another provider is skipped."""
    from maskdepth.benchmarks.bench import BenchOptions
    from maskdepth.benchmarks.bench_rows import Context, model_rows, reference_rows

    made, batches, count = check.made, check.size((1, 32), (1, 2)), check.size(64, 8)
    options = BenchOptions(made["data"], made["checkpoint"], batches, count, seconds=check.seconds)
    context = Context(replace(options, warmup=2, device=device))
    found = [("PyTorch fp32 reference", r) for r in reference_rows(context)]
    found += [(label, r) for label, kind, path in jobs for r in model_rows(path, kind, context)]
    rows = []
    for label, row in found:
        name, fields = f"{label} on {device}, {row.precision}, batch {row.batch}", row.to_dict()
        if row.status.startswith("failed"):
            why = row.status.removeprefix("failed: ")
            rows.append({"name": name, "status": "failed", "why": why})
        elif label.startswith("onnxruntime") and not label.endswith(row.provider):
            why = f"onnxruntime ran it on {row.provider}: the provider did not start"
            rows.append({"name": name, "status": "skipped", "why": why})
        else:
            del fields["latency_ms"]
            latency, parity = fields.pop("latency"), fields.pop("status")
            rows.append({"name": name, "status": "ok", **fields, **latency, "parity": parity})
    return rows


def section_exported(check: Check) -> None:
    key, labels = "exported", ["export ONNX fp32"] + [label for label, *_ in BACKENDS]
    if "checkpoint" not in check.made:
        for label in labels:
            check.skip(key, label, "no checkpoint: the training run (section 3) did not end")
        return
    onnx = check.run(key, labels[0], partial(export_file, check, "onnx"))
    jobs: dict[str, list] = {}
    for label, backend, device, doctor in BACKENDS:
        why = why_not(check, device, doctor) or onnx.get("why", "")
        if not why and backend == "tensorrt":
            built = check.run(key, f"build {label}", partial(export_file, check, "engine"))
            why = built.get("why", "")
        if why:
            check.skip(key, label, why if why == NEEDS_CUDA else f"{why} (for {label})")
            continue
        path = check.made["engine" if backend == "tensorrt" else "onnx"]
        jobs.setdefault(device, []).append((label, backend, path))
    for device, found in jobs.items():
        check.run(key, f"bench on {device}", partial(bench, check, device, found))


def run_pytest(files: tuple[str, ...], timeout: float, log: Path) -> dict:
    """``pytest -m gpu`` on the repository's tests (or ``files`` of them) in a subprocess; not
    this check's own test, which would run the check again."""
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
    command += ["-k", "not gpu_check", *[str(TESTS / name) for name in files or ["."]]]
    try:
        done = subprocess.run(command, cwd=TESTS.parent, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        write_bytes_atomic(log, (exc.stdout or b"") + (exc.stderr or b""))
        return {"status": OUT_OF_TIME, "why": f"pytest still running after {timeout:.0f} s"}
    write_bytes_atomic(log, done.stdout + done.stderr)
    summary = (done.stdout.decode(errors="replace").strip().splitlines() or ["(no output)"])[-1]
    counts = {word: int(n) for n, word in re.findall(r"(\d+) ([a-z]+)", summary)}
    row = {"tests": str(TESTS), "files": list(files) or "all", "returncode": done.returncode}
    row |= {"summary": summary.strip("= "), **counts, "log": str(log)}
    return row | ({"status": "failed", "why": summary} if done.returncode not in (0, 5) else {})


def section_pytest(check: Check) -> None:
    if not check.pytest:
        check.skip("pytest", "pytest -m gpu", "--no-pytest")
    elif not (TESTS / "conftest.py").is_file():
        check.skip("pytest", "pytest -m gpu", f"no tests at {TESTS}: run it from a checkout")
    else:
        left = max(60 * check.minutes - (time.perf_counter() - check.started), PYTEST_MIN_S)
        work = partial(run_pytest, check.pytest_files, left, check.out / "pytest_gpu.log")
        check.run("pytest", "pytest -m gpu", work)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    return "" if value is None else text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: dict) -> str:
    """The report as markdown: one table per section (name, status, every field, why)."""
    device, minutes = report["options"]["device"], report["options"]["minutes"]
    done = "finished" if report["finished"] else "not finished"
    lines = [f"# maskdepth gpu_check --device {device} --minutes {minutes:g}"]
    lines += ["", f"{done}; {report['elapsed_s']:.0f} s so far."]
    for section in report["sections"].values():
        rows, hidden = section["rows"], ("name", "status", "why", "traceback")
        head = ["name", "status", *dict.fromkeys(k for r in rows for k in r if k not in hidden)]
        head.append("why")
        table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        table += ["| " + " | ".join(_cell(r.get(k)) for k in head) + " |" for r in rows]
        took = f"({section['status']}, {section['seconds']} s)"
        lines += ["", f"## {section['title']}", "", took, "", *(table if rows else ["(no rows)"])]
    return "\n".join(lines) + "\n"


SECTIONS = {  # key: title, what makes its rows
    "machine": ("1. Machine", section_machine),
    "train_throughput": (f"2. Training throughput: {MODEL} on one batch", section_throughput),
    "train_run": ("3. A short training run from scratch", section_train_run),
    "inference": ("4. PyTorch inference", section_inference),
    "exported": ("5. Exported model: onnxruntime and TensorRT", section_exported),
    "pytest": ("6. pytest -m gpu", section_pytest),
}


def run_check(check: Check) -> dict:
    """Every section in order; returns the report."""
    options = {k: getattr(check, k) for k in ("device", "minutes", "compile", "pytest_files")}
    sections: dict[str, dict] = {}
    check.report = {"tool": "gpu_check", "options": options, "finished": False}
    check.report["sections"] = sections
    for key, (title, run) in SECTIONS.items():
        sections[key] = {"title": title, "status": "running", "seconds": None, "rows": []}
        started = time.perf_counter()
        try:
            run(check)
        except Exception as exc:  # a bug in a section: say so and go on with the next
            traceback.print_exc()
            check.skip(key, f"section {key}", f"{type(exc).__name__}: {exc}", "failed")
        sections[key] |= {"status": "done", "seconds": round(time.perf_counter() - started, 1)}
    check.report["finished"] = True
    check.write()
    return check.report


def main(argv: list[str] | None = None) -> int:
    from maskdepth.train.device import pick_device
    from maskdepth.train.distributed import from_environment

    raw, prog = argparse.RawDescriptionHelpFormatter, "python -m " + __spec__.name
    parser = argparse.ArgumentParser(prog, description=__doc__, formatter_class=raw)
    add_options(parser, Check)
    check: Check = options_from(Check, parser.parse_args(argv))
    try:
        check.device = pick_device(check.device, from_environment()).type
    except MaskDepthError as exc:
        print(f"gpu_check: error: {exc}", file=sys.stderr)
        return 2
    check.compile = check.cuda if check.compile is None else check.compile
    check.out.mkdir(parents=True, exist_ok=True)
    rows = [row for section in run_check(check)["sections"].values() for row in section["rows"]]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", "skipped", OUT_OF_TIME)}
    counts["failed"] = len(rows) - sum(counts.values())
    said = ", ".join(f"{n} {s}" for s, n in counts.items())
    print(f"gpu_check: {said} in {check.report['elapsed_s']:.0f} s; wrote {check.out}/gpu_check.md")
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
