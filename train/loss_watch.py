"""Non-finite training losses, noticed on the device and read by the host only now and then.

Reading a loss back (``if not torch.isfinite(loss)``) waits for the GPU to finish the step and
stops the host from queueing the next one; with several ranks it also costs an all-reduce per
batch. :class:`LossWatch` tests each loss where it lives and keeps the earliest non-finite one
there; the trainer reads it every few steps (``trainer.CHECK_EVERY``) with the clock's verdict,
in one all-reduce, so every rank stops at the same step.
"""

from __future__ import annotations

import math

import torch

from . import distributed
from .distributed import Dist

KINDS = ("nan", "inf", "-inf")  # a bad loss's value, kept as 4 x step + its index here


class LossWatch:
    """The earliest non-finite loss on this rank, as ``4 x step + kind`` in a device scalar
    (+inf while there is none)."""

    def __init__(self, device: torch.device) -> None:
        self.first = torch.tensor(math.inf, dtype=torch.float64, device=device)

    @torch.no_grad()
    def add(self, loss: torch.Tensor, step: int) -> None:
        """Note the loss of a batch of optimizer step ``step`` (from 0); no host sync."""
        value = loss.detach().double()
        kind = torch.where(torch.isnan(value), 0.0, torch.where(value > 0, 1.0, 2.0))
        key = torch.where(torch.isfinite(value), math.inf, 4.0 * step + kind)
        torch.minimum(self.first, key, out=self.first)

    def check(self, late: bool, job: Dist) -> tuple[tuple[int, str] | None, bool]:
        """(the earliest bad loss over all ranks as (step, value), or None; whether any rank
        is ``late``): one all-reduce and one host read."""
        shared = torch.stack([self.first, self.first.new_tensor(0.0 if late else 1.0)])
        first, on_time = distributed.all_min(shared, job).tolist()
        if not math.isfinite(first):
            return None, on_time == 0.0
        step, kind = divmod(int(first), len(KINDS) + 1)
        return (step, KINDS[kind]), on_time == 0.0
