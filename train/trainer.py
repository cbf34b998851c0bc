"""The training loop: ``train(TrainConfig(...)) -> dict``, used by ``maskdepth train``,
``python -m maskdepth.train``, ``torchrun ... -m maskdepth.train`` and in-process by tests and
benchmarks.

Adam with a per-step OneCycle schedule (max ``lr``, starting at ``lr / 10``, peak at half way),
the seed's recipe; channels_last memory format for model and inputs; mixed precision on CUDA
unless ``--no-amp`` (:mod:`.device`). Validation, ``best.pt`` and ``samples.png`` use the EMA of
the weights when ``--ema-decay`` > 0. Between validations the loop waits for the device and
all-reduces only at its checks (the loss and the clock, every ``CHECK_EVERY`` steps).

The loop composes one module per job: :mod:`.run_data` (data and loaders), :mod:`.state` (what a
checkpoint holds, and ``best``), :mod:`.epoch_stats`, :mod:`.validation` (shared with
``maskdepth eval``), :mod:`.pacing` (the time budget) and :mod:`.console` (what it prints).

Exact resume: the sample order of an epoch is a function of (seed, epoch)
(:class:`~maskdepth.train.distributed.EpochSampler`), augmentation of (seed, epoch, index), and
the checkpoint (:mod:`.state`) holds every state plus the batches done in the current epoch,
which a resumed run skips. On CPU a run killed after a ``--save-every`` checkpoint and resumed
ends with the same weights, bit for bit, as the run left alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch

from maskdepth.runtime.errors import MaskDepthError

from . import distributed
from .checkpoint import save_checkpoint
from .config import TrainConfig, size_text
from .console import Console, epoch_line, intro_line, length_text
from .data.sources import Source
from .device import CHANNELS_LAST, amp_dtype, autocast, pick_device, scales_loss, to_device
from .distributed import Dist
from .epoch_stats import EpochStats
from .loss_watch import LossWatch
from .losses import compute_loss
from .pacing import Pacer
from .report import MetricsLog, write_curves, write_samples
from .run_data import build_data
from .state import TrainState, check_resume, init_weights, resume_checkpoint
from .validation import bn_batches, sample_rows, scored_model, validate

__all__ = [
    "CHANNELS_LAST",
    "Run",
    "TrainingDiverged",
    "amp_dtype",
    "check_resume",
    "init_weights",
    "pick_device",
    "scales_loss",
    "train",
]

DUMP_ENV = "MASKDEPTH_DUMP_STATE"  # debug: every rank saves its final weights in this folder
# Optimizer steps between the checks of the loss (finite?) and the clock (the time budget's hard
# stop), which wait for the device and all-reduce over ranks; also checked before every
# validation and checkpoint, so a checkpoint never holds a diverged run.
CHECK_EVERY = 10


class TrainingDiverged(MaskDepthError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


def train(config: TrainConfig, source: Source | None = None) -> dict:
    """Train as ``config`` says; returns the final validation metrics, paths and speed.

    ``source`` replaces ``config.data`` (tests and benchmarks pass their own); its record in
    the checkpoint then names ``config.data``. Under torchrun every rank calls this.
    """
    job = distributed.from_environment()
    if config.threads:
        torch.set_num_threads(config.threads)
    device = pick_device(config.device, job)
    with distributed.joined(job, device):
        return Run(config, job, device, source).fit()


class Run:
    """One run: built fresh (or with ``--init``) or from ``--resume``'s checkpoint, driven by
    :meth:`fit`."""

    def __init__(
        self, config: TrainConfig, job: Dist, device: torch.device, source: Source | None
    ) -> None:
        self.config, self.job, self.device = config, job, device
        started = time.perf_counter()  # the budget counts from here (data, model, steps)
        self.out = Path(config.out)
        resumed = resume_checkpoint(self.out, config.resume)
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self.data = build_data(config, job, device, source)
        if resumed is not None:
            check_resume(resumed, config, self.data.record, job)
        self.state = TrainState(config, job, device, self.data.steps_per_epoch, started)
        sums = None
        if resumed is not None:
            self.state.restore(resumed)
            sums = resumed["progress"]["epoch_sums"]
        self.stats = EpochStats(self.state.loss_config, device, sums)
        self.watch = LossWatch(device)
        self.console = Console(job, config.progress)
        self.pacer = Pacer(
            config, self.state, self.data.steps_per_epoch, len(self.data.val_set),
            self.console.replanned,
        )  # fmt: skip
        self.log = MetricsLog(self.out / "metrics.csv", keep_steps=self.state.step)
        if job.main:
            self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------- running
    def fit(self) -> dict:
        state, stopped = self.state, "done"
        self.console.say(self._intro())
        budgeted_unplanned = self.pacer.budget is not None and not state.plan.step_seconds
        self.console.open_bar(None if budgeted_unplanned else state.plan.total_steps, state.step)
        while state.step < state.plan.total_steps and (
            state.max_epochs is None or state.epoch < state.max_epochs
        ):
            stopped = self._train_epoch()
            self._end_epoch(partial=state.epoch_step < self.data.steps_per_epoch)
            if stopped != "epoch":
                break
            self.pacer.check()
        self.console.close()
        stopped = "time budget" if stopped == "time budget" else "done"
        self._dump_state()
        bad = self.data.bad_scenes()
        if bad:
            self.console.say(f"skipped {bad} broken or incomplete scenes (--skip-bad)")
        if self.job.main and self.log.rows:
            title = f"{self.config.model} at {size_text(self.config.size)} px, {self.out.name}"
            write_curves(self.out / "curves.png", self.log.rows, title)
        return self._summary(stopped)

    def _train_epoch(self) -> str:
        """One epoch (or its rest, when resumed). Returns why it stopped: "epoch" (its end),
        "planned" (the plan's last step) or "time budget" (the hard stop)."""
        state, stats, accumulate = self.state, self.stats, self.config.accumulate
        self.data.set_epoch(state.epoch, state.epoch_step)
        state.train_mode()
        self.console.epoch_begins(state.epoch)
        steps = self.data.steps_per_epoch
        begun = waited = time.perf_counter()
        micro, out_of_time, unchecked = 0, False, False
        for batch in self.data.train_loader:
            stats.add_seconds("wait", time.perf_counter() - waited)
            micro += 1
            self._micro_step(batch, micro == accumulate)
            if micro < accumulate:
                waited = time.perf_counter()
                continue
            micro = 0
            state.step_optimizer()
            self.pacer.stepped()
            self.console.stepped(state.epoch_step, steps, stats.running)
            ends = state.epoch_step >= steps or state.step >= state.plan.total_steps
            pause = not ends and self._pause_due()
            unchecked = not (ends or pause or self._check_due())
            if not unchecked:
                out_of_time = self._check()
            if out_of_time or ends:
                break
            if pause:
                stats.add_seconds("seconds", time.perf_counter() - begun)
                self._pause_for_checkpoint()
                begun = time.perf_counter()
            waited = time.perf_counter()
        if unchecked:  # the loader ended early: no epoch-end checkpoint of unchecked steps
            out_of_time = self._check()
        stats.add_seconds("seconds", time.perf_counter() - begun)
        if out_of_time:
            return "time budget"
        return "planned" if state.step >= state.plan.total_steps else "epoch"

    def _check_due(self) -> bool:
        """Every CHECK_EVERY steps, and every step while a budgeted run times its first ones
        (each check waits for the device, so the probe's times are the device's)."""
        probing = self.pacer.budget is not None and self.state.plan.step_seconds is None
        return probing or self.state.step % CHECK_EVERY == 0

    def _check(self) -> bool:
        """The loss and the clock, agreed over ranks (the loop's one all-reduce and host read
        between validations): raises TrainingDiverged after a non-finite loss; True when the
        time budget is spent."""
        bad, late = self.watch.check(self.pacer.out_of_time(), self.job)
        if bad is not None:
            self._diverged(*bad)
        return late

    def _pause_due(self) -> bool:
        every, val_every, step = self.config.save_every, self.config.val_every, self.state.step
        return bool(every and step % every == 0) or bool(val_every and step % val_every == 0)

    def _pause_for_checkpoint(self) -> None:
        """Inside an epoch: validate (every --val-every steps) or only write last.pt
        (every --save-every steps)."""
        val_every = self.config.val_every
        if val_every and self.state.step % val_every == 0:
            self._end_epoch(partial=True)
            self.pacer.check()
            self.state.train_mode()
        else:
            self.pacer.paused()
            self._save(last=True, best=False)

    def _micro_step(self, batch: dict, sync: bool) -> None:
        """Forward, loss and backward of one batch (gradients are all-reduced over ranks on the
        step's last batch only); the loss is watched on the device, read at :meth:`_check`."""
        state = self.state
        inputs, mask, depth = to_device(batch, self.device)
        unsynced = self.job.active and not sync
        with state.net.no_sync() if unsynced else contextlib.nullcontext():  # type: ignore[operator]
            with autocast(self.device, state.dtype):
                outputs = state.net(inputs)
            loss, parts = compute_loss(outputs, mask, depth, state.loss_config)
            self.watch.add(loss, state.step)
            state.scaler.scale(loss / self.config.accumulate).backward()
        self.stats.add(loss, parts, outputs, mask, depth)

    def _diverged(self, step: int, value: str) -> None:
        state, last = self.state, self.out / "last.pt"
        batch = step - (state.step - state.epoch_step)  # in this epoch: checks come before its end
        kept = f"; last good checkpoint {last}" if last.is_file() else "; no checkpoint written yet"
        raise TrainingDiverged(
            f"training diverged: loss is {value} at step {step + 1} (epoch "
            f"{state.epoch + 1}, batch {batch + 1}){kept}; try a lower --lr"
        )

    # --------------------------------------------------------------------------- validation
    def _end_epoch(self, partial: bool) -> None:
        """Validate, log, draw samples and write last.pt (and best.pt when better)."""
        state = self.state
        self.pacer.paused()
        started = time.perf_counter()
        row = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "epoch_fraction": round(state.epoch_step / self.data.steps_per_epoch, 4),
            "lr": state.lr,
        }
        row |= self.stats.row(self.job)
        scored = self._scored_model()
        improved = state.record(
            validate(
                scored, self.data.val_loader, self.device, dtype=state.dtype,
                loss_config=state.loss_config, job=self.job,
            )
        )  # fmt: skip
        row |= {f"val_{k}": v for k, v in state.metrics.items()}
        if not partial:
            state.epoch, state.epoch_step = state.epoch + 1, 0
        seconds = self.stats.seconds + time.perf_counter() - started
        if self.job.main:
            data = self.data
            rows = sample_rows(
                scored, data.source, data.sample_indices, data.pre, self.device, state.dtype
            )
            if rows:
                write_samples(self.out / "samples.png", rows)
            self.log.add(row | {"seconds": seconds, "elapsed": state.elapsed()})
            self.console.say(epoch_line(row, state.plan.total_steps))
        self._save(last=True, best=improved)
        if not partial:
            self.stats.reset()
        self.pacer.paused(time.perf_counter() - started)

    def _scored_model(self) -> torch.nn.Module:
        """The model validation scores (see :func:`.validation.scored_model`)."""
        config, state = self.config, self.state
        batches = None
        if config.bn_reestimate:
            count = config.bn_reestimate * config.batch * self.job.world
            batches = bn_batches(self.data.train_set, count, config.batch, self.job, self.device)
        return scored_model(state.model, state.ema_model, self.job, batches)

    # ------------------------------------------------------------------------------ saving
    def _save(self, last: bool, best: bool) -> None:
        """Write last.pt (and best.pt) from rank 0, after every rank agrees on the buffers."""
        state = self.state
        distributed.average_buffers(state.model, self.job)
        if state.ema_model is not None:
            distributed.average_buffers(state.ema_model, self.job)
        if self.job.main:
            payload = state.payload(self.data.model_config, self.data.record, self.stats.sums)
            if last:
                save_checkpoint(self.out / "last.pt", payload)
            if best:
                save_checkpoint(self.out / "best.pt", payload)
        distributed.barrier(self.job)

    def _dump_state(self) -> None:
        """With MASKDEPTH_DUMP_STATE=DIR every rank writes its final weights to DIR/rank{r}.pt
        (a debugging aid; the DDP test compares ranks with it)."""
        folder = os.environ.get(DUMP_ENV)
        if not folder:
            return
        ema = self.state.ema_model
        weights = {
            "state_dict": self.state.model.state_dict(),
            "ema_state_dict": None if ema is None else ema.state_dict(),
            "process_groups_joined": distributed.joins(),
        }
        torch.save(weights, Path(folder) / f"rank{self.job.rank}.pt")

    # ------------------------------------------------------------------------------ talking
    def _intro(self) -> str:
        state, data = self.state, self.data
        length = length_text(self.config, state.plan.total_steps, state.max_steps)
        scenes = (len(data.train_set), len(data.val_set))
        return intro_line(
            self.config, self.job, self.device, state.dtype, scenes, data.steps_per_epoch,
            length, state.step,
        )  # fmt: skip

    def _summary(self, stopped: str) -> dict:
        state, rows = self.state, self.log.rows
        last_row = rows[-1] if rows else {}
        return {
            "out": str(self.out),
            "last_path": str(self.out / "last.pt"),
            "best_path": str(self.out / "best.pt"),
            "metrics": dict(state.metrics),
            "best": dict(state.best),
            "epochs": state.epoch,
            "step": state.step,
            "stopped": stopped,
            "seconds": time.perf_counter() - state.started,
            "images_per_s": last_row.get("images_per_s"),
            "data_wait": last_row.get("data_wait"),
            "bad_scenes": self.data.bad_scenes(),
        }
