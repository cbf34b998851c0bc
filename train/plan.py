"""A run's learning-rate plan: how many optimizer steps it takes, and the rate at each.

The schedule is the seed's OneCycle (warm up from ``max_lr / div_factor`` to ``max_lr``, then
anneal to ``max_lr / div_factor / final_div_factor``, cosine both ways, Adam's beta1 cycled the
other way), written as a function of the run's *progress*, a number from 0 to 1. So one formula
serves a run of ten epochs and a run of forty steps, and a plan that changes its length part way
(a time budget re-planned after the speed drifted) continues from where it stood instead of
jumping: :class:`Plan` maps steps to progress piecewise linearly from its last anchor.

With a time budget, :func:`steps_that_fit` sizes the run from measured speeds: the seconds of a
training step and of a validation pass. The trainer measures them on its own first steps (the
real loop: data, forward, backward, EMA), plans, checks the speed at every validation, and
re-plans once if it drifted by more than ``DRIFT``, and shrinks the plan whenever it would end
past the budget (so a run slowed down by a busy machine still anneals in time).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace

DRIFT = 0.2  # re-plan once when a measured time differs from the planned one by more than this
MARGIN = 0.03  # share of the budget kept free for what the plan cannot see (saving, drawing)
PROBE_STEPS = 4  # optimizer steps timed before a budgeted run is planned (after one untimed)
UNBOUNDED = 10**12  # the step cap of a budgeted run without --epochs


@dataclass(frozen=True)
class OneCycle:
    """The rate and beta1 at a progress in [0, 1] (torch's OneCycleLR, cosine, two phases)."""

    max_lr: float
    warmup: float = 0.5  # share of the run spent warming up (OneCycleLR's pct_start)
    div_factor: float = 10.0  # the start is max_lr / div_factor (the seed's 1e-3 for 0.01)
    final_div_factor: float = 1e4  # the end is the start / final_div_factor
    momentum: tuple[float, float] = (0.85, 0.95)  # beta1 at the peak rate, at start and end

    def lr(self, progress: float) -> float:
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor
        if progress < self.warmup:
            return _cosine(start, self.max_lr, progress / self.warmup)
        return _cosine(self.max_lr, end, _phase(progress, self.warmup))

    def beta1(self, progress: float) -> float:
        low, high = self.momentum
        if progress < self.warmup:
            return _cosine(high, low, progress / self.warmup)
        return _cosine(low, high, _phase(progress, self.warmup))

    def apply(self, optimizer, progress: float) -> float:
        """Set every parameter group's rate and beta1 for ``progress``; returns the rate."""
        lr, beta1 = self.lr(progress), self.beta1(progress)
        for group in optimizer.param_groups:
            group["lr"] = lr
            if "betas" in group:
                group["betas"] = (beta1, group["betas"][1])
        return lr


def _phase(progress: float, warmup: float) -> float:
    return 1.0 if warmup >= 1 else min(1.0, (progress - warmup) / (1.0 - warmup))


def _cosine(start: float, end: float, t: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * min(max(t, 0.0), 1.0))) / 2


@dataclass(frozen=True)
class Plan:
    """``total_steps`` optimizer steps; the progress of step s grows linearly from
    (``anchor_step``, ``anchor_progress``) to 1 at the last step (``total_steps - 1``)."""

    total_steps: int
    anchor_step: int = 0
    anchor_progress: float = 0.0
    step_seconds: float | None = None  # the speeds it was planned with (None: no budget)
    val_seconds: float | None = None
    replanned: bool = False

    def progress(self, step: int) -> float:
        """Progress of the (0-based) optimizer step ``step``."""
        last = self.total_steps - 1
        if step >= last:
            return 1.0
        if step <= self.anchor_step:
            return self.anchor_progress
        return self.anchor_progress + (1 - self.anchor_progress) * (step - self.anchor_step) / (
            last - self.anchor_step
        )

    def resized(self, step: int, total_steps: int, **measured) -> Plan:
        """The same schedule continued from ``step`` so that it ends after ``total_steps``."""
        total = max(total_steps, step + 1)
        return replace(
            self,
            total_steps=total,
            anchor_step=step,
            anchor_progress=self.progress(step),
            **measured,
        )

    def drifted(self, step_seconds: float, val_seconds: float | None) -> bool:
        """True when a measured time is more than DRIFT away from the planned one."""
        pairs = [(step_seconds, self.step_seconds), (val_seconds, self.val_seconds)]
        return any(new is not None and old and abs(new / old - 1) > DRIFT for new, old in pairs)

    def overruns(
        self,
        step: int,
        elapsed: float,
        budget: float,
        step_seconds: float,
        val_seconds: float,
        val_interval: int,
        epoch: int | None = None,
    ) -> bool:
        """True when the rest of the plan, at these speeds, would end past ``budget`` seconds
        (the last validation not counted; see :func:`validations` for ``epoch``)."""
        last = self.total_steps - 1
        validations_left = validations(step, last, val_interval, epoch)
        rest = (self.total_steps - step) * step_seconds + validations_left * val_seconds
        return elapsed + rest > budget

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        return cls(**data)


def validations(done: int, last: int, every: int, epoch: int | None = None) -> int:
    """The validations after steps ``done + 1`` to ``last`` (counted from 1): one after every
    ``every``-th step and, given ``epoch`` (steps per epoch), one after each epoch's last step,
    which a validation due at the same step does not double."""

    def after(interval: int) -> int:
        return max(0, last // interval - done // interval)

    if epoch is None or epoch == every:
        return after(every)
    return after(every) + after(epoch) - after(math.lcm(every, epoch))


def steps_that_fit(
    seconds: float,
    step_seconds: float,
    val_seconds: float,
    val_interval: int,
    cap: int,
    start: int = 0,
    epoch: int | None = None,
) -> int:
    """The most optimizer steps after step ``start`` (at least 1, at most ``cap``) whose
    training time plus the validations they trigger fit in ``seconds``: one validation after
    every ``val_interval``-th step (and every epoch's last, given ``epoch``), except the run's
    last, which may end past the budget (a run ends "within the budget plus one validation")."""
    usable = seconds * (1 - MARGIN)

    def cost(steps: int) -> float:
        count = validations(start, start + steps - 1, val_interval, epoch)
        return steps * step_seconds + count * val_seconds

    low, high = 1, max(1, cap)
    while low < high:  # the largest steps with cost <= usable (cost grows with steps)
        middle = (low + high + 1) // 2
        if cost(middle) <= usable:
            low = middle
        else:
            high = middle - 1
    return low


class Pace:
    """The run's measured speed: seconds per training step and per validation.

    A step is timed from the end of the one before, so the first step of the run and the first
    after each :meth:`pause` (a validation, a checkpoint) are left out: the first builds its
    kernels, and what a pause costs is measured on its own.
    """

    def __init__(self) -> None:
        self.mark: float | None = None
        self.seconds = 0.0
        self.steps = 0
        self.val_seconds: float | None = None  # the last validation's
        self.recent: float | None = None  # a moving average of the latest steps' seconds

    def stepped(self) -> None:
        now = time.perf_counter()
        if self.mark is not None:
            seconds = now - self.mark
            self.seconds += seconds
            self.steps += 1
            self.recent = seconds if self.recent is None else 0.7 * self.recent + 0.3 * seconds
        self.mark = now

    def pause(self) -> None:
        self.mark = None

    def step_seconds(self) -> float:
        return self.seconds / max(self.steps, 1)
