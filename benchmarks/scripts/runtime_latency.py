"""How fast is the deployed runtime on this CPU? PyTorch eager fp32 against the Predictor on
ONNX fp32 and INT8, the bare onnxruntime session, our pre/post-processing share, the import
time of ``maskdepth.runtime``, the cold start, and the machine's fp32 floor for the model.

    python -m maskdepth.benchmarks.scripts.runtime_latency --out runs/bench [--checkpoint ckpt.pt]

Without a checkpoint a u2netp-md with seeded random weights is used (latency does not depend on
the weights). Inputs are synthetic scenes at the model size (224x224 by default), so the
Predictor resizes nothing. Every latency is per call after warm-up (``time.perf_counter``);
a batch-8 call predicts 8 pairs. Writes ``runtime_latency.md`` and ``runtime_latency.json``.

Targets (issue #5): ONNX fp32 Predictor <= 0.65x PyTorch eager; INT8 <= 0.5x ONNX fp32;
pre/post-processing <= 10% of the Predictor's time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np

from maskdepth.benchmarks.floor import floor_ms as floor_ms_of
from maskdepth.benchmarks.floor import onnx_flops, sgemm_gflops
from maskdepth.benchmarks.measure import Case, describe, machine, summary, time_interleaved
from maskdepth.runtime.image import write_bytes_atomic, write_image
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.predictor import Predictor
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair

HALVES = {"bg": slice(0, 3), "scene": slice(3, 6)}
TARGETS = {"fp32_vs_torch": 0.65, "int8_vs_fp32": 0.5, "prepost_share": 0.10}


# ------------------------------------------------------------------------------ models


def load_model(checkpoint: Path | None, size: int):
    """(model in eval mode, ModelInfo): the checkpoint's, or a seeded random u2netp-md."""
    import torch

    from maskdepth.train.models import create_model

    if checkpoint is None:
        torch.manual_seed(0)
        model = create_model("u2netp-md").eval()
        return model, ModelInfo("u2netp-md", Preprocessing(size=(size, size)))
    from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint

    ckpt = load_checkpoint(checkpoint)
    model, pre = model_from_checkpoint(ckpt)
    pre = Preprocessing(size=(size, size), mean=pre.mean, std=pre.std)
    return model, ModelInfo(ckpt["model"]["name"], pre)


def export_models(model, info: ModelInfo, folder: Path, samples, int8_targets) -> dict:
    """ONNX fp32 and one INT8 file per target; an INT8 that cannot be made is reported."""
    from maskdepth.export.onnx_fp32 import export_graph, save_model

    graph = export_graph(model, info, 17)
    paths = {"fp32": save_model(graph, folder / "fp32.onnx")}
    try:
        from maskdepth.export.onnx_int8 import to_int8
    except ImportError as exc:
        return paths | {f"int8-{t}": f"not made: {exc}" for t in int8_targets}
    for target in int8_targets:
        feeds = (batch.feed for batch in samples.batches(1))
        quantized = to_int8(graph, info, feeds, len(samples), "minmax", target=target)
        paths[f"int8-{target}"] = save_model(quantized, folder / f"int8-{target}.onnx")
    return paths


def make_samples(info: ModelInfo, count: int):
    """Synthetic scenes at the model size (uint8 pairs and calibration feeds), from seeds no
    training run draws."""
    from maskdepth.export.samples import held_out_samples

    return held_out_samples({}, info.preprocessing, count)


# ------------------------------------------------------------------------------ timing


def torch_cases(model, feeds: dict, threads: int) -> list[Case]:
    from maskdepth.train.torch_runner import TorchRunner

    runner = TorchRunner(model, device="cpu", threads=threads)
    runner.activate()
    fields = {"runner": "pytorch eager", "precision": "fp32", "device": "cpu"}
    return [
        Case(functools.partial(runner.infer, feed), batch, fields) for batch, feed in feeds.items()
    ]


def onnx_cases(predictor, name: str, feeds: dict, pairs: list) -> list[Case]:
    """Per batch: the Predictor's own onnxruntime session alone on prepared inputs (no
    pre/post, no Python around it), then the Predictor end to end on uint8 images. Our share
    is a Predictor call's time minus its session's (``last_inference_time``)."""
    runner = predictor._runner
    fields = {"precision": name.split("-")[0], "model": name, "device": predictor.device}
    bare, full = [], []
    for batch, feed in feeds.items():
        run = runner.session.run
        bare.append(Case(functools.partial(run, None, feed), batch,
                         {**fields, "runner": "onnxruntime session"}))  # fmt: skip
        bgs, scenes = (list(half) for half in zip(*pairs[:batch]))
        overhead: list[float] = []  # the case's

        def call(bgs=bgs, scenes=scenes, batch=batch, overhead=overhead):
            start = time.perf_counter()
            if batch == 1:
                predictor.predict(scenes[0], bg=bgs[0])
            else:
                list(predictor.predict_batch(scenes, bgs=bgs, batch_size=batch))
            overhead.append(1e3 * (time.perf_counter() - start - runner.last_inference_time))

        predictor_fields = {**fields, "runner": "Predictor", "provider": predictor.provider}
        full.append(Case(call, batch, predictor_fields, overhead_ms=overhead))
    return bare + full


