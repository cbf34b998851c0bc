"""Scoring a model on validation batches, shared by the training loop and ``maskdepth eval``,
and the model's pictures of fixed validation scenes for ``samples.png``."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair

from . import distributed
from .data.loader import MaskDepthDataset, make_loader
from .data.sources import Source
from .device import autocast, to_device
from .distributed import Dist, ShardSampler
from .ema import reestimate_bn
from .losses import LossConfig, compute_loss
from .metrics import TorchMetricAccumulator
from .report import sample_row
from .torch_runner import TorchRunner


@torch.no_grad()
def validate(
    model: nn.Module,
    batches: Iterable[dict],
    device: torch.device,
    *,
    dtype: torch.dtype | None = None,
    loss_config: LossConfig | None = None,
    job: Dist | None = None,
    output: int = 0,
) -> dict:
    """The metrics of ``model`` (put in eval mode) on loader ``batches``, as
    :meth:`TorchMetricAccumulator.compute` gives them, plus ``"loss"`` when ``loss_config`` is
    given. Under ``job`` every rank scores its share and the sums are added; ``dtype``: the
    autocast dtype (None: full precision); ``output``: the index of the maps scored (0: the
    fused, or refined, ones; 1: a refined model's base upsampled bilinearly, ``--no-refine``)."""
    model.eval()
    accumulator = TorchMetricAccumulator(device)
    loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in batches:
        inputs, mask, depth = to_device(batch, device)
        with autocast(device, dtype):
            outputs = model(inputs)
        mask_out, depth_out = outputs["mask"][output], outputs["depth"][output]
        accumulator.update(mask_out, mask, depth_out, depth, logits=True)
        if loss_config is not None:
            loss, _ = compute_loss(outputs, mask, depth, loss_config)
            loss_sum += torch.stack([loss.double() * len(mask), loss_sum.new_tensor(len(mask))])
    if job is not None and job.active:
        accumulator.all_reduce()
        distributed.all_sum(loss_sum, job)
    metrics = accumulator.compute()
    if loss_config is None:
        return metrics
    return {"loss": float(loss_sum[0] / loss_sum[1].clamp_min(1)), **metrics}


def scored_model(
    model: nn.Module, ema: nn.Module | None, job: Dist, bn_batches: Iterable[torch.Tensor] | None
) -> nn.Module:
    """The model validation scores: ``ema`` when on, with BatchNorm statistics that are the
    same on every rank, re-estimated on ``bn_batches`` when given (``--bn-reestimate``)."""
    scored = model if ema is None else ema
    distributed.average_buffers(scored, job)
    if bn_batches is not None:
        reestimate_bn(scored, bn_batches)
        distributed.average_buffers(scored, job)
    return scored


def bn_batches(
    dataset: MaskDepthDataset, count: int, batch: int, job: Dist, device: torch.device
) -> Iterator[torch.Tensor]:
    """This rank's share of ``count`` fixed scenes of ``dataset``, unaugmented, as input
    batches (the ``--bn-reestimate`` batches; ``count`` over all ranks)."""
    order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(0))
    chosen = dataset.indices[order[:count].numpy()]
    plain = MaskDepthDataset(dataset.source, chosen, dataset.pre, skip_bad=dataset.skip_bad)
    loader = make_loader(
        plain, batch, workers=0, sampler=ShardSampler(len(plain), job), pin_memory=False
    )
    for items in loader:
        yield to_device(items, device)[0]


def predict_maps(
    model: nn.Module, inputs: np.ndarray, device: torch.device, dtype: torch.dtype | None
) -> tuple[np.ndarray, np.ndarray]:
    """(mask, depth) probabilities, (N, H, W) float32, of ``model`` on pre-processed input pairs
    (N, 6, H, W): the reference inference that export and bench run too (TorchRunner)."""
    with TorchRunner(model, device=device, autocast=dtype) as runner:
        out = runner.infer({"bg": inputs[:, :3], "scene": inputs[:, 3:]})
    return out["mask"][:, 0], out["depth"][:, 0]


def sample_rows(
    model: nn.Module,
    source: Source,
    indices: Sequence[int],
    pre: Preprocessing,
    device: torch.device,
    dtype: torch.dtype | None = None,
) -> list[list[np.ndarray]]:
    """The rows of ``samples.png``: scenes ``indices`` of ``source`` with ``model``'s maps
    (a broken scene, with --skip-bad, is left out)."""
    samples = []
    for index in indices:
        try:
            samples.append(source[index])
        except MaskDepthError:
            continue
    if not samples:
        return []
    pairs = np.stack([prepare_pair(s.bg, s.scene, pre) for s in samples])
    mask, depth = predict_maps(model, pairs, device, dtype)
    return [sample_row(s, m, d) for s, m, d in zip(samples, mask, depth)]
