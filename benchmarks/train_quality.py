"""How good does the seed's network get on this machine in a fixed time, and how fast does it train?

    python -m maskdepth.benchmarks.train_quality --minutes 10 --threads 2 --json quality.json

1. Speed probe: training images/s of ``u2netp-md`` at 96 and at 224 (forward, the seed's loss,
   backward and an Adam step on a real batch, channels_last, after warm-up: the compute alone).
2. Quality: train from scratch on ``synth`` at 96x96 for ``--minutes`` with the OneCycle schedule
   sized from the probe so it finishes within the budget, then ``maskdepth eval`` on the val split.
   The share of each step spent waiting for data comes from the run's metrics.csv.
Targets from the issue: IoU >= 0.95 and RMSE <= 0.06 on the val split.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch

from maskdepth.benchmarks.data_throughput import machine
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.preprocess import Preprocessing
from maskdepth.train.config import TrainConfig
from maskdepth.train.data.loader import MaskDepthDataset
from maskdepth.train.data.synth import SynthSource
from maskdepth.train.evaluate import evaluate, format_result
from maskdepth.train.losses import LossConfig, compute_loss
from maskdepth.train.models import create_model
from maskdepth.train.trainer import train

TARGET_IOU, TARGET_RMSE = 0.95, 0.06


def probe_speed(size: int, batch: int, steps: int, warmup: int = 2) -> float:
    """Training images/s at ``size`` on one real synthetic batch (data loading excluded)."""
    dataset = MaskDepthDataset(SynthSource(batch, size, seed=1), pre=Preprocessing((size, size)))
    items = [dataset[i] for i in range(batch)]
    inputs = torch.stack([i["input"] for i in items]).contiguous(memory_format=torch.channels_last)
    mask, depth = torch.stack([i["mask"] for i in items]), torch.stack([i["depth"] for i in items])
    model = create_model("u2netp-md").to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    config = LossConfig()

    def step() -> None:
        loss, _ = compute_loss(model(inputs), mask, depth, config)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):  # oneDNN builds its kernels for every layer shape on first use
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def plan(images_per_s: float, minutes: float, batch: int, scenes: int) -> int:
    """Epochs of ``scenes`` that fit the budget, leaving ~15% for warm-up and validation."""
    budget_images = images_per_s * minutes * 60 * 0.85
    return max(1, int(budget_images // scenes))


def data_wait(run: Path) -> float:
    """Mean share of step time spent waiting for the loader, over the run's epochs."""
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sum(float(r["data_wait"]) for r in rows) / max(len(rows), 1)


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    speed96 = probe_speed(96, args.batch, args.probe_steps)
    speed224 = probe_speed(224, max(2, args.batch // 4), max(2, args.probe_steps // 2))
    print(f"probe: {speed96:.2f} images/s at 96, {speed224:.2f} at 224", flush=True)
    train_scenes = round(args.scenes * (1 - args.val_fraction))
    epochs = plan(speed96, args.minutes, args.batch, train_scenes)
    config = TrainConfig(
        data="synth",
        model="u2netp-md",
        size=96,
        epochs=epochs,
        batch=args.batch,
        out=str(args.out),
        threads=args.threads,
        workers=args.workers,
        max_minutes=args.minutes,
        synth_count=args.scenes,
        val_fraction=args.val_fraction,
        samples=6,
    )
    start = time.perf_counter()
    trained = train(config)
    minutes = (time.perf_counter() - start) / 60
    scores = evaluate(Path(args.out) / "last.pt", split="val", workers=args.workers)
    print(format_result(scores))
    return {
        "machine": machine(),
        "threads": args.threads,
        "train_images_per_s": {"96": round(speed96, 2), "224": round(speed224, 2)},
        "plan": {"epochs": epochs, "scenes": args.scenes, "batch": args.batch},
        "train_minutes": round(minutes, 2),
        "data_wait_share": round(data_wait(Path(args.out)), 4),
        "val": scores,
        "trainer": {k: v for k, v in trained.items() if isinstance(v, (int, float, str))},
        "targets": {"iou": TARGET_IOU, "rmse": TARGET_RMSE},
        "met": {"iou": scores["iou"] >= TARGET_IOU, "rmse": scores["rmse"] <= TARGET_RMSE},
    }


def markdown(report: dict) -> str:
    m, val, speed = report["machine"], report["val"], report["train_images_per_s"]
    return "\n".join(
        [
            f"Machine: {m['cpu']}, {m['cores']} cores, {report['threads']} torch threads; "
            f"torch {m['torch']}",
            "",
            "| what | value | target |",
            "|---|---:|---:|",
            f"| train images/s at 96 (compute) | {speed['96']:.2f} | |",
            f"| train images/s at 224 (compute) | {speed['224']:.2f} | |",
            f"| training time (min) | {report['train_minutes']:.1f} | |",
            f"| epochs x scenes | {report['plan']['epochs']} x {report['plan']['scenes']} | |",
            f"| share of step waiting for data | {report['data_wait_share']:.1%} | |",
            f"| val IoU ({val['count']} scenes) | {val['iou']:.4f} | >= {TARGET_IOU} |",
            f"| val RMSE | {val['rmse']:.4f} | <= {TARGET_RMSE} |",
            f"| val Dice / MAE / delta<1.25 | {val['dice']:.4f} / {val['mae']:.4f} / "
            f"{val['delta1']:.4f} | |",
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scenes", type=int, default=2000, help="synthetic scenes (train + val)")
    parser.add_argument("--val-fraction", type=float, default=0.05)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="loader processes (0: in the training process, which leaves both cores to PyTorch)",
    )
    parser.add_argument("--probe-steps", type=int, default=6)
    parser.add_argument("--out", type=Path, default=Path("runs/train_quality"))
    parser.add_argument("--json", type=Path, help="also write the report here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(markdown(report))
    if args.json:
        write_bytes_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
