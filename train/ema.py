"""Two answers to BatchNorm statistics that lag at OneCycle's high learning rates: an exponential
moving average of the weights (and of the BatchNorm buffers), or re-estimating the statistics
on training batches before validation."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn

_Params = tuple[torch.Tensor, ...] | list[torch.Tensor]  # what AveragedModel's multi_avg_fn gets
EMA_WARMUP = 10  # the effective decay is min(decay, (1 + n) / (WARMUP + n)) after n updates


def warmup_decay(decay: float, updates: int) -> float:
    """The decay for update number ``updates`` (from 0).

    A fixed 0.999 would keep ~37% of the random initial weights after 1,000 steps, more than a
    short CPU run takes; the warm-up lets the average follow early training and reach ``decay``
    after ~10,000 updates (the ``num_updates`` rule of TensorFlow's ExponentialMovingAverage).
    """
    return min(decay, (1.0 + updates) / (EMA_WARMUP + updates))


def make_ema(model: nn.Module, decay: float) -> AveragedModel | None:
    """An EMA copy of ``model`` with its buffers averaged too (``use_buffers=True``), or None
    when ``decay`` is 0. Update it with ``ema.update_parameters(model)`` after each step."""
    if decay <= 0:
        return None

    def average(ema_params: _Params, params: _Params, updates: torch.Tensor | int) -> None:
        get_ema_multi_avg_fn(warmup_decay(decay, int(updates)))(ema_params, params, updates)

    return AveragedModel(model, multi_avg_fn=average, use_buffers=True)


def reestimate_bn(model: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm's running statistics from ``inputs`` (a cumulative average
    over the batches, as ``torch.optim.swa_utils.update_bn`` does); the model's mode is kept."""
    update_bn(inputs, model)