# ------------------------------------------------------------------------------ start-up


def _fresh_python(code: str) -> tuple[dict, float]:
    """Run ``code`` in a new interpreter; return what it printed as JSON and the process's wall
    time (interpreter start-up included)."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1]), time.perf_counter() - start


def import_times(repeats: int) -> dict:
    code = textwrap.dedent(
        """
        import json, sys, time
        t0 = time.perf_counter()
        import maskdepth.runtime
        t1 = time.perf_counter()
        from maskdepth.runtime import Predictor
        t2 = time.perf_counter()
        import onnxruntime
        t3 = time.perf_counter()
        print(json.dumps({"runtime": t1 - t0, "predictor": t2 - t1, "onnxruntime": t3 - t2,
                          "torch_loaded": "torch" in sys.modules}))
        """
    )
    runs = [_fresh_python(code)[0] for _ in range(repeats)]
    return {
        "import_maskdepth_runtime_ms": statistics.median(r["runtime"] for r in runs) * 1e3,
        "then_predictor_ms": statistics.median(r["predictor"] for r in runs) * 1e3,
        "then_onnxruntime_ms": statistics.median(r["onnxruntime"] for r in runs) * 1e3,
        "torch_loaded": any(r["torch_loaded"] for r in runs),
    }


def cold_start(path: Path, bg_path: Path, scene_path: Path, threads: int, repeats: int) -> dict:
    """import + load + first prediction (from image files) in a fresh process."""
    code = textwrap.dedent(
        f"""
        import json, time
        t0 = time.perf_counter()
        from maskdepth.runtime import Predictor
        t1 = time.perf_counter()
        p = Predictor({str(path)!r}, device="cpu", threads={threads})
        t2 = time.perf_counter()
        p.predict({str(scene_path)!r}, bg={str(bg_path)!r})
        t3 = time.perf_counter()
        print(json.dumps({{"import": t1 - t0, "load": t2 - t1, "first": t3 - t2}}))
        """
    )
    runs = [_fresh_python(code) for _ in range(repeats)]
    median = lambda key: statistics.median(r[0][key] for r in runs) * 1e3  # noqa: E731
    return {
        "import_ms": median("import"),
        "load_ms": median("load"),
        "first_prediction_ms": median("first"),
        "in_process_ms": statistics.median(sum(r[0].values()) for r in runs) * 1e3,
        "process_wall_ms": statistics.median(r[1] for r in runs) * 1e3,
    }


# ------------------------------------------------------------------------------ floor


# ------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> dict:
    info_before = machine()  # with the load average: other work on the machine skews timings
    model, info = load_model(args.checkpoint, args.size)
    samples = make_samples(info, max(args.calib, max(args.batches)))
    pairs = [(s.bg, s.scene) for s in samples.samples]
    feeds = {}
    for batch in args.batches:
        x = np.stack([prepare_pair(bg, scene, info.preprocessing) for bg, scene in pairs[:batch]])
        feeds[batch] = {name: np.ascontiguousarray(x[:, part]) for name, part in HALVES.items()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        calibration = samples.subset(0, args.calib)
        files = export_models(model, info, folder, calibration, args.int8)
        write_image(folder / "bg.png", pairs[0][0])
        write_image(folder / "scene.png", pairs[0][1])
        rows = [
            {"runner": "Predictor", "precision": name, "error": path}
            for name, path in files.items()
            if not isinstance(path, Path)
        ]
        predictors = [
            (name, Predictor(path, device="cpu", threads=args.threads))
            for name, path in files.items()
            if isinstance(path, Path)
        ]
        cases = torch_cases(model, feeds, args.threads)
        for name, predictor in predictors:
            cases += onnx_cases(predictor, name, feeds, pairs)
        time_interleaved(cases, args.warmup, args.repeats)
        rows = [summary(case) for case in cases] + rows
        for _, predictor in predictors:
            predictor.close()
        start = {
            **import_times(args.startup_repeats),
            "cold_start": cold_start(
                files["fp32"], folder / "bg.png", folder / "scene.png", args.threads,
                args.startup_repeats,
            ),
        }  # fmt: skip
        sizes = {name: p.stat().st_size for name, p in files.items() if isinstance(p, Path)}
        gflop = onnx_flops(files["fp32"]) / 1e9  # the same network in every row
    gemm = sgemm_gflops(args.threads)
    floor_ms = floor_ms_of(gflop, max(gemm.values()))
    for row in rows:
        if "mean_ms" in row:
            row["gflop"] = gflop * row["batch"]
            row["x_floor"] = row["mean_ms"] / (floor_ms * row["batch"])
    return {
        "machine": {**info_before, "load_after": os.getloadavg()},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "model": {"name": info.model, "size": list(info.size), "file_bytes": sizes},
        "rows": rows,
        "startup": start,
        "floor": {"gflop": gflop, "sgemm_gflops": gemm, "fp32_floor_ms": floor_ms},
        "ratios": ratios(rows, floor_ms, args.batches),
        "targets": TARGETS,
    }


def _find(rows: list[dict], runner: str, model: str | None, batch: int) -> dict | None:
    for row in rows:
        same = row.get("runner") == runner and row.get("batch") == batch
        if same and (model is None or row.get("model") == model):
            return row
    return None


def ratios(rows: list[dict], floor_ms: float, batches) -> dict:
    """Per batch: the targets' ratios and how far the session is from the fp32 floor."""
    out = {}
    for batch in batches:
        torch_row = _find(rows, "pytorch eager", None, batch)
        fp32 = _find(rows, "Predictor", "fp32", batch)
        bare = _find(rows, "onnxruntime session", "fp32", batch)
        entry = {}
        if torch_row and fp32:
            entry["fp32_vs_torch"] = fp32["mean_ms"] / torch_row["mean_ms"]
            entry["prepost_share"] = fp32["prepost_share"]
        if bare:
            entry["fp32_session_vs_floor"] = bare["mean_ms"] / (floor_ms * batch)
        for row in rows:
            int8 = row.get("runner") == "Predictor" and row.get("model", "").startswith("int8")
            if int8 and row.get("batch") == batch and fp32:
                entry[f"{row['model']}_vs_fp32"] = row["mean_ms"] / fp32["mean_ms"]
        out[str(batch)] = entry
    return out


