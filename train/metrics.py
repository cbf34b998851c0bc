"""The runtime's mask and depth metrics in torch, computed on the batch's device.

Same definitions as :mod:`maskdepth.runtime.metrics` (read its docstring): the torch side only
produces the vector of sums (float64, ``SUM_FIELDS`` order) and the numpy side turns sums into
metrics, so the formulas for the final numbers live in one place. Element-wise work is float32
and sums are float64 here as there, which keeps the two within about 1e-7.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.metrics import (
    BOUNDARY_TOLERANCE,
    DELTA,
    DEPTH_EPS,
    MASK_THRESHOLD,
    SUM_FIELDS,
    MetricAccumulator,
    disk,
    summarise,
)

_F64 = torch.float64


def _flatten(pred: torch.Tensor, target: torch.Tensor, name: str) -> tuple[torch.Tensor, ...]:
    """Check a (N, 1, H, W) or (N, H, W) pair; return both as float32 (N, pixels)."""
    if pred.shape != target.shape:
        raise MaskDepthError(
            f"{name}: prediction shape {tuple(pred.shape)} does not match target shape "
            f"{tuple(target.shape)}"
        )
    if pred.dim() not in (3, 4) or (pred.dim() == 4 and pred.shape[1] != 1):
        raise MaskDepthError(f"{name}: expected (N, 1, H, W) or (N, H, W), got {tuple(pred.shape)}")
    images = pred.shape[0]
    return pred.reshape(images, -1).float(), target.reshape(images, -1).float()


def _ratio(numerator: torch.Tensor, denominator: torch.Tensor, empty: float) -> torch.Tensor:
    return torch.where(denominator > 0, numerator / denominator.clamp_min(1e-300), empty)


def _boundary(on: torch.Tensor) -> torch.Tensor:
    """Pixels of binary (N, 1, H, W) float masks with a 4-neighbour outside (border replicated)."""
    p = F.pad(on, (1, 1, 1, 1), mode="replicate")
    shifted = (p[..., :-2, 1:-1], p[..., 2:, 1:-1], p[..., 1:-1, :-2], p[..., 1:-1, 2:])
    eroded = torch.stack(shifted).amin(0)
    return on * (1 - eroded)


def _near(edges: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Dilation of (N, 1, H, W) 0/1 maps by a 0/1 kernel: a convolution, then > 0.5."""
    radius = kernel.shape[-1] // 2
    return F.conv2d(edges, kernel, padding=radius) > 0.5


@torch.no_grad()
def boundary_scores(
    pred_on: torch.Tensor, true_on: torch.Tensor, tolerance: int = BOUNDARY_TOLERANCE
) -> torch.Tensor:
    """Per-image boundary F-scores (float64) of binary (N, 1, H, W) or (N, H, W) masks, as
    :func:`maskdepth.runtime.metrics.boundary_f` defines them."""
    shape = (len(pred_on), 1, *pred_on.shape[-2:])
    pred, true = (m.reshape(shape).float() for m in (pred_on, true_on))
    edge_pred, edge_true = _boundary(pred), _boundary(true)
    kernel = torch.from_numpy(disk(tolerance)).float().to(pred.device)[None, None]
    n_pred, n_true = (e.sum((1, 2, 3), dtype=_F64) for e in (edge_pred, edge_true))
    hit_pred = (edge_pred.bool() & _near(edge_true, kernel)).sum((1, 2, 3), dtype=_F64)
    hit_true = (edge_true.bool() & _near(edge_pred, kernel)).sum((1, 2, 3), dtype=_F64)
    precision, recall = _ratio(hit_pred, n_pred, 0.0), _ratio(hit_true, n_true, 0.0)
    score = _ratio(2 * precision * recall, precision + recall, 0.0)
    either_empty = (n_pred == 0) | (n_true == 0)
    empty_score = (n_pred == n_true).to(_F64)
    return torch.where(either_empty, empty_score, score)


