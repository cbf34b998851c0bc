"""A time-budgeted run (``--max-minutes``) sized to its budget: the speed probe, the plan from
measured speeds, and the re-plans when the speed drifts or the plan would end late (the rules
are :mod:`.plan`'s; this module measures and applies them to the run's state)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import distributed
from .config import TrainConfig
from .plan import PROBE_STEPS, Pace, steps_that_fit
from .state import TrainState


class Pacer:
    """Measures the run's speed and re-sizes ``state.plan`` to the budget; ``replanned`` is
    told the new plan's total steps and a line to print. Without a budget it only measures."""

    def __init__(
        self,
        config: TrainConfig,
        state: TrainState,
        steps_per_epoch: int,
        val_scenes: int,
        replanned: Callable[[int, str], None],
    ) -> None:
        self.config, self.state = config, state
        self.steps_per_epoch, self.val_scenes = steps_per_epoch, val_scenes
        self.replanned = replanned
        self.pace = Pace()

    @property
    def budget(self) -> float | None:
        """The time budget in seconds (None: none)."""
        minutes = self.config.max_minutes
        return None if minutes is None else 60.0 * minutes

    def out_of_time(self) -> bool:
        """This rank's clock is past the budget (ranks agree by summing it; see the loop)."""
        budget = self.budget
        return budget is not None and self.state.elapsed() > budget

    def stepped(self) -> None:
        """After each optimizer step: plan after the probe, check the pace every 5% of it."""
        self.pace.stepped()
        if self.budget is None:
            return
        state = self.state
        if state.plan.step_seconds is None and self.pace.steps >= PROBE_STEPS:
            self._replan("planned")
        elif state.step % max(1, state.plan.total_steps // 20) == 0:
            self.check()

    def paused(self, seconds: float | None = None) -> None:
        """A validation (which took ``seconds``) or a checkpoint interrupted the steps."""
        self.pace.pause()
        if seconds is not None:
            self.pace.val_seconds = seconds

    def _val_interval(self) -> int:
        """Steps between validations inside an epoch (every epoch also ends with one)."""
        return self.config.val_every or self.steps_per_epoch

    def _val_estimate(self) -> float:
        """Seconds of one validation before one was timed: the val images at a third of a
        training image's time (forward only), plus a second for the checkpoint and pictures."""
        per_image = self.pace.step_seconds() / (self.config.batch * self.config.accumulate)
        return self.val_scenes / self.state.job.world * per_image / 3 + 1.0

    def _measured(self) -> tuple[float, float, float]:
        """(seconds per step lately, per validation, elapsed): the mean over ranks, so that
        every rank makes the same plan."""
        state = self.state
        step_s = self.pace.recent or self.pace.step_seconds()
        val_s = self.pace.val_seconds or self._val_estimate()
        measured = torch.tensor(
            [step_s, val_s, state.elapsed()], dtype=torch.float64, device=state.device
        )
        step_s, val_s, elapsed = distributed.all_sum(measured, state.job).tolist()
        world = state.job.world
        return step_s / world, val_s / world, elapsed / world

    def _replan(self, why: str, replanned: bool = False) -> None:
        """Size the run's steps to the rest of the budget from the measured speeds."""
        budget, state = self.budget, self.state
        if budget is None:  # only a budget plans
            return
        step_s, val_s, elapsed = self._measured()
        interval = self._val_interval()
        cap = state.max_steps - state.step
        fit = steps_that_fit(
            budget - elapsed, step_s, val_s, interval, cap, start=state.step,
            epoch=self.steps_per_epoch,
        )  # fmt: skip
        state.plan = state.plan.resized(
            state.step, state.step + fit, step_seconds=step_s, val_seconds=val_s,
            replanned=replanned or state.plan.replanned,
        )  # fmt: skip
        self.replanned(
            state.plan.total_steps,
            f"{why}: {state.plan.total_steps} steps in the {self.config.max_minutes:g} min "
            f"budget ({step_s:.2f} s/step, {val_s:.1f} s/validation every {interval} steps)",
        )

    def check(self) -> None:
        """A budgeted run, after a validation and every 5% of its steps: re-plan once when the
        speed drifted by more than DRIFT, and whenever the plan would end past the budget."""
        budget, plan = self.budget, self.state.plan
        if budget is None or plan.step_seconds is None:
            return
        step_s, val_s, elapsed = self._measured()
        interval = self._val_interval()
        if not plan.replanned and plan.drifted(step_s, val_s):
            self._replan("re-planned (the speed drifted)", replanned=True)
        elif plan.overruns(
            self.state.step, elapsed, budget, step_s, val_s, interval, self.steps_per_epoch
        ):
            self._replan("re-planned to end in time")
