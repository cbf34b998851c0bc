"""How fast does ``u2netp-md`` train on this machine, and which settings make it faster?

    python -m maskdepth.benchmarks.scripts.train_speed --data data/photos/ablation \\
        --sizes 64,96,224 \\
        --out runs/train_speed

Two measurements per size, side by side in one process:

1. Compute: images/s of forward, loss, backward and an Adam step on one fixed batch (no data),
   for the memory format (channels_last against NCHW), bf16 autocast (``--amp`` on the CPU,
   as the trainer sets it up) and ``torch.compile`` (its compile time reported apart).
2. The real loop: ``maskdepth train`` itself for ``--seconds`` per setting (data loading,
   augmentation, forward, backward, EMA), its steady speed read from the trainer's own
   measurement (the plan's seconds per step, first step left out) and the share of each step
   spent waiting for data; the settings are loader processes and batch size. Without
   ``--data``, only the compute part runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from maskdepth.benchmarks.measure import machine
from maskdepth.runtime.image import write_bytes_atomic

LOOPS = {  # name -> TrainConfig options; "workers 2, batch 16" were the defaults before
    "workers 2, batch 16": {"workers": 2, "batch": 16},
    "workers 1, batch 16": {"workers": 1, "batch": 16},
    "workers 0, batch 16": {"workers": 0, "batch": 16},
    "workers 0, batch 8": {"workers": 0, "batch": 8},
}


def compute_speed(
    size: int, batch: int, channels_last: bool, compile: bool, steps: int, amp: bool = False
) -> dict:
    """Images/s of training steps on one batch; with ``compile``, the compile time too; with
    ``amp``, the forward pass in the trainer's CPU autocast (bf16)."""
    from maskdepth.train.device import amp_dtype, autocast
    from maskdepth.train.losses import LossConfig, compute_loss
    from maskdepth.train.models import create_model

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    inputs = torch.randn(batch, 6, size, size).contiguous(memory_format=fmt)
    mask = (torch.rand(batch, 1, size, size) > 0.9).float()
    depth = torch.rand(batch, 1, size, size)
    # Module.to takes memory_format (documented, and done at runtime); torch's stubs omit it.
    model: torch.nn.Module = create_model("u2netp-md").to(memory_format=fmt).train()  # type: ignore[call-overload]
    net = torch.compile(model) if compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    cpu = torch.device("cpu")
    dtype = amp_dtype(amp, cpu)

    def step() -> None:
        with autocast(cpu, dtype):
            outputs = net(inputs)
        loss, _ = compute_loss(outputs, mask, depth, LossConfig())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()  # builds kernels (and compiles)
    first = time.perf_counter() - start
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    # per CPU second too: on a busy machine (other jobs) the wall clock says little
    return {
        "images_per_s": steps * batch / seconds,
        "images_per_cpu_s": steps * batch / cpu_seconds,
        "first_step_s": first,
    }


def loop_speed(data: str, size: int, seconds: float, options: dict, out: Path) -> dict:
    """The trainer's steady speed for ``seconds`` of ``maskdepth train`` with ``options``."""
    from maskdepth.train.checkpoint import load_checkpoint
    from maskdepth.train.config import TrainConfig
    from maskdepth.train.trainer import train

    run = out / f"loop-{size}-{'-'.join(f'{k}{v}' for k, v in options.items())}"
    config = TrainConfig(
        data=data, sizes=[size], out=str(run), max_minutes=seconds / 60, progress=False, **options
    )
    result = train(config)
    plan = load_checkpoint(run / "last.pt")["plan"]
    step_s = plan["step_seconds"]
    return {
        "images_per_s": options["batch"] / step_s if step_s else None,
        "data_wait": result["data_wait"],
        "steps": result["step"],
    }


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    report: dict = {"machine": machine(), "threads": args.threads, "compute": [], "loop": []}
    for size in args.sizes:
        batch = args.batch or (16 if size <= 128 else 4)
        settings = [("channels_last", True, False, False)]
        settings += [] if args.amp_only else [("NCHW", False, False, False)]
        settings += [("channels_last + bf16 autocast", True, False, True)]
        settings += [("channels_last + torch.compile", True, True, False)] if args.compile else []
        for _ in range(args.repeats):  # interleaved, so a busy spell hits every setting
            for name, channels_last, compile, amp in settings:
                measured = compute_speed(size, batch, channels_last, compile, args.steps, amp)
                row = {"size": size, "batch": batch, "setting": name, **measured}
                report["compute"].append(row)
                print(f"compute {size} px, {name}: {row['images_per_s']:.2f} images/s", flush=True)
        for name, options in LOOPS.items() if args.data else ():
            seconds = args.seconds * max(1.0, (size / 96) ** 2 / 2)  # enough steps at 224 too
            measured = loop_speed(args.data, size, seconds, options, args.out)
            report["loop"].append({"size": size, "setting": name, **measured})
            print(f"loop {size} px, {name}: {measured['images_per_s']:.2f} images/s", flush=True)
    return report


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {report['threads']} torch threads; "
        f"torch {m['versions'].get('torch')}",
        "",
        "| what | size | setting | images/s | images/CPU s | first step (s) / data wait |",
        "|---|---:|---|---:|---:|---:|",
    ]
    for row in report["compute"]:
        lines.append(
            f"| compute (batch {row['batch']}) | {row['size']} | {row['setting']} | "
            f"{row['images_per_s']:.2f} | {row['images_per_cpu_s']:.2f} | "
            f"{row['first_step_s']:.1f} s |"
        )
    for row in report["loop"]:
        lines.append(
            f"| real loop | {row['size']} | {row['setting']} | {row['images_per_s']:.2f} | | "
            f"{row['data_wait']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="dataset folder for the real loop (none: compute only)")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[64, 96])
    parser.add_argument("--seconds", type=float, default=60.0, help="real-loop time per setting")
    parser.add_argument("--steps", type=int, default=4, help="timed compute steps per setting")
    parser.add_argument("--batch", type=int, help="compute batch (default 16; 4 over 128 px)")
    parser.add_argument("--repeats", type=int, default=1, help="compute rounds, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument(
        "--amp-only", action="store_true", help="compute: channels_last in fp32 and bf16 only"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/train_speed"))
    args = parser.parse_args(argv)
    report = run(args)
    text = markdown(report)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out / "train_speed.md", text.encode())
    write_bytes_atomic(
        args.out / "train_speed.json", (json.dumps(report, indent=1) + "\n").encode()
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
