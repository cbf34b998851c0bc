"""What a training run is asked to do: one plain dataclass, and the command-line options for it.

No torch here, so ``maskdepth --help`` stays fast. Every field is a plain type: the whole config
goes into each checkpoint as ``train`` and must load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields

from maskdepth.runtime.errors import MaskDepthError

DEVICES = ("auto", "cpu", "cuda")
SPLIT_BY = ("scene", "background")  # the same names as maskdepth.train.data.split.SPLIT_BY

# Options that shape the training trajectory: ``--resume`` refuses to continue a run when one
# of them differs from the checkpoint's (the rest, e.g. --workers or --max-minutes, may change).
TRAJECTORY = (
    "model",
    "size",
    "epochs",
    "batch",
    "accumulate",
    "lr",
    "seed",
    "synth_count",
    "synth_seed",
    "synth_per_background",
    "val_fraction",
    "split_by",
    "split_seed",
    "binarize",
    "loss_mask",
    "loss_depth",
    "ema_decay",
    "augment",
)


@dataclass
class TrainConfig:
    """One training run. ``batch`` is per process and per forward pass: the global batch of
    one optimizer step is ``batch x accumulate x WORLD_SIZE`` (WORLD_SIZE: torchrun's process
    count), and an epoch has that many fewer steps. BatchNorm sees ``batch`` images at a time."""

    data: str = "synth"  # a dataset folder in the seed's layout, or "synth"
    model: str = "u2netp-md"
    size: int = 96  # square side the network sees
    epochs: int = 10
    batch: int = 16
    accumulate: int = 1  # batches per optimizer step (gradient accumulation)
    out: str = "runs/u2netp-md"
    lr: float = 0.01  # OneCycle's max lr; it starts at lr / 10 (the seed's 1e-3 for 0.01)
    device: str = "auto"
    amp: bool = False  # CUDA: bf16 where supported, else fp16 + GradScaler; CPU: bf16
    workers: int = 2
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (CPU); None: torch's default
    max_minutes: float | None = None
    save_every: int = 0  # also write last.pt every this many steps (0: at epoch ends only)
    init: str | None = None  # start from another run's weights (e.g. one trained smaller)
    resume: bool = False  # continue OUT/last.pt exactly
    val_fraction: float = 0.1
    split_by: str = "scene"
    split_seed: int = 0  # the train/val split's seed: kept apart from --seed on purpose
    synth_count: int = 2000  # scenes for data="synth" (rendered on the fly at ``size``)
    synth_seed: int = 0
    synth_per_background: int = 20
    skip_bad: bool = False
    binarize: bool = True  # threshold stored masks at 0.5 (the seed's JPG masks are noisy)
    loss_mask: str = "bce"  # a LossConfig term spec, e.g. "bce+dice"
    loss_depth: str = "bce"  # e.g. "l1+0.5*ssim"
    ema_decay: float = 0.999  # 0: no EMA
    bn_reestimate: int = 0  # batches for BatchNorm re-estimation before validation (0: off)
    augment: bool = True
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    samples: int = 6  # validation scenes drawn in samples.png
    progress: bool = True  # the tqdm bar and one line per epoch (rank 0)

    def __post_init__(self) -> None:
        self.data, self.out = str(self.data), str(self.out)
        self.init = None if self.init is None else str(self.init)
        positive = {"size": self.size, "epochs": self.epochs, "batch": self.batch}
        positive["accumulate"] = self.accumulate
        positive |= {
            "synth_count": self.synth_count,
            "synth_per_background": self.synth_per_background,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise MaskDepthError(f"--{name.replace('_', '-')} {value}: expected >= 1")
        if self.size < 16:
            raise MaskDepthError(f"--size {self.size}: expected at least 16 pixels")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MaskDepthError(f"--lr {self.lr}: expected a finite number > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise MaskDepthError(f"--ema-decay {self.ema_decay}: expected 0 (off) or in (0, 1)")
        if min(self.workers, self.save_every, self.bn_reestimate, self.samples) < 0:
            raise MaskDepthError("--workers, --save-every, --bn-reestimate: expected >= 0")
        if self.threads is not None and self.threads < 1:
            raise MaskDepthError(f"--threads {self.threads}: expected >= 1")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise MaskDepthError(f"--max-minutes {self.max_minutes}: expected > 0")
        if self.device not in DEVICES:
            raise MaskDepthError(f"--device {self.device!r}: expected one of {', '.join(DEVICES)}")
        if self.split_by not in SPLIT_BY:
            raise MaskDepthError(f"--split-by {self.split_by!r}: expected scene or background")
        if self.init and self.resume:
            raise MaskDepthError("--init and --resume together: --resume already has weights")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``maskdepth train`` options (also ``python -m maskdepth.train``)."""
    d = TrainConfig()
    add = parser.add_argument
    add("--data", required=True, help="dataset folder in the seed's layout, or 'synth'")
    add("--model", default=d.model, help=f"model name (default {d.model})")
    add("--size", type=int, default=d.size, help="square input side in pixels")
    add("--epochs", type=int, default=d.epochs, help=f"passes over the train split ({d.epochs})")
    add("--batch", type=int, default=d.batch, help="per process and pass (see --accumulate)")
    add(
        "--accumulate",
        type=int,
        default=d.accumulate,
        metavar="K",
        help="batches per optimizer step: global batch = batch x K x processes",
    )
    add("--out", required=True, help="run folder: last.pt, best.pt, metrics.csv, pictures")
    add("--lr", type=float, default=d.lr, help="OneCycle max learning rate (starts at lr/10)")
    add("--device", choices=DEVICES, default=d.device)
    add(
        "--amp",
        action="store_true",
        help="mixed precision: CUDA bf16 or fp16; CPU bf16 (slow on CPUs without native bf16)",
    )
    add("--workers", type=int, default=d.workers, help="data loader processes")
    add("--seed", type=int, default=d.seed, help="weights, sample order and augmentation")
    add("--threads", type=int, help="torch threads on CPU (default: torch's choice)")
    add(
        "--max-minutes",
        type=float,
        help="stop after this much time: ends the step, validates, saves",
    )
    add("--save-every", type=int, default=0, metavar="STEPS", help="also write last.pt this often")
    add("--init", metavar="CKPT", help="start from another run's weights (progressive resizing)")
    add("--resume", action="store_true", help="continue OUT/last.pt exactly")
    add("--val-fraction", type=float, default=d.val_fraction, help="share held out for validation")
    add("--split-by", choices=SPLIT_BY, default=d.split_by, help="background: no bg on both sides")
    add("--split-seed", type=int, default=d.split_seed, help=argparse.SUPPRESS)
    add("--synth-count", type=int, default=d.synth_count, help="scenes for --data synth")
    add("--synth-seed", type=int, default=d.synth_seed, help=argparse.SUPPRESS)
    add("--synth-per-background", type=int, default=d.synth_per_background, help=argparse.SUPPRESS)
    add("--skip-bad", action="store_true", help="skip broken scenes instead of stopping")
    add("--no-binarize", dest="binarize", action="store_false", help="keep masks as stored")
    add("--loss-mask", default=d.loss_mask, help="mask loss terms, e.g. bce or bce+dice")
    add("--loss-depth", default=d.loss_depth, help="depth loss terms, e.g. bce or l1+0.5*ssim")
    add("--ema-decay", type=float, default=d.ema_decay, help="weights' moving average (0: off)")
    add(
        "--bn-reestimate",
        type=int,
        default=0,
        metavar="BATCHES",
        help="recompute BatchNorm statistics on this many batches before validating",
    )
    add(
        "--augment",
        action=argparse.BooleanOptionalAction,
        default=d.augment,
        help="flip, crop and colour jitter",
    )
    add("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun")
    add("--samples", type=int, default=d.samples, help="scenes in samples.png")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed ``add_train_arguments`` options (other attributes ignored)."""
    return TrainConfig.from_dict(vars(args))
