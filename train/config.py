"""What a training run is asked to do: one plain dataclass, and the command-line options for it.

No torch here, so ``maskdepth --help`` stays fast. Every field is a plain type: the whole config
goes into each checkpoint as ``train`` and must load with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

from maskdepth.options import add_options, device_option, option, options_from, parse_size
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.runners.cuda import EXPECTED_DEVICE, parse_device

from .data.split import SPLIT_BY
from .models.configs import default_config

# Options that shape the training trajectory: ``--resume`` refuses to continue a run when one
# of them differs from the checkpoint's (the rest, e.g. --workers or --max-minutes, may change).
TRAJECTORY = (
    "model",
    "sizes",
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
    "full_size",
    "refine",
    "freeze",
)
AUGMENTS = ("none", "geometry", "basic", "camera")  # see maskdepth.train.data.augment.preset
PRIORS = ("none", "difference")  # see maskdepth.train.models.u2net.U2NetMD.init_prior
FREEZES = ("none", "base", "refiner")  # a refined model's part that does not learn
DEFAULT_REFINE = "guided"  # with --full-size (measured against "conv": README, Refinement)
DEFAULT_SIZE = 96
DEFAULT_EPOCHS = 10  # without a time budget; with one, --epochs is only an upper bound


Size = int | tuple[int, int]  # one side (square) or (height, width); see parse_size


def _sizes(text: str) -> tuple[Size, ...]:
    try:
        return tuple(parse_size(part) for part in text.split(","))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected pixels, e.g. 96 or 64,96 (HxW too: 128x224)"
        ) from None


def normal_size(size: object) -> Size:
    """A checked size as stored: an int, or an (h, w) tuple when not square."""
    if isinstance(size, int) and not isinstance(size, bool):
        return size
    if (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in size)
    ):
        height, width = size
        return height if height == width else (height, width)
    raise MaskDepthError(f"--size {size!r}: expected a side or (height, width), e.g. 128x224")


def size_pair(size: Size) -> tuple[int, int]:
    """(height, width) of a size."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def size_text(size: Size) -> str:
    """A size as it is typed: ``96`` or ``128x224``."""
    return str(size) if isinstance(size, int) else f"{size[0]}x{size[1]}"