# ------------------------------------------------------------------------------ report


def markdown(report: dict) -> str:
    info = report["machine"]
    model = report["model"]
    lines = [
        f"{describe(info, 'onnxruntime', 'torch')}; threads {report['settings']['threads']}",
        f"Model: {model['name']} at {model['size'][0]}x{model['size'][1]}; load average (1, 5, "
        f"15 min) before: {', '.join(f'{v:.2f}' for v in info['load_average'])}, after: "
        f"{', '.join(f'{v:.2f}' for v in info['load_after'])}",
        "",
        "| runner | model | batch | mean ms | p50 | p90 | p99 | images/s | GFLOP | x floor "
        "| pre/post ms (share) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        if row.get("error"):
            lines.append(f"| {row['runner']} | {row['precision']} | | not run: {row['error']} |")
            continue
        share = (
            f"{row['prepost_ms']:.2f} ({row['prepost_share']:.1%})" if "prepost_ms" in row else ""
        )
        lines.append(
            f"| {row['runner']} | {row.get('model', row['precision'])} | {row['batch']} | "
            f"{row['mean_ms']:.1f} | {row['p50_ms']:.1f} | {row['p90_ms']:.1f} | "
            f"{row['p99_ms']:.1f} | {row['images_per_s']:.1f} | {row['gflop']:.1f} | "
            f"{row['x_floor']:.2f} | {share} |"
        )
    floor = report["floor"]
    gemm = ", ".join(f"{k} {v:.1f}" for k, v in floor["sgemm_gflops"].items())
    lines += [
        "",
        f"fp32 floor: {floor['gflop']:.2f} GFLOP per image (counted from the ONNX graph) / best "
        f"sgemm ({gemm} GFLOP/s, measured in this run) = {floor['fp32_floor_ms']:.1f} ms per "
        "image; x floor: a row's latency over the floor of its batch",
        "",
        "| batch | ratio | value | target |",
        "|---:|---|---:|---:|",
    ]
    for batch, entry in report["ratios"].items():
        for name, value in entry.items():
            target = TARGETS.get(name) or (TARGETS["int8_vs_fp32"] if "int8" in name else None)
            verdict = "" if target is None else (" ok" if value <= target else " MISSED")
            mark = "" if target is None else f"<= {target}{verdict}"
            lines.append(f"| {batch} | {name} | {value:.3f} | {mark} |")
    start = report["startup"]
    cold = start["cold_start"]
    lines += [
        "",
        f"import maskdepth.runtime: {start['import_maskdepth_runtime_ms']:.0f} ms (torch loaded: "
        f"{start['torch_loaded']}); then Predictor {start['then_predictor_ms']:.0f} ms; "
        f"then onnxruntime {start['then_onnxruntime_ms']:.0f} ms",
        f"cold start (fresh process, fp32): import {cold['import_ms']:.0f} ms + load "
        f"{cold['load_ms']:.0f} ms + first prediction {cold['first_prediction_ms']:.0f} ms = "
        f"{cold['in_process_ms']:.0f} ms; whole process {cold['process_wall_ms']:.0f} ms",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the .md and .json")
    parser.add_argument("--checkpoint", type=Path, help="default: random-weight u2netp-md")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="for every runner")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per row")
    parser.add_argument("--calib", type=int, default=16, help="INT8 calibration scenes")
    parser.add_argument(
        "--int8", nargs="*", default=["cpu", "tensorrt"], help="INT8 targets (export's)"
    )
    parser.add_argument("--startup-repeats", type=int, default=3)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "runtime_latency.md", (text + "\n").encode())
    write_bytes_atomic(
        args.out / "runtime_latency.json", (json.dumps(report, indent=2) + "\n").encode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
