"""The learning-rate plan: OneCycle as a function of progress, re-sizing without a jump, and
how many steps fit a budget."""

from __future__ import annotations

import pytest
import torch

from maskdepth.train.plan import DRIFT, MARGIN, OneCycle, Plan, steps_that_fit, validations


def _torch_one_cycle(total: int, max_lr: float = 0.01) -> tuple[list[float], list[float]]:
    """torch's OneCycleLR as the seed used it (pct_start 0.5, div_factor 10): rate and beta1."""
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=max_lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=total, pct_start=0.5, div_factor=10.0
    )
    rates, betas = [], []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        betas.append(optimizer.param_groups[0]["betas"][0])
        optimizer.step()
        scheduler.step()
    return rates, betas


def test_one_cycle_follows_torch_one_cycle_lr():
    total = 201
    rates, betas = _torch_one_cycle(total)
    plan, schedule = Plan(total_steps=total), OneCycle(0.01)
    ours = [schedule.lr(plan.progress(step)) for step in range(total)]
    # torch peaks half a step earlier (at pct_start * total - 1): the curves differ by less
    # than one step of torch's own.
    largest_step = max(abs(b - a) for a, b in zip(rates, rates[1:]))
    assert max(abs(a - b) for a, b in zip(ours, rates)) < largest_step
    assert ours[0] == pytest.approx(rates[0]) == pytest.approx(1e-3)
    assert ours[-1] == pytest.approx(rates[-1]) == pytest.approx(1e-7)
    assert max(ours) == pytest.approx(0.01, rel=1e-3)
    ours_beta = [schedule.beta1(plan.progress(step)) for step in range(total)]
    assert ours_beta[0] == pytest.approx(betas[0]) == pytest.approx(0.95)
    assert min(ours_beta) == pytest.approx(0.85, abs=1e-4) and ours_beta[-1] == pytest.approx(0.95)


def test_warmup_share_moves_the_peak():
    schedule = OneCycle(0.01, warmup=0.2)
    plan = Plan(total_steps=101)
    rates = [schedule.lr(plan.progress(s)) for s in range(101)]
    assert max(range(101), key=rates.__getitem__) == 20


def test_apply_sets_every_group_rate_and_beta1():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.Adam(
        [{"params": [model.weight]}, {"params": [model.bias], "betas": (0.5, 0.9)}], lr=1.0
    )
    rate = OneCycle(0.02).apply(optimizer, 0.5)
    assert rate == pytest.approx(0.02)
    assert [g["lr"] for g in optimizer.param_groups] == [rate, rate]
    assert [g["betas"] for g in optimizer.param_groups] == [(0.85, 0.999), (0.85, 0.9)]


def test_a_run_shorter_than_an_epoch_still_anneals():
    plan = Plan(total_steps=7)
    schedule = OneCycle(0.01)
    assert [plan.progress(s) for s in (0, 3, 6, 9)] == [0.0, 0.5, 1.0, 1.0]
    assert schedule.lr(plan.progress(6)) == pytest.approx(1e-7)


def test_resizing_continues_from_the_same_progress():
    plan = Plan(total_steps=1000)
    before = plan.progress(100)
    shorter = plan.resized(100, 400, step_seconds=0.5, val_seconds=3.0, replanned=True)
    assert shorter.progress(100) == pytest.approx(before)
    assert shorter.progress(399) == 1.0 and shorter.total_steps == 400
    assert shorter.progress(250) == pytest.approx(before + (1 - before) * 150 / 299)
    assert (shorter.step_seconds, shorter.val_seconds, shorter.replanned) == (0.5, 3.0, True)
    assert Plan.from_dict(shorter.to_dict()) == shorter
    # A plan cannot end before the step it is at.
    assert plan.resized(100, 50).total_steps == 101


def test_drift_is_relative_to_the_planned_speed():
    plan = Plan(total_steps=10, step_seconds=1.0, val_seconds=10.0)
    assert not plan.drifted(1.0 + DRIFT * 0.9, 10.0)
    assert plan.drifted(1.0 + DRIFT * 1.1, 10.0)
    assert plan.drifted(1.0, 10.0 * (1 - DRIFT * 1.1))
    assert not plan.drifted(1.0, None)  # no validation timed yet


@pytest.mark.parametrize("interval", [1, 7, 50, 10**9])
def test_steps_that_fit_use_the_budget_and_no_more(interval):
    seconds, step_s, val_s = 100.0, 0.3, 2.0
    steps = steps_that_fit(seconds, step_s, val_s, interval, cap=10**9)

    def cost(n: int) -> float:
        return n * step_s + ((n - 1) // interval) * val_s

    usable = seconds * (1 - MARGIN)
    assert cost(steps) <= usable < cost(steps + 1)


def test_steps_that_fit_respects_the_cap_the_start_and_a_floor_of_one():
    assert steps_that_fit(100.0, 0.1, 1.0, 10, cap=50) == 50
    assert steps_that_fit(0.01, 1.0, 1.0, 10, cap=50) == 1
    # From step 95 with validations every 100 steps, step 100 triggers one (5 s) on the way.
    assert steps_that_fit(20.0, 1.0, 5.0, 100, cap=10**6, start=95) == 14
    assert steps_that_fit(20.0, 1.0, 5.0, 100, cap=10**6, start=0) == 19


def test_validations_count_every_epochs_end_too():
    # --val-every 10 in epochs of 18 steps: after steps 10, 18, 20, 30, 36, 40, 50, 54, 60
    due = [s for s in range(1, 61) if s % 10 == 0 or s % 18 == 0]
    assert validations(0, 60, 10, epoch=18) == len(due) == 9
    assert validations(12, 40, 10, epoch=18) == len([s for s in due if 12 < s <= 40]) == 5
    assert validations(0, 60, 10) == 6 and validations(0, 60, 6, epoch=6) == 10
    # the planner counts them: 18-step epochs with a validation due every 10 steps cost more
    assert steps_that_fit(100.0, 1.0, 5.0, 10, cap=10**6, epoch=18) < steps_that_fit(
        100.0, 1.0, 5.0, 10, cap=10**6
    )