@dataclass
class TrainConfig:
    """One training run. ``batch`` is per process and per forward pass: the global batch of
    one optimizer step is ``batch x accumulate x WORLD_SIZE`` (WORLD_SIZE: torchrun's process
    count), and an epoch has that many fewer steps. BatchNorm sees ``batch`` images at a time."""

    data: str = option(  # a dataset folder in the seed's layout, or "synth"
        "synth", required=True, help="dataset folder in the seed's layout, or 'synth'"
    )
    model: str = option("u2netp-md", help="model name (default %(default)s)")
    sizes: Sequence[Size] = option(  # progressive sizes, one stage each (train.stages)
        (DEFAULT_SIZE,),
        "--size",
        "--sizes",
        type=_sizes,
        metavar="PX[,PX...]",
        help=f"input side in pixels, or HxW (default {DEFAULT_SIZE}); several, e.g. 64,96,224: "
        "progressive stages, each from the last one's weights; with --full-size: the base size",
    )
    full_size: Size | None = option(  # a refined model: data and loss at this size
        None,
        type=parse_size,
        metavar="PX|HxW",
        help="train a refined model: data and loss at this full resolution, the network at "
        "--size inside it, a learned refiner up to the full size",
    )
    refine: str | None = option(  # None: DEFAULT_REFINE with --full-size
        None, help=f"the refiner with --full-size (default {DEFAULT_REFINE}; or conv)"
    )
    freeze: str = option(
        "none", choices=FREEZES, help="a refined model's part that does not learn (with --init)"
    )
    epochs: int | None = option(  # None: DEFAULT_EPOCHS, or as many as fit in --max-minutes
        None,
        type=int,
        help=f"passes over the train split (default {DEFAULT_EPOCHS}; with --max-minutes, "
        "an upper bound on the planned run)",
    )
    steps: int | None = option(  # optimizer steps (an upper bound with a time budget)
        None, type=int, help="the run's length in optimizer steps, instead of --epochs"
    )
    # measured: more steps per image beat BatchNorm noise (README, Training)
    batch: int = option(8, type=int, help="per process and pass (see --accumulate)")
    accumulate: int = option(  # batches per optimizer step (gradient accumulation)
        1,
        type=int,
        metavar="K",
        help="batches per optimizer step: global batch = batch x K x processes",
    )
    out: str = option(
        "runs/u2netp-md",
        required=True,
        help="run folder: last.pt, best.pt, metrics.csv, pictures",
    )
    # OneCycle's max lr; it starts at lr / 10 (the seed's 1e-3 for 0.01)
    lr: float = option(0.01, type=float, help="OneCycle max learning rate (starts at lr/10)")
    warmup: float = option(  # the seed's pct_start
        0.5, type=float, help="share of the run warming up to --lr"
    )
    device: str = device_option()
    amp: bool | None = option(  # None: on for CUDA, off for the CPU (train.device.amp_on)
        None,
        action=argparse.BooleanOptionalAction,
        help="mixed precision (default: on for CUDA, off for the CPU): bf16 on GPUs of "
        "compute capability 8.0 and up and on the CPU (fast only with AMX or AVX-512 BF16), "
        "else fp16 with loss scaling",
    )
    workers: int = option(2, type=int, help="data loader processes")
    seed: int = option(0, type=int, help="weights, sample order and augmentation")
    threads: int | None = option(  # torch intra-op threads (CPU); None: torch's default
        None, type=int, help="torch threads on CPU (default: torch's choice)"
    )
    max_minutes: float | None = option(
        None,
        "--max-minutes",
        "--time",
        type=float,
        help="time budget: the run measures its speed on its first steps and plans its "
        "schedule to end annealed, validated and saved within it",
    )
    save_every: int = option(  # 0: at epoch ends only
        0, type=int, metavar="STEPS", help="also write last.pt this often"
    )
    init: str | None = option(  # e.g. a run trained smaller
        None, metavar="CKPT", help="start from another run's weights (progressive resizing)"
    )
    resume: bool = option(False, action="store_true", help="continue OUT/last.pt exactly")
    val_fraction: float = option(0.1, type=float, help="share held out for validation")
    split_by: str = option("scene", choices=SPLIT_BY, help="background: no bg on both sides")
    split_seed: int = option(  # the train/val split's seed: kept apart from --seed on purpose
        0, type=int, help=argparse.SUPPRESS
    )
    synth_count: int = option(  # rendered on the fly at ``size``
        2000, type=int, help="scenes for --data synth"
    )
    synth_seed: int = option(0, type=int, help=argparse.SUPPRESS)
    synth_per_background: int = option(20, type=int, help=argparse.SUPPRESS)
    skip_bad: bool = option(
        False, action="store_true", help="skip broken scenes instead of stopping"
    )
    binarize: bool = option(  # threshold stored masks at 0.5 (the seed's JPG masks are noisy)
        True, "--no-binarize", action="store_false", help="keep masks as stored"
    )
    loss_mask: str = option(  # a LossConfig term spec; the seed's was "bce"
        "bce+iou", help="mask loss terms, e.g. bce or bce+dice"
    )
    loss_depth: str = option("bce", help="depth loss terms, e.g. bce or l1+0.5*ssim")
    side_weight: float = option(  # the fused output's is 1
        0.3, type=float, help="side outputs' loss weight"
    )
    ema_decay: float = option(  # measured: it lags in budgets of hundreds of steps
        0.0, type=float, help="weights' moving average (0: off)"
    )
    bn_reestimate: int = option(
        0,
        type=int,
        metavar="BATCHES",
        help="recompute BatchNorm statistics on this many batches before validating",
    )
    augment: str = option(  # measured: crops cost a fixed camera its layout
        "none",
        choices=AUGMENTS,
        help="none; geometry (flip, crop); basic (+ colour jitter); camera (+ noise, JPEG, shake)",
    )
    prior: str = option(  # how the first convolution starts
        "difference",
        choices=PRIORS,
        help="first-convolution start (difference: filters that see scene minus bg)",
    )
    val_every: int = option(  # 0: at epoch ends only
        0, type=int, metavar="STEPS", help="also validate this often"
    )
    sync_bn: bool = option(  # CUDA only
        False, action="store_true", help="SyncBatchNorm across GPUs under torchrun"
    )
    samples: int = option(6, type=int, help="scenes in samples.png")  # validation scenes drawn
    progress: bool = option(  # the tqdm bar and one line per epoch (rank 0)
        True, "--no-progress", action="store_false", help="no progress bar"
    )

    def __post_init__(self) -> None:
        self.data, self.out = str(self.data), str(self.out)
        self.init = None if self.init is None else str(self.init)
        self._check_sizes()
        self._check_refine()
        self._check_counts()
        default_config(self.model)  # an unknown model fails here, before any work
        self._check_numbers()
        self._check_names()
        if self.init and self.resume:
            raise MaskDepthError("--init and --resume together: --resume already has weights")

    @property
    def size(self) -> Size:
        """The size the network sees in the run's last stage (a side, or (h, w)): the size it
        exports; a refined model's base size."""
        return self.sizes[-1]

    @property
    def data_size(self) -> tuple[int, int]:
        """(height, width) of the data, the loss and the metrics: --full-size when refined."""
        return size_pair(self.full_size if self.full_size is not None else self.size)

    def _check_sizes(self) -> None:
        sizes = self.sizes
        if not isinstance(sizes, (list, tuple)) or not sizes:
            raise MaskDepthError(f"--size {sizes!r}: expected a list of sides, e.g. [64, 96]")
        self.sizes = tuple(normal_size(v) for v in sizes)
        smallest = min(min(size_pair(v)) for v in self.sizes)
        if smallest < 16:
            raise MaskDepthError(f"--size {smallest}: expected at least 16 pixels")

    def _check_refine(self) -> None:
        if self.full_size is None:
            if self.refine is not None or self.freeze != "none":
                flag = "--refine" if self.refine is not None else "--freeze"
                raise MaskDepthError(f"{flag} needs --full-size (a refined model)")
            return
        self.full_size = normal_size(self.full_size)
        self.refine = self.refine or DEFAULT_REFINE
        if len(self.sizes) > 1:
            raise MaskDepthError(
                f"--size {','.join(map(size_text, self.sizes))} with --full-size: progressive "
                "sizes do not take a refiner; train the base progressively, then pass its "
                "best.pt to --init with one --size"
            )
        if self.freeze != "none" and self.bn_reestimate:
            raise MaskDepthError(
                f"--freeze {self.freeze} with --bn-reestimate: re-estimating BatchNorm would "
                "change the frozen part's statistics; pass --bn-reestimate 0"
            )
        base, full = size_pair(self.size), size_pair(self.full_size)
        if full[0] < base[0] or full[1] < base[1]:
            raise MaskDepthError(
                f"--full-size {size_text(self.full_size)}: expected at least --size "
                f"{size_text(self.size)} each way"
            )

    def _check_counts(self) -> None:
        positive = {"epochs": self.epochs or 1, "batch": self.batch,
                    "steps": self.steps or 1, "accumulate": self.accumulate,
                    "synth_count": self.synth_count,
                    "synth_per_background": self.synth_per_background}  # fmt: skip
        for name, value in positive.items():
            if int(value) < 1:
                raise MaskDepthError(f"--{name.replace('_', '-')} {value}: expected >= 1")
        if min(self.workers, self.save_every, self.bn_reestimate, self.samples, self.val_every) < 0:
            raise MaskDepthError(
                "--workers, --save-every, --val-every, --bn-reestimate: expected >= 0"
            )
        if self.threads is not None and self.threads < 1:
            raise MaskDepthError(f"--threads {self.threads}: expected >= 1")

    def _check_numbers(self) -> None:
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MaskDepthError(f"--lr {self.lr}: expected a finite number > 0")
        if not 0.0 <= self.ema_decay < 1.0:
            raise MaskDepthError(f"--ema-decay {self.ema_decay}: expected 0 (off) or in (0, 1)")
        if not 0.0 < self.warmup < 1.0:
            raise MaskDepthError(f"--warmup {self.warmup}: expected a share in (0, 1)")
        if not (math.isfinite(self.side_weight) and self.side_weight >= 0):
            raise MaskDepthError(f"--side-weight {self.side_weight}: expected a number >= 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise MaskDepthError(f"--max-minutes {self.max_minutes}: expected > 0")

    def _check_names(self) -> None:
        checked = (("augment", AUGMENTS), ("prior", PRIORS), ("split_by", SPLIT_BY),
                   ("freeze", FREEZES))  # fmt: skip
        for name, valid in checked:
            value = getattr(self, name)
            if value not in valid:
                flag = name.replace("_", "-")
                raise MaskDepthError(f"--{flag} {value!r}: expected one of {', '.join(valid)}")
        try:
            parse_device(self.device)
        except MaskDepthError:
            raise MaskDepthError(f"--device {self.device!r}: {EXPECTED_DEVICE}") from None

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
    add_options(parser, TrainConfig)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig of parsed ``add_train_arguments`` options (other attributes ignored)."""
    return options_from(TrainConfig, args)
