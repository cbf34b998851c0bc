"""Does the refiner pay? Variants trained for the same budget on synthetic scenes at 4x the
base size, scored on the same held-out scenes at that size:

- ``bilinear``: today: the base trained at B, its output upsampled bilinearly. Scored through
  a refined wrapper whose base holds those weights frozen (one refiner step), ``--no-refine``:
  index 1, exactly the bilinear upsampling of the base's output;
- ``refined``: the base at B and the refiner (``--refine``) up to 4B, trained end to end;
- ``staged``: the recipe: the base alone at B (60% of the budget), then the refiner with the
  base frozen (20%), then both (20%);
- ``full``: the U2-Net run directly at 4B (the ceiling).

    python -m maskdepth.benchmarks.scripts.refine_quality --base 112 --minutes 20 --json out.json
    python -m maskdepth.benchmarks.scripts.refine_quality --base 64x128   # a wide set
    python -m maskdepth.benchmarks.scripts.refine_quality --quick   # a smoke test, seconds

Reports IoU, boundary F (2 px), depth RMSE, GFLOP (torch's FLOP counter, one 4B pair; the
bilinear row: the base at B) and CPU ms at batch 1 (the torch model, median of ``--repeats``),
as a Markdown table and JSON.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from maskdepth.benchmarks.measure import describe, machine, time_calls
from maskdepth.options import parse_size
from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
from maskdepth.train.config import TrainConfig, size_pair
from maskdepth.train.evaluate import evaluate
from maskdepth.train.models.u2net import InferenceModel
from maskdepth.train.trainer import train

QUICK = {"base": 32, "minutes": None, "steps": 2, "count": 14, "model": "u2netp-lite"}
STAGED = (0.6, 0.2, 0.2)  # the recipe's shares: base alone, refiner on a frozen base, both


def timed_forward(ckpt: Path, size: tuple[int, int], repeats: int) -> tuple[float, float]:
    """(GFLOP, median CPU ms) of the exported form of ``ckpt`` on one pair of ``size``."""
    model, _ = model_from_checkpoint(load_checkpoint(ckpt))
    net = InferenceModel(model).eval()
    bg, scene = torch.randn(1, 3, *size), torch.randn(1, 3, *size)
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            net(bg, scene)
        times = sorted(time_calls(lambda: net(bg, scene), warmup=1, iters=repeats))
    return counter.get_total_flops() / 1e9, times[len(times) // 2]


class Runs:
    """Training runs of one benchmark: the shared settings, a folder, each run's length."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.base, self.full = args.base, tuple(4 * side for side in args.base)

    def train(self, name: str, share: float = 1.0, **options) -> dict:
        a = self.args
        fixed = "steps" in options  # a fixed step count instead of a share of the budget
        minutes = None if a.minutes is None or fixed else a.minutes * share
        steps = options.pop("steps", a.steps if a.minutes is None else None)
        config = TrainConfig(
            data="synth", model=a.model, synth_count=a.count, batch=a.batch, max_minutes=minutes,
            steps=steps, workers=a.workers, threads=a.threads, out=str(self.folder / name),
            progress=False, samples=0, **options,
        )  # fmt: skip
        return train(config)

    def refined(self, name: str, share: float = 1.0, **options) -> dict:
        return self.train(name, share, sizes=[self.base], full_size=self.full, **options)


def run_variant(name: str, runs: Runs) -> dict:
    """Train variant ``name``, then score it at the full size and time its forward."""
    refine, timed_size = runs.args.refine, runs.full
    if name == "bilinear":
        base = runs.train("bilinear-base", sizes=[runs.base])
        result = runs.refined(
            name, refine=refine, init=base["last_path"], freeze="base", steps=1
        )  # one refiner step: the base's weights, frozen, scored through index 1
        result = base | {"last_path": result["last_path"], "timed": base["last_path"]}
        timed_size = runs.base
    elif name == "refined":
        result = runs.refined(name, refine=refine)
    elif name == "staged":
        base = runs.train("staged-base", STAGED[0], sizes=[runs.base])
        frozen = runs.refined(
            "staged-refiner", STAGED[1], refine=refine, init=base["last_path"], freeze="base"
        )
        result = runs.refined(name, STAGED[2], refine=refine, init=frozen["last_path"])
        result["step"] += base["step"] + frozen["step"]
        result["seconds"] += base["seconds"] + frozen["seconds"]
    else:
        result = runs.train(name, sizes=[runs.full])
    scores = evaluate(result["last_path"], workers=0, progress=False, refine=name != "bilinear")
    timed = Path(result.get("timed", result["last_path"]))
    gflop, ms = timed_forward(timed, timed_size, runs.args.repeats)
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
    parser.add_argument(
        "--base", type=parse_size, default=112, help="base size B, N or HxW (full: 4B)"
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget, each")
    parser.add_argument("--steps", type=int, default=None, help="or a fixed step count")
    parser.add_argument("--count", type=int, default=2000, help="synthetic scenes")
    parser.add_argument("--model", default="u2netp-md")
    parser.add_argument("--refine", default="guided")
    parser.add_argument(
        "--variants", default="bilinear,refined,staged,full", help="which rows, in order"
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the runs here (default: a temporary folder)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings: a smoke test")
    args = parser.parse_args(argv)
    if args.quick:
        vars(args).update(QUICK, batch=2, workers=0, repeats=2)
    if args.steps is not None:
        args.minutes = None
    args.base = size_pair(args.base)
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="refine_quality_") as folder:
        runs = Runs(args, args.out or Path(folder))
        rows = {name: run_variant(name, runs) for name in args.variants.split(",")}
    info = machine(gpu=None)
    report = {"machine": info, "base": list(args.base),
              "full": [4 * side for side in args.base], "rows": rows,
              "minutes": args.minutes, "model": args.model, "refine": args.refine}  # fmt: skip
    print(describe(info, "torch"))
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
