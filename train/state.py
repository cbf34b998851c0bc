"""A run's training state: model (and its DDP wrapper), EMA, optimizer, learning-rate plan,
loss scaler and counters, with the checkpoint payload that holds it and the restore from one.

Exact resume: a checkpoint holds model, EMA, optimizer, scheduler, scaler and RNG states plus
the batches done in the current epoch (with that epoch's statistics so far), which a resumed run
skips. ``best`` is the validation with the highest ``iou - rmse``: both in [0, 1], one point of
IoU weighs as much as 0.01 of depth RMSE, and a tie goes to the earlier one.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import ModelInfo

from .checkpoint import load_checkpoint, load_weights, model_record, rng_state, set_rng_state
from .config import TRAJECTORY, TrainConfig, size_pair, size_text
from .device import CHANNELS_LAST, amp_dtype, scales_loss
from .distributed import Dist
from .ema import make_ema
from .losses import LossConfig
from .models import create_model
from .models.refiner import RefinedModel
from .models.u2net import U2NetMD
from .plan import UNBOUNDED, OneCycle, Plan

NO_BEST: dict[str, float | None] = dict.fromkeys(("epoch", "step", "iou", "rmse", "score"))


def resume_checkpoint(out: Path, resume: bool) -> dict | None:
    """``out/last.pt`` with ``--resume`` (which needs it); None for a new run (which must not
    find one)."""
    last = out / "last.pt"
    if resume:
        if not last.is_file():
            raise MaskDepthError(f"--resume: no {last} to continue; start without --resume")
        return load_checkpoint(last)
    if last.exists():
        raise MaskDepthError(
            f"{out} already holds a run (last.pt); pass --resume to continue it "
            "or choose another --out"
        )
    return None


def init_weights(model: nn.Module, path: str, name: str) -> None:
    """Load ``--init``'s weights (its EMA when it has one) into ``model``; a refined model
    takes a base-only (unrefined) checkpoint's into its ``base``."""
    ckpt = load_checkpoint(path)
    other = ckpt["model"]["name"]
    if other != name:
        raise MaskDepthError(f"--init {path}: a {other} checkpoint, but this run trains {name}")
    weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
    refined = (ckpt["model"].get("options") or {}).get("refine") is not None
    target = getattr(model, "base", None)
    if target is None or refined:  # an unrefined run, or a refined checkpoint: the whole model
        if refined and target is None:
            raise MaskDepthError(
                f"--init {path}: a refined checkpoint, but this run trains no refiner "
                "(pass --full-size)"
            )
        target = model
    load_weights(target, weights, name)


def freeze(model: nn.Module, part: str) -> nn.Module | None:
    """``--freeze``: the refined model's ``part`` ("base", "refiner") stops learning; returns it
    (None for "none"), which :meth:`TrainState.train_mode` keeps in eval mode so that its
    BatchNorm statistics stay as they are too."""
    if part == "none":
        return None
    frozen = getattr(model, part, None)
    if not isinstance(frozen, nn.Module):
        raise MaskDepthError(f"--freeze {part}: the model has no {part} (pass --full-size)")
    frozen.requires_grad_(False)
    return frozen


def check_resume(ckpt: dict, config: TrainConfig, record: dict, job: Dist) -> None:
    """--resume continues the same run: the options that shape it and the data must match."""
    saved = TrainConfig.from_dict(ckpt["train"])
    diffs = [
        f"{_flag(name)} {_shown(name, getattr(saved, name))} "
        f"(now {_shown(name, getattr(config, name))})"
        for name in TRAJECTORY
        if getattr(saved, name) != getattr(config, name)
    ]
    old = ckpt["data"]
    if old["spec"] != record["spec"]:
        diffs.append(f"--data {old['spec']} (now {record['spec']})")
    elif old["manifest_hash"] != record["manifest_hash"]:
        diffs.append(f"the dataset's manifest changed since (hash {old['manifest_hash']})")
    if ckpt["progress"]["world"] != job.world:
        diffs.append(f"{ckpt['progress']['world']} process(es) (now {job.world})")
    if diffs:
        raise MaskDepthError(
            f"--resume: {config.out}/last.pt was trained with {'; '.join(diffs)}; "
            "pass the same options or choose another --out"
        )


def _flag(name: str) -> str:
    return "--size" if name == "sizes" else f"--{name.replace('_', '-')}"


def _shown(name: str, value: object) -> str:
    """A value as its option is typed: sizes ``(64, (128, 224))`` as ``64,128x224``."""
    if name == "sizes" and isinstance(value, tuple):
        return ",".join(map(size_text, value))
    if name == "full_size" and value is not None:
        return size_text(value)  # type: ignore[arg-type]
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def build_model(config: TrainConfig, job: Dist, device: torch.device) -> nn.Module:
    """The network of ``config`` (``--init`` weights or ``--prior``) on ``device``, in
    channels_last, with SyncBatchNorm under ``--sync-bn``; with ``--full-size`` the refined
    model, whose base runs at ``--size``."""
    model = create_model(config.model, refine=config.refine)
    if isinstance(model, RefinedModel):
        model.base_size = size_pair(config.size)
    if config.init:
        init_weights(model, config.init, config.model)
    elif config.prior != "none":
        network = model.base if isinstance(model, RefinedModel) else model
        if not isinstance(network, U2NetMD):
            raise MaskDepthError(f"--prior {config.prior}: not for {config.model}")
        network.init_prior(config.prior)
    if config.sync_bn and job.active:
        if device.type != "cuda":
            raise MaskDepthError("--sync-bn needs CUDA (SyncBatchNorm does not run on CPU)")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    # Module.to takes memory_format (documented, and done at runtime); torch's stubs omit it.
    return model.to(device, memory_format=CHANNELS_LAST)  # type: ignore[call-overload]


