"""The training loop: ``train(TrainConfig(...)) -> dict``, used by ``maskdepth train``,
``python -m maskdepth.train``, ``torchrun ... -m maskdepth.train`` and in-process by tests and
benchmarks.

Adam with a per-step OneCycle schedule (max ``lr``, starting at ``lr / 10``, peak at half way),
the seed's recipe; channels_last memory format for model and inputs (also on CPU, where oneDNN's
3x3 convolutions are several times faster in it); mixed precision with ``--amp``. Validation,
``best.pt`` and ``samples.png`` use the EMA of the weights when ``--ema-decay`` > 0.

``best.pt`` is the checkpoint with the highest validation ``iou - rmse``: both in [0, 1], one
point of IoU weighs as much as 0.01 of depth RMSE, and a tie goes to the earlier epoch.

Exact resume: the sample order of an epoch is a function of (seed, epoch)
(:class:`~maskdepth.train.distributed.EpochSampler`), augmentation of (seed, epoch, index), and
a checkpoint holds model, EMA, optimizer, scheduler, scaler and RNG states plus the batches done
in the current epoch, which a resumed run skips. On CPU a run killed after a ``--save-every``
checkpoint and resumed ends with the same weights, bit for bit, as the run left alone.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import prepare_pair

from . import distributed
from .checkpoint import (
    load_checkpoint,
    load_weights,
    model_record,
    rng_state,
    save_checkpoint,
    set_rng_state,
    training_config,
)
from .config import TRAJECTORY, TrainConfig
from .data.augment import preset
from .data.loader import MaskDepthDataset, make_loader
from .data.sources import Source
from .datasets import data_record, open_data, split, synth_options
from .distributed import Dist, EpochSampler, ShardSampler
from .ema import make_ema, reestimate_bn
from .losses import LossConfig, compute_loss
from .metrics import TorchMetricAccumulator
from .models import create_model
from .models.u2net import U2NetMD
from .plan import PROBE_STEPS, UNBOUNDED, OneCycle, Pace, Plan, steps_that_fit
from .report import MetricsLog, sample_row, write_curves, write_samples

CHANNELS_LAST = torch.channels_last
DUMP_ENV = "MASKDEPTH_DUMP_STATE"  # debug: every rank saves its final weights in this folder
_F64 = torch.float64
POSTFIX_EVERY = 10  # steps between progress-bar postfix updates (each one syncs the device)


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
    distributed.setup(job, device)
    try:
        return Run(config, job, device, source).fit()
    finally:
        distributed.shutdown()


def pick_device(choice: str, job: Dist) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise MaskDepthError(
                f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu"
            )
        return torch.device("cuda", job.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def amp_dtype(amp: bool, device: torch.device, bf16: bool | None = None) -> torch.dtype | None:
    """bf16 where the device has it (no loss scaling needed), else fp16 with a GradScaler.

    ``bf16`` says whether a CUDA device has bf16; None asks torch. Other devices autocast in
    bf16 (the CPU's autocast dtype).
    """
    if not amp:
        return None
    if device.type == "cuda":
        if bf16 is None:
            bf16 = torch.cuda.is_bf16_supported()
        if not bf16:
            return torch.float16
    return torch.bfloat16


def scales_loss(dtype: torch.dtype | None) -> bool:
    """Whether training in autocast ``dtype`` needs a GradScaler: only fp16, whose narrow range
    lets small gradients underflow (bf16 has float32's range)."""
    return dtype == torch.float16


class Run:
    """One run's state; built by ``__init__`` (fresh, ``--init`` or ``--resume``), driven by
    :meth:`fit`."""

    def __init__(self, config: TrainConfig, job: Dist, device: torch.device, source) -> None:
        self.config, self.job, self.device = config, job, device
        self.started = time.perf_counter()  # the budget counts from here (data, model, steps)
        self.out = Path(config.out)
        resumed = self._resume_checkpoint()
        torch.manual_seed(config.seed)
        np.random.seed(config.seed % 2**32)
        self._build_data(source)
        if resumed is not None:
            check_resume(resumed, config, self.record, job)
        self._build_model()
        self._build_optimization()
        self.epoch = self.step = self.epoch_step = 0
        self.elapsed_before = 0.0  # seconds of this run before a --resume
        self.metrics: dict = {}
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.best: dict[str, float | None] = {
            "epoch": None,
            "step": None,
            "iou": None,
            "rmse": None,
            "score": None,
        }
        self.sums = self._zero_sums()
        if resumed is not None:
            self._restore(resumed)
        self.log = MetricsLog(self.out / "metrics.csv", keep_steps=self.step)
        if job.main:
            self.out.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------ building
    def _resume_checkpoint(self) -> dict | None:
        last = self.out / "last.pt"
        if self.config.resume:
            if not last.is_file():
                raise MaskDepthError(f"--resume: no {last} to continue; start without --resume")
            return load_checkpoint(last)
        if last.exists():
            raise MaskDepthError(
                f"{self.out} already holds a run (last.pt); pass --resume to continue it "
                "or choose another --out"
            )
        return None

    def _build_data(self, source: Source | None) -> None:
        config = self.config
        self.source = source or open_data(
            config.data,
            size=config.size,
            binarize=config.binarize,
            skip_bad=config.skip_bad,
            synth=synth_options(config),
        )
        self.record = data_record(config, self.source)
        self.model_config = training_config(
            config.model, config.size, self.source, self.record["manifest_hash"]
        )
        self.pre = self.model_config.preprocessing
        train_idx, val_idx = split(self.source, self.record)
        if not len(val_idx):
            raise MaskDepthError(
                f"--val-fraction {config.val_fraction} leaves no validation scenes "
                f"out of {len(self.source)}"
            )
        augment = preset(config.augment)
        self.train_set = MaskDepthDataset(
            self.source,
            train_idx,
            pre=self.pre,
            augment=augment,
            seed=config.seed,
            skip_bad=config.skip_bad,
        )
        self.val_set = MaskDepthDataset(
            self.source, val_idx, pre=self.pre, seed=config.seed, skip_bad=config.skip_bad
        )
        self.sampler = EpochSampler(
            len(self.train_set), config.batch, config.seed, self.job, config.accumulate
        )
        if self.sampler.batches == 0:
            raise MaskDepthError(
                f"{len(self.train_set)} training scenes do not fill one step of --batch "
                f"{config.batch} x --accumulate {config.accumulate} x {self.job.world} "
                "process(es); lower --batch"
            )
        pin_memory = self.device.type == "cuda"
        self.train_loader = make_loader(
            self.train_set,
            config.batch,
            workers=config.workers,
            sampler=self.sampler,
            seed=config.seed,
            pin_memory=pin_memory,
        )
        self.val_loader = make_loader(
            self.val_set,
            config.batch,
            workers=config.workers,
            sampler=ShardSampler(len(self.val_set), self.job),
            pin_memory=pin_memory,
        )
        picks = np.unique(np.linspace(0, len(val_idx) - 1, min(config.samples, len(val_idx))))
        self.sample_indices = [int(val_idx[int(i)]) for i in picks]

    def _build_model(self) -> None:
        config = self.config
        model = create_model(config.model)
        if config.init:
            init_weights(model, config.init, config.model)
        elif config.prior != "none":
            if not isinstance(model, U2NetMD):
                raise MaskDepthError(f"--prior {config.prior}: not for {config.model}")
            model.init_prior(config.prior)
        if config.sync_bn and self.job.active:
            if self.device.type != "cuda":
                raise MaskDepthError("--sync-bn needs CUDA (SyncBatchNorm does not run on CPU)")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        # Module.to takes memory_format (documented, and done at runtime); torch's stubs omit it.
        self.model: nn.Module = model.to(self.device, memory_format=CHANNELS_LAST)  # type: ignore[call-overload]
        self.ema = make_ema(self.model, config.ema_decay)
        self.net = self.model
        if self.job.active:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.loss_config = LossConfig(
            mask=config.loss_mask, depth=config.loss_depth, side_weight=config.side_weight
        )

    def _build_optimization(self) -> None:
        config = self.config
        self.max_epochs = config.epoch_limit()
        self.max_steps = config.step_limit(self.sampler.batches) or UNBOUNDED
        self.plan = Plan(total_steps=max(2, self.max_steps))  # a budget re-sizes it after the probe
        self.schedule = OneCycle(config.lr, warmup=config.warmup)
        self.pace = Pace()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.schedule.apply(self.optimizer, 0.0)
        self.dtype = amp_dtype(config.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=scales_loss(self.dtype))
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True

    def _restore(self, ckpt: dict) -> None:
        if "plan" not in ckpt:
            raise MaskDepthError(
                f"--resume: {self.out}/last.pt comes from maskdepth "
                f"{ckpt.get('maskdepth_version', '?')}, before per-step plans; start a new run "
                f"with --init {self.out}/best.pt to keep its weights"
            )
        load_weights(self.model, ckpt["state_dict"], self.config.model)
        progress = ckpt["progress"]
        if self.ema is not None:
            load_weights(self.ema.module, ckpt["ema_state_dict"], self.config.model)
            self.ema.n_averaged.fill_(progress["ema_updates"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.plan = Plan.from_dict(ckpt["plan"])
        self.elapsed_before = float(progress["seconds"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step, self.epoch_step = ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]
        self.metrics, self.best = dict(ckpt["metrics"]), dict(ckpt["best"])
        self.sums = {
            k: v.to(self.device) if isinstance(v, torch.Tensor) else v
            for k, v in progress["epoch_sums"].items()
        }
        set_rng_state(ckpt["rng"])

    # ------------------------------------------------------------------------------- running
    def fit(self) -> dict:
        config = self.config
        stopped = "done"
        self._say(self._intro())
        self.bar = tqdm(
            total=self.plan.total_steps if self.budget is None or self.plan.step_seconds else None,
            initial=self.step,
            unit="step",
            disable=not (self.job.main and config.progress),
            dynamic_ncols=True,
        )
        while self.step < self.plan.total_steps and (
            self.max_epochs is None or self.epoch < self.max_epochs
        ):
            stopped = self._train_epoch()
            self._end_epoch(partial=self.epoch_step < self.sampler.batches)
            if stopped != "epoch":
                break
            self._check_pace()
        self.bar.close()
        stopped = "time budget" if stopped == "time budget" else "done"
        self._dump_state()
        bad = self._bad_scenes()
        if bad:
            self._say(f"skipped {bad} broken or incomplete scenes (--skip-bad)")
        if self.job.main and self.log.rows:
            title = f"{config.model} at {config.size} px, {Path(config.out).name}"
            write_curves(self.out / "curves.png", self.log.rows, title)
        return self._summary(stopped)

    def _train_epoch(self) -> str:
        """One epoch (or its rest, when resumed). Returns why it stopped: "epoch" (its end),
        "planned" (the plan's last step) or "time budget" (the hard stop)."""
        self.sampler.set_epoch(self.epoch, self.epoch_step)
        self.train_set.set_epoch(self.epoch)
        self.net.train()
        self.bar.set_description(f"epoch {self.epoch + 1}")
        steps = self.sampler.batches
        begun = waited = time.perf_counter()
        micro = 0
        for batch in self.train_loader:
            self.sums["wait"] += time.perf_counter() - waited
            micro += 1
            out_of_time = self._micro_step(batch, micro == self.config.accumulate)
            if micro < self.config.accumulate:
                waited = time.perf_counter()
                continue
            micro = 0
            self._optimizer_step()
            self.bar.update()
            if self.epoch_step % POSTFIX_EVERY == 0 or self.epoch_step == steps:
                self.bar.set_postfix(self._running(), refresh=False)
            if out_of_time or self.step >= self.plan.total_steps:
                break
            if self.epoch_step < steps and self._pause_due():
                self.sums["seconds"] += time.perf_counter() - begun
                self._pause_for_checkpoint()
                begun = time.perf_counter()
            waited = time.perf_counter()
        self.sums["seconds"] += time.perf_counter() - begun
        if out_of_time:
            return "time budget"
        return "planned" if self.step >= self.plan.total_steps else "epoch"

    def _pause_due(self) -> bool:
        every, val_every = self.config.save_every, self.config.val_every
        return bool(every and self.step % every == 0) or bool(
            val_every and self.step % val_every == 0
        )

    def _pause_for_checkpoint(self) -> None:
        """Inside an epoch: validate (every --val-every steps) or only write last.pt
        (every --save-every steps)."""
        val_every = self.config.val_every
        if val_every and self.step % val_every == 0:
            self._end_epoch(partial=True)
            self._check_pace()
            self.net.train()
        else:
            self.pace.pause()
            self._save(last=True, best=False)

    def _micro_step(self, batch: dict, sync: bool) -> bool:
        """Forward, loss check and backward of one batch (gradients are all-reduced over ranks
        on the step's last batch only); True when the time budget is spent."""
        inputs, mask, depth = self._to_device(batch)
        unsynced = self.job.active and not sync
        with self.net.no_sync() if unsynced else contextlib.nullcontext():
            with torch.autocast(self.device.type, self.dtype, enabled=self.dtype is not None):
                outputs = self.net(inputs)
            loss, parts = compute_loss(outputs, mask, depth, self.loss_config)
            late = self.budget is not None and self._elapsed() > self.budget
            shared = torch.stack([loss.detach().double(), loss.new_tensor(late, dtype=_F64)])
            distributed.all_sum(shared, self.job)  # every rank sees the same NaN and clock
            if not torch.isfinite(shared[0]):
                self._diverged(float(shared[0]))
            self.scaler.scale(loss / self.config.accumulate).backward()
        self._accumulate(loss, parts, outputs, mask, depth)
        return bool(shared[1] > 0)

    def _optimizer_step(self) -> None:
        progress = self.plan.progress(self.step)
        self.lr = self.schedule.apply(self.optimizer, progress)  # the step's lr, for metrics.csv
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        self.epoch_step += 1
        self.pace.stepped()
        if self.budget is None:
            return
        if self.plan.step_seconds is None and self.pace.steps >= PROBE_STEPS:
            self._replan("planned")
        elif self.step % max(1, self.plan.total_steps // 20) == 0:
            self._check_pace()

    # ---------------------------------------------------------------------------- the budget
    @property
    def budget(self) -> float | None:
        """The time budget in seconds (None: none)."""
        minutes = self.config.max_minutes
        return None if minutes is None else 60.0 * minutes

    def _elapsed(self) -> float:
        """Seconds this run has taken, over every --resume."""
        return self.elapsed_before + time.perf_counter() - self.started

    def _val_interval(self) -> int:
        return self.config.val_every or self.sampler.batches

    def _val_estimate(self) -> float:
        """Seconds of one validation before one was timed: the val images at a third of a
        training image's time (forward only), plus a second for the checkpoint and pictures."""
        per_image = self.pace.step_seconds() / (self.config.batch * self.config.accumulate)
        return len(self.val_set) / self.job.world * per_image / 3 + 1.0

    def _measured(self) -> tuple[float, float, float]:
        """(seconds per step lately, per validation, elapsed): the mean over ranks, so that
        every rank makes the same plan."""
        step_s = self.pace.recent or self.pace.step_seconds()
        val_s = self.pace.val_seconds or self._val_estimate()
        measured = torch.tensor([step_s, val_s, self._elapsed()], dtype=_F64, device=self.device)
        step_s, val_s, elapsed = distributed.all_sum(measured, self.job).tolist()
        return step_s / self.job.world, val_s / self.job.world, elapsed / self.job.world

    def _replan(self, why: str, replanned: bool = False) -> None:
        """Size the run's steps to the rest of the budget from the measured speeds."""
        if self.budget is None:  # only a budget plans
            return
        step_s, val_s, elapsed = self._measured()
        interval = self._val_interval()
        left = self.budget - elapsed
        cap = self.max_steps - self.step
        fit = steps_that_fit(left, step_s, val_s, interval, cap, start=self.step)
        self.plan = self.plan.resized(
            self.step, self.step + fit, step_seconds=step_s, val_seconds=val_s,
            replanned=replanned or self.plan.replanned,
        )  # fmt: skip
        self.bar.total = self.plan.total_steps
        self._say(
            f"{why}: {self.plan.total_steps} steps in the {self.config.max_minutes:g} min budget "
            f"({step_s:.2f} s/step, {val_s:.1f} s/validation every {interval} steps)"
        )

    def _check_pace(self) -> None:
        """A budgeted run, after a validation and every 5% of its steps: re-plan once when the
        speed drifted by more than DRIFT, and whenever the plan would end past the budget."""
        if self.budget is None or self.plan.step_seconds is None:
            return
        step_s, val_s, elapsed = self._measured()
        interval = self._val_interval()
        if not self.plan.replanned and self.plan.drifted(step_s, val_s):
            self._replan("re-planned (the speed drifted)", replanned=True)
        elif self.plan.overruns(self.step, elapsed, self.budget, step_s, val_s, interval):
            self._replan("re-planned to end in time")

    def _to_device(self, batch: dict) -> tuple[torch.Tensor, ...]:
        move = {"device": self.device, "non_blocking": True}
        inputs = batch["input"].to(**move).contiguous(memory_format=CHANNELS_LAST)
        return inputs, batch["mask"].to(**move), batch["depth"].to(**move)

    def _diverged(self, value: float) -> None:
        last = self.out / "last.pt"
        kept = f"; last good checkpoint {last}" if last.is_file() else "; no checkpoint written yet"
        raise TrainingDiverged(
            f"training diverged: loss is {value} at step {self.step + 1} (epoch {self.epoch + 1},"
            f" batch {self.epoch_step + 1}){kept}; try a lower --lr"
        )

    # --------------------------------------------------------------------------- statistics
    def _zero_sums(self) -> dict:
        zeros = lambda n: torch.zeros(n, dtype=torch.float64, device=self.device)  # noqa: E731
        names = ["loss", *self._part_names()]
        return {
            "parts": zeros(len(names)),
            "metrics": TorchMetricAccumulator(self.device).sums,
            "images": zeros(1),
            "seconds": 0.0,
            "wait": 0.0,
        }

    def _part_names(self) -> list[str]:
        names = ["mask", "depth"]
        for task in ("mask", "depth"):
            names += [f"{task}/{term}" for term in self.loss_config.terms(task)]
        return names

    @torch.no_grad()
    def _accumulate(self, loss, parts, outputs, mask, depth) -> None:
        values = [loss.detach()] + [parts[name] for name in self._part_names()]
        self.sums["parts"] += torch.stack([v.double() for v in values]) * len(mask)
        metrics = TorchMetricAccumulator(self.device)
        metrics.update(outputs["mask"][0], mask, outputs["depth"][0], depth, logits=True)
        self.sums["metrics"] += metrics.sums
        self.sums["images"] += len(mask)

    def _running(self) -> dict:
        """This rank's running loss, IoU and RMSE of the epoch, for the progress bar."""
        images = float(self.sums["images"])
        metrics = self._metric_accumulator(self.sums["metrics"]).compute()
        loss = float(self.sums["parts"][0]) / max(images, 1)
        return {
            "loss": f"{loss:.4f}",
            "iou": f"{metrics['iou']:.3f}",
            "rmse": f"{metrics['rmse']:.4f}",
        }

    def _metric_accumulator(self, sums: torch.Tensor) -> TorchMetricAccumulator:
        accumulator = TorchMetricAccumulator(self.device)
        accumulator.sums = sums.clone()
        return accumulator

    def _train_row(self) -> dict:
        """The epoch's training columns, summed over ranks."""
        parts = distributed.all_sum(self.sums["parts"].clone(), self.job)
        images = float(distributed.all_sum(self.sums["images"].clone(), self.job))
        accumulator = self._metric_accumulator(self.sums["metrics"])
        if self.job.active:
            accumulator.all_reduce()
        metrics = accumulator.compute()
        names = ["loss", *self._part_names()]
        images = max(images, 1.0)
        row = {f"train_{n.replace('/', '_')}": float(v) / images for n, v in zip(names, parts)}
        row |= {"train_iou": metrics["iou"], "train_rmse": metrics["rmse"]}
        seconds = self.sums["seconds"]
        row["images_per_s"] = images / seconds if seconds > 0 else float("nan")
        row["data_wait"] = self.sums["wait"] / seconds if seconds > 0 else float("nan")
        return row

    # --------------------------------------------------------------------------- validation
    def _end_epoch(self, partial: bool) -> None:
        """Validate, log, draw samples and write last.pt (and best.pt when better)."""
        self.pace.pause()
        started = time.perf_counter()
        row = {
            "epoch": self.epoch + 1,
            "step": self.step,
            "epoch_fraction": round(self.epoch_step / self.sampler.batches, 4),
            "lr": self.lr,
        }
        row |= self._train_row()
        evaluated = self._eval_model()
        self.metrics = self.validate(evaluated)
        row |= {f"val_{k}": v for k, v in self.metrics.items()}
        score = self.metrics["iou"] - self.metrics["rmse"]
        improved = self.best["score"] is None or score > self.best["score"]
        if improved:
            self.best = {
                "epoch": self.epoch + 1,
                "step": self.step,
                "iou": self.metrics["iou"],
                "rmse": self.metrics["rmse"],
                "score": score,
            }
        if not partial:
            self.epoch, self.epoch_step = self.epoch + 1, 0
        seconds = self.sums["seconds"] + time.perf_counter() - started
        if self.job.main:
            rows = self._sample_rows(evaluated)
            if rows:
                write_samples(self.out / "samples.png", rows)
            self.log.add(row | {"seconds": seconds, "elapsed": self._elapsed()})
            self._say(self._epoch_line(row))
        self._save(last=True, best=improved)
        if not partial:
            self.sums = self._zero_sums()
        self.pace.val_seconds = time.perf_counter() - started

    def _eval_model(self) -> nn.Module:
        """The model validation scores: the EMA when on, with BatchNorm statistics that are
        the same on every rank (and re-estimated when asked)."""
        model = self.model if self.ema is None else self.ema.module
        distributed.average_buffers(model, self.job)
        if self.config.bn_reestimate:
            reestimate_bn(model, self._bn_inputs())
            distributed.average_buffers(model, self.job)
        return model

    def _bn_inputs(self):
        """This rank's share of ``--bn-reestimate`` batches: fixed training scenes, unaugmented."""
        count = self.config.bn_reestimate * self.config.batch * self.job.world
        order = torch.randperm(len(self.train_set), generator=torch.Generator().manual_seed(0))
        chosen = self.train_set.indices[order[:count].numpy()]
        dataset = MaskDepthDataset(self.source, chosen, self.pre, skip_bad=self.config.skip_bad)
        loader = make_loader(
            dataset,
            self.config.batch,
            workers=0,
            sampler=ShardSampler(len(dataset), self.job),
            pin_memory=False,
        )
        for batch in loader:
            yield self._to_device(batch)[0]

    @torch.no_grad()
    def validate(self, model: nn.Module) -> dict:
        """Metrics of ``model`` on the validation split (every rank scores its share; the sums
        are added), plus the validation loss."""
        model.eval()
        accumulator = TorchMetricAccumulator(self.device)
        loss_sum = torch.zeros(2, dtype=torch.float64, device=self.device)
        for batch in self.val_loader:
            inputs, mask, depth = self._to_device(batch)
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
                outputs = model(inputs)
            loss, _ = compute_loss(outputs, mask, depth, self.loss_config)
            accumulator.update(outputs["mask"][0], mask, outputs["depth"][0], depth, logits=True)
            loss_sum += torch.stack([loss.double() * len(mask), loss_sum.new_tensor(len(mask))])
        if self.job.active:
            accumulator.all_reduce()
            distributed.all_sum(loss_sum, self.job)
        metrics = accumulator.compute()
        return {"loss": float(loss_sum[0] / loss_sum[1].clamp_min(1)), **metrics}

    @torch.no_grad()
    def _sample_rows(self, model: nn.Module) -> list[list[np.ndarray]]:
        samples = []
        for index in self.sample_indices:
            try:
                samples.append(self.source[index])
            except MaskDepthError:  # a broken scene (with --skip-bad): draw the others
                continue
        if not samples:
            return []
        pairs = np.stack([prepare_pair(s.bg, s.scene, self.pre) for s in samples])
        inputs = torch.from_numpy(pairs).to(self.device).contiguous(memory_format=CHANNELS_LAST)
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            outputs = model(inputs)
        mask = torch.sigmoid(outputs["mask"][0].float())[:, 0].cpu().numpy()
        depth = torch.sigmoid(outputs["depth"][0].float())[:, 0].cpu().numpy()
        return [sample_row(s, m, d) for s, m, d in zip(samples, mask, depth)]

    # ------------------------------------------------------------------------------ saving
    def _save(self, last: bool, best: bool) -> None:
        """Write last.pt (and best.pt) from rank 0, after every rank agrees on the buffers."""
        distributed.average_buffers(self.model, self.job)
        if self.ema is not None:
            distributed.average_buffers(self.ema.module, self.job)
        if self.job.main:
            payload = self._payload()
            if last:
                save_checkpoint(self.out / "last.pt", payload)
            if best:
                save_checkpoint(self.out / "best.pt", payload)
        distributed.barrier(self.job)

    def _payload(self) -> dict:
        config = self.config
        return {
            "model": model_record(self.model),
            "config": self.model_config.to_dict(),
            "preprocessing": self.pre.to_dict(),
            "state_dict": self.model.state_dict(),
            "ema_state_dict": None if self.ema is None else self.ema.module.state_dict(),
            "epoch": self.epoch,
            "step": self.step,
            "epoch_step": self.epoch_step,
            "optimizer": self.optimizer.state_dict(),
            "plan": self.plan.to_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "loss": self.loss_config.to_dict(),
            "data": self.record,
            "train": config.to_dict(),
            "metrics": dict(self.metrics),
            "best": dict(self.best),
            "progress": {
                "ema_updates": 0 if self.ema is None else int(self.ema.n_averaged),
                "seconds": self._elapsed(),
                "epoch_sums": dict(self.sums),
                "world": self.job.world,
            },
        }

    def _dump_state(self) -> None:
        """With MASKDEPTH_DUMP_STATE=DIR every rank writes its final weights to DIR/rank{r}.pt
        (a debugging aid; the DDP test compares ranks with it)."""
        folder = os.environ.get(DUMP_ENV)
        if not folder:
            return
        ema = None if self.ema is None else self.ema.module.state_dict()
        state = {"state_dict": self.model.state_dict(), "ema_state_dict": ema}
        torch.save(state, Path(folder) / f"rank{self.job.rank}.pt")

    # ------------------------------------------------------------------------------ talking
    def _say(self, line: str) -> None:
        if self.job.main and self.config.progress:
            tqdm.write(line)

    def _intro(self) -> str:
        c = self.config
        world = f" x {self.job.world} processes" if self.job.active else ""
        accumulate = f" x {c.accumulate} accumulated" if c.accumulate > 1 else ""
        resumed = f", resuming after step {self.step}" if self.step else ""
        amp = f", amp {str(self.dtype).removeprefix('torch.')}" if self.dtype else ""
        return (
            f"training {c.model} at {c.size} px on {self.device}{amp}: "
            f"{len(self.train_set)} train / {len(self.val_set)} val scenes, "
            f"batch {c.batch}{accumulate}{world}, {self.sampler.batches} steps per epoch, "
            f"{self._length()} -> {self.out}{resumed}"
        )

    def _length(self) -> str:
        if self.budget is None:
            return f"{self.plan.total_steps} steps"
        limit = "" if self.max_steps == UNBOUNDED else f", at most {self.max_steps}"
        return f"as many steps as fit in {self.config.max_minutes:g} min{limit}"

    def _epoch_line(self, row: dict) -> str:
        part = "" if row["epoch_fraction"] >= 1 else f" ({row['epoch_fraction']:.0%} of it)"
        return (
            f"epoch {row['epoch']}{part} step {row['step']}/{self.plan.total_steps}: "
            f"loss {row['train_loss']:.4f}, val IoU {row['val_iou']:.4f} RMSE {row['val_rmse']:.4f}"
            f" | {row['images_per_s']:.1f} images/s, data wait {row['data_wait']:.0%}"
        )

    def _bad_scenes(self) -> int:
        """Scenes left out by --skip-bad: at indexing (missing files) and when read (this
        rank's loaders; broken files)."""
        read = len(set(self.train_set.bad_indices()) | set(self.val_set.bad_indices()))
        return int(getattr(self.source, "skipped", 0)) + read

    def _summary(self, stopped: str) -> dict:
        rows = self.log.rows
        last_row = rows[-1] if rows else {}
        return {
            "out": str(self.out),
            "last_path": str(self.out / "last.pt"),
            "best_path": str(self.out / "best.pt"),
            "metrics": dict(self.metrics),
            "best": dict(self.best),
            "epochs": self.epoch,
            "step": self.step,
            "stopped": stopped,
            "seconds": time.perf_counter() - self.started,
            "images_per_s": last_row.get("images_per_s"),
            "data_wait": last_row.get("data_wait"),
            "bad_scenes": self._bad_scenes(),
        }


def init_weights(model: nn.Module, path: str, name: str) -> None:
    """Load ``--init``'s weights (its EMA when it has one) into ``model``."""
    ckpt = load_checkpoint(path)
    other = ckpt["model"]["name"]
    if other != name:
        raise MaskDepthError(f"--init {path}: a {other} checkpoint, but this run trains {name}")
    weights = ckpt.get("ema_state_dict") or ckpt["state_dict"]
    load_weights(model, weights, name)


def check_resume(ckpt: dict, config: TrainConfig, record: dict, job: Dist) -> None:
    """--resume continues the same run: the options that shape it and the data must match."""
    saved = TrainConfig.from_dict(ckpt["train"])
    diffs = [
        f"--{name.replace('_', '-')} {getattr(saved, name)} (now {getattr(config, name)})"
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