@torch.no_grad()
def batch_sums(
    mask_pred: torch.Tensor,
    mask_true: torch.Tensor,
    depth_pred: torch.Tensor,
    depth_true: torch.Tensor,
    *,
    logits: bool = False,
    threshold: float = MASK_THRESHOLD,
    eps: float = DEPTH_EPS,
    boundary: bool = True,
) -> torch.Tensor:
    """The sums vector of one batch, on the batch's device (no host synchronisation).

    With ``logits`` the two predictions are network logits and go through a sigmoid first.
    ``boundary=False`` leaves the boundary F-score's sum at 0 (the training loop's running
    metrics, which report IoU and RMSE only, skip its morphology on every step).
    """
    image_shape = (len(mask_pred), 1, *mask_pred.shape[-2:])
    mask_pred, mask_true = _flatten(mask_pred, mask_true, "mask")
    depth_pred, depth_true = _flatten(depth_pred, depth_true, "depth")
    if len(mask_pred) != len(depth_pred):
        raise MaskDepthError(f"{len(mask_pred)} masks but {len(depth_pred)} depth maps")
    if logits:
        mask_pred, depth_pred = torch.sigmoid(mask_pred), torch.sigmoid(depth_pred)

    pred_on, true_on = mask_pred > threshold, mask_true > threshold
    inter = (pred_on & true_on).sum(1, dtype=_F64)
    pred_area, true_area = pred_on.sum(1, dtype=_F64), true_on.sum(1, dtype=_F64)
    union = pred_area + true_area - inter

    error = depth_pred - depth_true
    squared = (error * error).sum(1, dtype=_F64)
    pixels = error.shape[1]

    valid = depth_true > eps
    valid_count = valid.sum(1, dtype=_F64)
    relative = error.abs() / torch.where(valid, depth_true, 1.0) * valid
    close = valid & (depth_pred < DELTA * depth_true) & (depth_true < DELTA * depth_pred)
    has_valid = valid_count > 0
    relative_mean = _ratio(relative.sum(1, dtype=_F64), valid_count, 0.0)
    close_mean = _ratio(close.sum(1, dtype=_F64), valid_count, 0.0)

    sums = {
        "count": torch.tensor(float(len(mask_pred)), dtype=_F64, device=inter.device),
        "iou": _ratio(inter, union, 1.0).sum(),
        "dice": _ratio(2 * inter, pred_area + true_area, 1.0).sum(),
        "intersection": inter.sum(),
        "union": union.sum(),
        "rmse": (squared / pixels).sqrt().sum(),
        "mae": (error.abs().sum(1, dtype=_F64) / pixels).sum(),
        "squared_error": squared.sum(),
        "pixels": torch.tensor(float(pixels * len(error)), dtype=_F64, device=inter.device),
        "depth_images": has_valid.sum(dtype=_F64),
        "absrel": relative_mean.sum(),
        "delta1": close_mean.sum(),
        "boundary_f": boundary_scores(pred_on.view(image_shape), true_on.view(image_shape)).sum()
        if boundary
        else inter.new_zeros(()),
    }
    return torch.stack([sums[name] for name in SUM_FIELDS])


def batch_metrics(
    mask_pred: torch.Tensor,
    mask_true: torch.Tensor,
    depth_pred: torch.Tensor,
    depth_true: torch.Tensor,
    *,
    logits: bool = False,
    threshold: float = MASK_THRESHOLD,
    eps: float = DEPTH_EPS,
) -> dict:
    """The runtime's metrics dict for one batch, as Python numbers (one device-to-host copy)."""
    sums = batch_sums(
        mask_pred, mask_true, depth_pred, depth_true, logits=logits, threshold=threshold, eps=eps
    )
    return summarise(sums.cpu().numpy())


class TorchMetricAccumulator:
    """:class:`~maskdepth.runtime.metrics.MetricAccumulator` with its sums kept on the device.

    ``update`` never waits for the device; ``compute`` copies the sums once. For distributed
    evaluation call :meth:`all_reduce` on every rank (pass ``device`` so that a rank with no
    batch still holds a tensor the backend accepts), then :meth:`compute`.
    """

    def __init__(
        self,
        device: torch.device | str | None = None,
        threshold: float = MASK_THRESHOLD,
        eps: float = DEPTH_EPS,
    ) -> None:
        self.threshold = float(threshold)
        self.eps = float(eps)
        self.sums = None if device is None else self._zeros(device)

    @staticmethod
    def _zeros(device) -> torch.Tensor:
        return torch.zeros(len(SUM_FIELDS), dtype=_F64, device=device)

    def update(
        self,
        mask_pred: torch.Tensor,
        mask_true: torch.Tensor,
        depth_pred: torch.Tensor,
        depth_true: torch.Tensor,
        *,
        logits: bool = False,
        boundary: bool = True,
    ) -> None:
        """Add one batch (see :func:`batch_sums`)."""
        sums = batch_sums(
            mask_pred,
            mask_true,
            depth_pred,
            depth_true,
            logits=logits,
            threshold=self.threshold,
            eps=self.eps,
            boundary=boundary,
        )
        if self.sums is None:
            self.sums = self._zeros(sums.device)
        self.sums += sums.to(self.sums.device)

    def merge(self, other: TorchMetricAccumulator) -> TorchMetricAccumulator:
        """Add another accumulator's images to this one; returns self."""
        if (other.threshold, other.eps) != (self.threshold, self.eps):
            raise MaskDepthError(
                f"cannot merge metrics with threshold/eps {other.threshold}/{other.eps} "
                f"into {self.threshold}/{self.eps}"
            )
        if other.sums is not None:
            if self.sums is None:
                self.sums = self._zeros(other.sums.device)
            self.sums += other.sums.to(self.sums.device)
        return self

    def all_reduce(self, group=None) -> TorchMetricAccumulator:
        """Sum the accumulators of all ranks in place (``torch.distributed`` must be set up)."""
        if self.sums is None:
            self.sums = self._zeros("cpu")
        torch.distributed.all_reduce(self.sums, group=group)
        return self

    def reset(self) -> None:
        if self.sums is not None:
            self.sums.zero_()

    def to_numpy(self) -> MetricAccumulator:
        """The same state as the runtime's numpy accumulator (one device-to-host copy)."""
        sums = self._zeros("cpu") if self.sums is None else self.sums.detach().cpu()
        return MetricAccumulator.from_sums(sums.numpy(), self.threshold, self.eps)

    def compute(self) -> dict:
        """The metrics so far, keys as the runtime's accumulator."""
        return self.to_numpy().compute()