class TrainState:
    """Everything a checkpoint restores, built fresh (or with ``--init``) from ``config``;
    :meth:`restore` continues a checkpoint. ``started`` is when the run began (the time budget
    counts from there); ``steps_per_epoch`` sizes a ``--epochs`` or ``--steps`` run."""

    def __init__(
        self,
        config: TrainConfig,
        job: Dist,
        device: torch.device,
        steps_per_epoch: int,
        started: float,
    ) -> None:
        self.config, self.job, self.device, self.started = config, job, device, started
        self.model = build_model(config, job, device)
        self.frozen = freeze(self.model, config.freeze)
        self.ema = make_ema(self.model, config.ema_decay)
        self.net: nn.Module = self.model  # what training calls: DDP's wrapper on several ranks
        if job.active:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_config = LossConfig(
            mask=config.loss_mask,
            depth=config.loss_depth,
            side_weight=config.side_weight,
            main_outputs=1 if config.refine is None else 2,  # refined, and the base upsampled
        )
        self.max_epochs = config.epoch_limit()
        self.max_steps = config.step_limit(steps_per_epoch) or UNBOUNDED
        self.plan = Plan(total_steps=max(2, self.max_steps))  # a budget re-sizes it after the probe
        self.schedule = OneCycle(config.lr, warmup=config.warmup)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule.apply(self.optimizer, 0.0)
        self.dtype = amp_dtype(config.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=scales_loss(self.dtype))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        self.epoch = self.step = self.epoch_step = 0
        self.elapsed_before = 0.0  # seconds of this run before a --resume
        self.metrics: dict = {}
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.best = dict(NO_BEST)

    def train_mode(self) -> None:
        """The network in training mode, a ``--freeze`` part in eval mode (BatchNorm fixed)."""
        self.net.train()
        if self.frozen is not None:
            self.frozen.eval()

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA's network (None without ``--ema-decay``)."""
        return None if self.ema is None else self.ema.module

    def elapsed(self) -> float:
        """Seconds this run has taken, over every --resume."""
        return self.elapsed_before + time.perf_counter() - self.started

    def step_optimizer(self) -> None:
        """One optimizer step at the plan's rate (kept in :attr:`lr` for metrics.csv), then
        the EMA and the counters."""
        progress = self.plan.progress(self.step)
        self.lr = self.schedule.apply(self.optimizer, progress)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update(self.model)
        self.step += 1
        self.epoch_step += 1

    def record(self, metrics: dict) -> bool:
        """Keep a validation's ``metrics``; True when they are the best so far."""
        self.metrics = metrics
        score = metrics["iou"] - metrics["rmse"]
        best = self.best["score"]
        if not (best is None or score > best):  # a NaN score is never the best
            return False
        self.best = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "iou": metrics["iou"],
            "rmse": metrics["rmse"],
            "score": score,
        }
        return True

    def payload(self, model_config: ModelInfo, record: dict, epoch_sums: dict) -> dict:
        """The checkpoint (see :mod:`.checkpoint` for its keys) of this state, with the run's
        model config, data ``record`` and the epoch's statistics so far."""
        ema = self.ema_model
        return {
            "model": model_record(self.model),
            "config": model_config.to_dict(),
            "state_dict": self.model.state_dict(),
            "ema_state_dict": None if ema is None else ema.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "optimizer": self.optimizer.state_dict(),
            "plan": self.plan.to_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "loss": self.loss_config.to_dict(),
            "data": record,
            "train": self.config.to_dict(),
            "metrics": dict(self.metrics),
            "best": dict(self.best),
            "progress": {
                "ema_updates": 0 if self.ema is None else self.ema.updates,
                "seconds": self.elapsed(),
                "epoch_sums": dict(epoch_sums),
                "world": self.job.world,
            },
        }

    def restore(self, ckpt: dict) -> None:
        """Continue checkpoint ``ckpt`` (its epoch statistics are the caller's), global RNGs
        included."""
        if "plan" not in ckpt:
            out = Path(self.config.out)
            raise MaskDepthError(
                f"--resume: {out}/last.pt comes from maskdepth "
                f"{ckpt.get('maskdepth_version', '?')}, before per-step plans; start a new run "
                f"with --init {out}/best.pt to keep its weights"
            )
        load_weights(self.model, ckpt["state_dict"], self.config.model)
        progress = ckpt["progress"]
        if self.ema is not None:
            load_weights(self.ema.module, ckpt["ema_state_dict"], self.config.model)
            self.ema.updates = int(progress["ema_updates"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.plan = Plan.from_dict(ckpt["plan"])
        self.elapsed_before = float(progress["seconds"])
        if self.scaler.is_enabled() and ckpt["scaler"]:  # --amp or the GPU may change on resume
            self.scaler.load_state_dict(ckpt["scaler"])  # else fp16 starts a fresh loss scale
        self.epoch, self.step, self.epoch_step = ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]
        self.metrics, self.best = dict(ckpt["metrics"]), dict(ckpt["best"])
        set_rng_state(ckpt["rng"])
