"""What a training run is asked to do: one plain dataclass, and the command-line options for it.

No torch here, so ``maskdepth --help`` stays fast. Every field is a plain type: the whole config
goes into each checkpoint as ``train`` and must load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import asdict, dataclass, fields

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.runners.cuda import DEVICES

from .models.configs import default_config

SPLIT_BY = ("scene", "background")  # the same names as maskdepth.train.data.split.SPLIT_BY

# Options that shape the training trajectory: ``--resume`` refuses to continue a run when one
# of them differs from the checkpoint's (the rest, e.g. --workers or --max-minutes, may change).
TRAJECTORY = (
    "model",
    "size",
    "epochs",
    "steps",
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
    "side_weight",
    "ema_decay",
    "augment",
    "warmup",
    "prior",
    "val_every",
)
AUGMENTS = ("none", "geometry", "basic", "camera")  # see maskdepth.train.data.augment.preset
PRIORS = ("none", "difference")  # see maskdepth.train.models.u2net.U2NetMD.init_prior
DEFAULT_EPOCHS = 10  # without a time budget; with one, --epochs is only an upper bound


@dataclass
class TrainConfig:
    """One training run. ``batch`` is per process and per forward pass: the global batch of
    one optimizer step is ``batch x accumulate x WORLD_SIZE`` (WORLD_SIZE: torchrun's process
    count), and an epoch has that many fewer steps. BatchNorm sees ``batch`` images at a time."""

    data: str = "synth"  # a dataset folder in the seed's layout, or "synth"
    model: str = "u2netp-md"
    size: int = 96  # square side the network sees (the last stage's with ``sizes``)
    sizes: list[int] | None = None  # progressive sizes, one stage each (maskdepth.train.stages)
    epochs: int | None = None  # None: DEFAULT_EPOCHS, or as many as fit in --max-minutes/--steps
    steps: int | None = None  # the run's length in optimizer steps (an upper bound with a budget)
    batch: int = 8  # measured: more steps per image beat BatchNorm noise (README, Training)
    accumulate: int = 1  # batches per optimizer step (gradient accumulation)
    out: str = "runs/u2netp-md"
    lr: float = 0.01  # OneCycle's max lr; it starts at lr / 10 (the seed's 1e-3 for 0.01)
    warmup: float = 0.5  # share of the steps spent warming up to lr (the seed's pct_start)
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
    loss_mask: str = "bce+iou"  # a LossConfig term spec; the seed's was "bce"
    loss_depth: str = "bce"  # e.g. "l1+0.5*ssim"
    side_weight: float = 0.3  # each side output's loss weight (the fused output's is 1)
    ema_decay: float = 0.0  # 0: no EMA (measured: it lags in budgets of hundreds of steps)
    bn_reestimate: int = 0  # batches for BatchNorm re-estimation before validation (0: off)
    augment: str = "none"  # one of AUGMENTS (measured: crops cost a fixed camera its layout)
    prior: str = "difference"  # one of PRIORS: how the first convolution starts
    val_every: int = 0  # validate every this many steps too (0: at epoch ends only)
    sync_bn: bool = False  # SyncBatchNorm under DDP (CUDA only)
    samples: int = 6  # validation scenes drawn in samples.png
    progress: bool = True  # the tqdm bar and one line per epoch (rank 0)

    def __post_init__(self) -> None:
        self.data, self.out = str(self.data), str(self.out)
        self.init = None if self.init is None else str(self.init)
        if isinstance(self.augment, bool):  # checkpoints from before the presets
            self.augment = "basic" if self.augment else "none"
        positive = {"size": self.size, "epochs": self.epochs or 1, "batch": self.batch}
        positive["steps"] = self.steps or 1
        positive["accumulate"] = self.accumulate
        positive |= {
            "synth_count": self.synth_count,
            "synth_per_background": self.synth_per_background,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise MaskDepthError(f"--{name.replace('_', '-')} {value}: expected >= 1")
        if self.sizes:
            self.sizes = [int(v) for v in self.sizes]
            self.size = self.sizes[-1]
        if min(self.sizes or [self.size]) < 16:
            raise MaskDepthError(
                f"--size {min(self.sizes or [self.size])}: expected at least 16 pixels"
            )
        default_config(self.model).check_size(self.size)  # the size exported (the last stage's)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MaskDepthError(f"--lr {self.lr}: expected a finite number > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise MaskDepthError(f"--ema-decay {self.ema_decay}: expected 0 (off) or in (0, 1)")
        if min(self.workers, self.save_every, self.bn_reestimate, self.samples, self.val_every) < 0:
            raise MaskDepthError(
                "--workers, --save-every, --val-every, --bn-reestimate: expected >= 0"
            )
        if not 0.0 < self.warmup < 1.0:
            raise MaskDepthError(f"--warmup {self.warmup}: expected a share in (0, 1)")
        if not (math.isfinite(self.side_weight) and self.side_weight >= 0):
            raise MaskDepthError(f"--side-weight {self.side_weight}: expected a number >= 0")
        for name, valid in (("augment", AUGMENTS), ("prior", PRIORS)):
            value = getattr(self, name)
            if value not in valid:
                raise MaskDepthError(f"--{name} {value!r}: expected one of {', '.join(valid)}")
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

    def epoch_limit(self) -> int | None:
        """At most this many epochs (None: as many as --steps or the time budget allow)."""
        if self.epochs is not None:
            return self.epochs
        return None if self.max_minutes is not None or self.steps else DEFAULT_EPOCHS

    def step_limit(self, steps_per_epoch: int) -> int | None:
        """At most this many optimizer steps (None: as many as the time budget allows)."""
        epochs = self.epoch_limit()
        limits = [n for n in (self.steps, epochs and epochs * steps_per_epoch) if n]
        return min(limits) if limits else None

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
    add(
        "--size",
        "--sizes",
        dest="sizes",
        type=_sizes,
        default=[d.size],
        metavar="PX[,PX...]",
        help=f"square input side in pixels (default {d.size}); several, e.g. 64,96,224: "
        "progressive stages, each from the last one's weights",
    )
    add(
        "--epochs",
        type=int,
        help=f"passes over the train split (default {DEFAULT_EPOCHS}; with --max-minutes, "
        "an upper bound on the planned run)",
    )
    add("--steps", type=int, help="the run's length in optimizer steps, instead of --epochs")
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
    add("--warmup", type=float, default=d.warmup, help="share of the run warming up to --lr")
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
        "--time",
        dest="max_minutes",
        type=float,
        help="time budget: the run measures its speed on its first steps and plans its "
        "schedule to end annealed, validated and saved within it",
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
    add("--side-weight", type=float, default=d.side_weight, help="side outputs' loss weight")
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
        choices=AUGMENTS,
        default=d.augment,
        help="none; geometry (flip, crop); basic (+ colour jitter); camera (+ noise, JPEG, shake)",
    )
    add("--no-augment", dest="augment", action="store_const", const="none", help=argparse.SUPPRESS)
    add("--prior", choices=PRIORS, default=d.prior, help="first-convolution start (difference: "
        "filters that see scene minus bg)")  # fmt: skip
    add("--val-every", type=int, default=0, metavar="STEPS", help="also validate this often")
    add("--sync-bn", action="store_true", help="SyncBatchNorm across GPUs under torchrun")
    add("--samples", type=int, default=d.samples, help="scenes in samples.png")
    add("--no-progress", dest="progress", action="store_false", help="no progress bar")


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected pixels, e.g. 96 or 64,96") from None
    return sizes


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed ``add_train_arguments`` options (other attributes ignored)."""
    return TrainConfig.from_dict(vars(args))
