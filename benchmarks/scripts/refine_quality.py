"""Does the refiner pay? Three variants trained for the same budget on synthetic scenes at 4x the
base size, scored on the same held-out scenes at that size:

- ``bilinear``: the base at B, its output upsampled bilinearly (a refined run with the refiner
  frozen, scored with ``--no-refine``: index 1, exactly the bilinear upsampling of the base);
- ``refined``: the base at B and the refiner (``--refine``) up to 4B, trained end to end;
- ``full``: the U2-Net run directly at 4B (the ceiling).

    python -m maskdepth.benchmarks.scripts.refine_quality --base 112 --minutes 20 --json out.json
    python -m maskdepth.benchmarks.scripts.refine_quality --quick   # a smoke test, seconds

Reports IoU, boundary F (2 px), depth RMSE, GFLOP (torch's FLOP counter, one 4B pair) and CPU
ms at batch 1 (the torch model, median of ``--repeats``), as a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from maskdepth.benchmarks.measure import describe, machine
from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
from maskdepth.train.config import TrainConfig
from maskdepth.train.evaluate import evaluate
from maskdepth.train.models.u2net import InferenceModel
from maskdepth.train.trainer import train

QUICK = {"base": 32, "minutes": None, "steps": 2, "count": 14, "model": "u2netp-lite"}


def variants(base: int, refine: str) -> dict[str, dict]:
    """Each variant's TrainConfig options and whether it is scored with its refiner."""
    full = 4 * base
    return {
        "bilinear": {"sizes": [base], "full_size": full, "refine": refine, "freeze": "refiner"},
        "refined": {"sizes": [base], "full_size": full, "refine": refine},
        "full": {"sizes": [full]},
    }


def timed_forward(ckpt: Path, size: int, repeats: int) -> tuple[float, float]:
    """(GFLOP, median CPU ms) of the exported form of ``ckpt`` on one (size x size) pair."""
    model, _ = model_from_checkpoint(load_checkpoint(ckpt))
    net = InferenceModel(model).eval()
    bg, scene = torch.randn(1, 3, size, size), torch.randn(1, 3, size, size)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            net(bg, scene)
        times = []
        for _ in range(repeats + 1):  # the first is a warm-up
            started = time.perf_counter()
            net(bg, scene)
            times.append(1000 * (time.perf_counter() - started))
    times = sorted(times[1:])
    return counter.get_total_flops() / 1e9, times[len(times) // 2]


def run_variant(name: str, options: dict, args: argparse.Namespace, folder: Path) -> dict:
    config = TrainConfig(
        data="synth", model=args.model, synth_count=args.count, batch=args.batch,
        max_minutes=args.minutes, steps=args.steps, workers=args.workers, threads=args.threads,
        out=str(folder / name), progress=False, samples=0, **options,
    )  # fmt: skip
    result = train(config)
    refine = name != "bilinear"
    scores = evaluate(result["last_path"], workers=0, progress=False, refine=refine)
    gflop, ms = timed_forward(Path(result["last_path"]), 4 * args.base, args.repeats)
    keys = ("iou", "boundary_f", "rmse", "count")
    return {k: scores[k] for k in keys} | {"gflop": gflop, "cpu_ms": ms,
            "steps": result["step"], "train_s": result["seconds"]}  # fmt: skip


def table(rows: dict[str, dict]) -> str:
    lines = [
        "| variant | IoU | boundary F (2 px) | depth RMSE | GFLOP | CPU ms, batch 1 | trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['iou']:.4f} | {r['boundary_f']:.4f} | {r['rmse']:.4f} | "
            f"{r['gflop']:.2f} | {r['cpu_ms']:.1f} | {r['steps']} steps, {r['train_s']:.0f} s |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=int, default=112, help="base size B (full: 4B)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget, each")
    parser.add_argument("--steps", type=int, default=None, help="or a fixed step count")
    parser.add_argument("--count", type=int, default=2000, help="synthetic scenes")
    parser.add_argument("--model", default="u2netp-md")
    parser.add_argument("--refine", default="guided")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK, batch=2, workers=0, repeats=2)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="refine_quality_") as folder:
        rows = {
            name: run_variant(name, options, args, Path(folder))
            for name, options in variants(args.base, args.refine).items()
        }
    info = machine(gpu=None)
    report = {"machine": info, "base": args.base, "full": 4 * args.base, "rows": rows,
              "minutes": args.minutes, "model": args.model, "refine": args.refine}  # fmt: skip
    print(describe(info, "torch"))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
