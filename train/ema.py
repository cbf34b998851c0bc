"""Two answers to BatchNorm statistics that lag at OneCycle's high learning rates: an exponential
moving average of the weights (and of the BatchNorm buffers), or re-estimating the statistics
on training batches before validation."""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import update_bn

EMA_WARMUP = 10  # the effective decay is min(decay, (1 + n) / (WARMUP + n)) after n updates


def warmup_decay(decay: float, updates: int) -> float:
    """The decay for update number ``updates`` (from 0).

    A fixed 0.999 would keep ~37% of the random initial weights after 1,000 steps, more than a
    short CPU run takes; the warm-up lets the average follow early training and reach ``decay``
    after ~10,000 updates (the ``num_updates`` rule of TensorFlow's ExponentialMovingAverage).
    """
    return min(decay, (1.0 + updates) / (EMA_WARMUP + updates))


class Ema:
    """An exponential moving average of a model's weights and floating-point buffers
    (BatchNorm statistics) in a copy of it, :attr:`module`; other buffers are copied.

    :attr:`updates` counts in a Python int: torch's ``AveragedModel`` keeps the count in a device
    tensor and reads it back twice per update, two host synchronisations per step on a GPU.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay, self.updates = decay, 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Average ``model``'s weights in (the first update copies them)."""
        ema = [*self.module.parameters(), *self.module.buffers()]
        now = [*model.parameters(), *model.buffers()]
        pairs = list(zip(ema, now, strict=True))
        copied = pairs
        if self.updates:
            averaged = [(e, n) for e, n in pairs if e.is_floating_point()]
            weight = 1.0 - warmup_decay(self.decay, self.updates)
            torch._foreach_lerp_([e for e, _ in averaged], [n for _, n in averaged], weight)
            copied = [(e, n) for e, n in pairs if not e.is_floating_point()]
        for e, n in copied:
            e.copy_(n)
        self.updates += 1


def make_ema(model: nn.Module, decay: float) -> Ema | None:
    """An EMA of ``model`` (update it with ``ema.update(model)`` after each step), or None when
    ``decay`` is 0."""
    return Ema(model, decay) if decay > 0 else None


def reestimate_bn(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm's running statistics from ``inputs`` (a cumulative average
    over the batches, as ``torch.optim.swa_utils.update_bn`` does); the model's mode is kept."""
    update_bn(inputs, model)
