"""Mask and depth metrics in numpy: per-image functions and a mergeable accumulator.

Conventions, shared with the torch twin ``maskdepth.train.metrics`` (a test holds them equal):

- Inputs are float arrays in [0, 1] shaped (H, W), (N, H, W) or (N, 1, H, W): mask probabilities
  and targets, predicted and true depth (0 = nearest). Element-wise work is done in float32 and
  every sum in float64, on both sides, so the two implementations agree to about 1e-7.
- Masks are binarised with ``value > threshold`` (0.5, as the seed) on prediction and target.
- An image whose binarised prediction and target are both empty scores IoU 1 and Dice 1: there
  was nothing to find and nothing was found.
- ``boundary_f`` (the DAVIS / BackgroundMattingV2 boundary F-score): a binarised mask's boundary
  is its pixels with a 4-neighbour outside it (the image's border is not an edge); a boundary
  pixel of the prediction is correct when a true boundary pixel lies within ``BOUNDARY_TOLERANCE``
  pixels (a disk, at the resolution scored), and the other way round for recall; F is their
  harmonic mean. Both boundaries empty scores 1, one of them empty 0.
- AbsRel and delta1 divide by the true depth, and depth 0 (nearest) is a real value, so they use
  only pixels whose true depth is above ``DEPTH_EPS``. An image without such a pixel is NaN in the
  per-image functions and left out of the accumulator's AbsRel and delta1 means.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .errors import MaskDepthError

MASK_THRESHOLD = 0.5
# Below the smallest non-zero 8-bit depth (1/255 ~ 0.0039), so 8-bit data loses only its true
# zeros; with 16-bit depth, values under ~65/65535 are left out too (their ratios explode).
DEPTH_EPS = 1e-3
DELTA = 1.25
BOUNDARY_TOLERANCE = 2  # pixels, at the resolution scored

# The accumulator's state: one float64 vector of sums in this order, so that accumulators merge
# by addition and distributed evaluation can all-reduce one tensor.
SUM_FIELDS = (
    "count",  # images
    "iou",  # sum of per-image IoU
    "dice",  # sum of per-image Dice
    "intersection",  # pixels in both binarised masks, over all images
    "union",  # pixels in either binarised mask, over all images
    "rmse",  # sum of per-image RMSE
    "mae",  # sum of per-image MAE
    "squared_error",  # sum of squared depth errors over all pixels
    "pixels",  # depth pixels
    "depth_images",  # images with at least one pixel of true depth > eps
    "absrel",  # sum of per-image AbsRel over those images
    "delta1",  # sum of per-image delta1 over those images
    "boundary_f",  # sum of per-image boundary F-scores of the binarised masks
)
_INDEX = {name: i for i, name in enumerate(SUM_FIELDS)}


def _flatten(pred, target, name: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Check a prediction/target pair; return both as float32 (N, pixels) and whether 2-D."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise MaskDepthError(
            f"{name}: prediction shape {pred.shape} does not match target shape {target.shape}"
        )
    for array in (pred, target):
        if array.dtype.kind not in "fb":
            raise MaskDepthError(
                f"{name}: expected float values in [0, 1], got dtype {array.dtype} "
                "(divide 8-bit images by 255 first)"
            )
    shape = pred.shape
    if len(shape) == 4 and shape[1] == 1:
        shape = (shape[0], *shape[2:])
    if len(shape) not in (2, 3):
        raise MaskDepthError(
            f"{name}: expected (H, W), (N, H, W) or (N, 1, H, W), got {pred.shape}"
        )
    single = len(shape) == 2
    images = 1 if single else shape[0]
    flat = [a.reshape(images, -1).astype(np.float32, copy=False) for a in (pred, target)]
    return flat[0], flat[1], single


def _ratio(numerator: np.ndarray, denominator: np.ndarray, empty: float) -> np.ndarray:
    """numerator / denominator, with ``empty`` where the denominator is 0."""
    out = np.full(numerator.shape, empty, dtype=np.float64)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def _areas(pred: np.ndarray, target: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """Per-image (intersection, predicted area, true area) of the binarised masks, as float64."""
    pred_on, true_on = pred > threshold, target > threshold
    return tuple(
        np.count_nonzero(a, axis=1).astype(np.float64)
        for a in (pred_on & true_on, pred_on, true_on)
    )


def _relative(pred: np.ndarray, target: np.ndarray, eps: float) -> tuple[np.ndarray, ...]:
    """Per-image (AbsRel, delta1, valid pixel count) over pixels with target > eps."""
    valid = target > eps
    count = np.count_nonzero(valid, axis=1).astype(np.float64)
    relative = np.abs(pred - target) / np.where(valid, target, np.float32(1))
    relative_sum = relative.sum(axis=1, where=valid, dtype=np.float64)
    # max(p/t, t/p) < 1.25 without a division: p < 1.25 t and t < 1.25 p (t > 0).
    close = valid & (pred < DELTA * target) & (target < DELTA * pred)
    close_sum = np.count_nonzero(close, axis=1).astype(np.float64)
    return _ratio(relative_sum, count, math.nan), _ratio(close_sum, count, math.nan), count


def _per_image(values: np.ndarray, single: bool):
    return float(values[0]) if single else values


def disk(radius: int) -> np.ndarray:
    """The (2r+1, 2r+1) uint8 disk x^2 + y^2 <= r^2: the boundary F-score's tolerance."""
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))


def boundary_map(mask_on: np.ndarray) -> np.ndarray:
    """The boundary of a binary (H, W) mask: its pixels with a 4-neighbour outside it."""
    on = mask_on.astype(np.uint8)
    return (on > 0) & (cv2.erode(on, _CROSS, borderType=cv2.BORDER_REPLICATE) == 0)


def _matched(boundary: np.ndarray, other: np.ndarray, kernel: np.ndarray) -> int:
    """Pixels of ``boundary`` within the kernel's reach of a pixel of ``other``."""
    near = cv2.dilate(other.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return int(np.count_nonzero(boundary & (near > 0)))


def _boundary_scores(pred_on: np.ndarray, true_on: np.ndarray, tolerance: int) -> np.ndarray:
    """Per-image boundary F-scores (float64) of binary (N, H, W) masks."""
    kernel = disk(tolerance)
    scores = np.empty(len(pred_on), dtype=np.float64)
    for i, (pred, true) in enumerate(zip(pred_on, true_on)):
        edge_pred, edge_true = boundary_map(pred), boundary_map(true)
        n_pred, n_true = np.count_nonzero(edge_pred), np.count_nonzero(edge_true)
        if n_pred == 0 or n_true == 0:
            scores[i] = 1.0 if n_pred == n_true else 0.0
            continue
        precision = _matched(edge_pred, edge_true, kernel) / n_pred
        recall = _matched(edge_true, edge_pred, kernel) / n_true
        total = precision + recall
        scores[i] = 2 * precision * recall / total if total > 0 else 0.0
    return scores


def _images(array: np.ndarray, images: int) -> np.ndarray:
    """A checked (H, W), (N, H, W) or (N, 1, H, W) array as (N, H, W)."""
    return array.reshape(images, *array.shape[-2:])


def boundary_f(
    pred, target, threshold: float = MASK_THRESHOLD, tolerance: int = BOUNDARY_TOLERANCE
):
    """Per-image boundary F-score of the masks binarised at ``threshold`` (a float for one image).

    A boundary pixel counts as found when the other mask's boundary passes within ``tolerance``
    pixels (a disk); both boundaries empty scores 1.0, exactly one empty 0.0.
    """
    flat_pred, _, single = _flatten(pred, target, "boundary_f")
    images = len(flat_pred)
    pred_on = _images(np.asarray(pred) > threshold, images)
    true_on = _images(np.asarray(target) > threshold, images)
    return _per_image(_boundary_scores(pred_on, true_on, tolerance), single)


def iou(pred, target, threshold: float = MASK_THRESHOLD):
    """Per-image IoU of the masks binarised at ``threshold`` (a float for one (H, W) image).

    An image whose binarised prediction and target are both empty counts as IoU 1.0.
    """
    pred, target, single = _flatten(pred, target, "iou")
    inter, pred_area, true_area = _areas(pred, target, threshold)
    return _per_image(_ratio(inter, pred_area + true_area - inter, 1.0), single)


def iou_summed(pred, target, threshold: float = MASK_THRESHOLD) -> float:
    """The seed's batch IoU: intersection and union summed over all images, then divided.

    Large objects weigh more than in :func:`iou`; an all-empty batch scores 1.0.
    """
    pred, target, _ = _flatten(pred, target, "iou_summed")
    inter, pred_area, true_area = (a.sum() for a in _areas(pred, target, threshold))
    union = pred_area + true_area - inter
    return float(inter / union) if union > 0 else 1.0


def dice(pred, target, threshold: float = MASK_THRESHOLD):
    """Per-image Dice (F1) of the binarised masks, 2|A and B| / (|A| + |B|); empty-empty is 1.0."""
    pred, target, single = _flatten(pred, target, "dice")
    inter, pred_area, true_area = _areas(pred, target, threshold)
    return _per_image(_ratio(2 * inter, pred_area + true_area, 1.0), single)


def rmse(pred, target):
    """Per-image root mean squared depth error."""
    pred, target, single = _flatten(pred, target, "rmse")
    error = pred - target
    return _per_image(np.sqrt(np.mean(error * error, axis=1, dtype=np.float64)), single)


def mae(pred, target):
    """Per-image mean absolute depth error."""
    pred, target, single = _flatten(pred, target, "mae")
    return _per_image(np.abs(pred - target).mean(axis=1, dtype=np.float64), single)


def absrel(pred, target, eps: float = DEPTH_EPS):
    """Per-image mean of |pred - target| / target over pixels with target > ``eps``.

    Depth 0 (nearest) exists, so pixels at or below ``eps`` (default ``DEPTH_EPS`` = 1e-3) are
    left out; an image with no pixel left is NaN.
    """
    pred, target, single = _flatten(pred, target, "absrel")
    return _per_image(_relative(pred, target, eps)[0], single)


def delta1(pred, target, eps: float = DEPTH_EPS):
    """Per-image fraction of pixels with max(pred/target, target/pred) < 1.25.

    Same pixels as :func:`absrel`: target > ``eps``; an image with none is NaN.
    """
    pred, target, single = _flatten(pred, target, "delta1")
    return _per_image(_relative(pred, target, eps)[1], single)


def batch_sums(
    mask_pred,
    mask_true,
    depth_pred,
    depth_true,
    threshold: float = MASK_THRESHOLD,
    eps: float = DEPTH_EPS,
) -> np.ndarray:
    """The accumulator's sums (float64, in ``SUM_FIELDS`` order) for one batch."""
    masks = (mask_pred, mask_true)
    mask_pred, mask_true, _ = _flatten(mask_pred, mask_true, "mask")
    depth_pred, depth_true, _ = _flatten(depth_pred, depth_true, "depth")
    if len(mask_pred) != len(depth_pred):
        raise MaskDepthError(f"{len(mask_pred)} masks but {len(depth_pred)} depth maps")
    edges = boundary_f(*masks, threshold)
    inter, pred_area, true_area = _areas(mask_pred, mask_true, threshold)
    union = pred_area + true_area - inter
    error = depth_pred - depth_true
    squared = np.sum(error * error, axis=1, dtype=np.float64)
    pixels = error.shape[1]
    rel, close, valid = _relative(depth_pred, depth_true, eps)
    has_valid = valid > 0
    sums = {
        "count": len(mask_pred),
        "iou": _ratio(inter, union, 1.0).sum(),
        "dice": _ratio(2 * inter, pred_area + true_area, 1.0).sum(),
        "intersection": inter.sum(),
        "union": union.sum(),
        "rmse": np.sqrt(squared / pixels).sum(),
        "mae": (np.sum(np.abs(error), axis=1, dtype=np.float64) / pixels).sum(),
        "squared_error": squared.sum(),
        "pixels": pixels * len(error),
        "depth_images": np.count_nonzero(has_valid),
        "absrel": rel[has_valid].sum(),
        "delta1": close[has_valid].sum(),
        "boundary_f": np.sum(edges),
    }
    return np.array([sums[name] for name in SUM_FIELDS], dtype=np.float64)


def summarise(sums: np.ndarray) -> dict:
    """Turn a sums vector into the metrics dict; NaN for a metric with no image behind it.

    ``iou``, ``dice``, ``rmse``, ``mae``, ``absrel``, ``delta1``: means over images of the
    per-image values. ``iou_summed``: the seed's batch-summed IoU over everything seen.
    ``rmse_pixels``: sqrt of the mean squared error over all pixels (the seed's ``sqrt(MSE)``).
    ``boundary_f``: mean over images of the mask's boundary F-score (see :func:`boundary_f`).
    """
    s = {name: float(sums[i]) for i, name in enumerate(SUM_FIELDS)}

    def mean(total: float, count: float) -> float:
        return total / count if count > 0 else math.nan

    count = s["count"]
    iou_summed_value = s["intersection"] / s["union"] if s["union"] > 0 else 1.0
    return {
        "iou": mean(s["iou"], count),
        "iou_summed": iou_summed_value if count > 0 else math.nan,
        "dice": mean(s["dice"], count),
        "rmse": mean(s["rmse"], count),
        "rmse_pixels": math.sqrt(mean(s["squared_error"], s["pixels"])),
        "mae": mean(s["mae"], count),
        "absrel": mean(s["absrel"], s["depth_images"]),
        "delta1": mean(s["delta1"], s["depth_images"]),
        "boundary_f": mean(s["boundary_f"], count),
        "count": int(count),
    }


class MetricAccumulator:
    """Mask and depth metrics over many batches in constant memory (a vector of sums).

    ``compute()`` returns ``iou`` (mean over images), ``iou_summed`` (the seed's form),
    ``dice``, ``rmse`` (mean over images of per-image RMSE), ``rmse_pixels`` (sqrt of the mean
    squared error over all pixels), ``mae``, ``absrel``, ``delta1``, ``boundary_f`` and
    ``count`` (images).
    Accumulators merge by adding their sums, so shards can be evaluated apart.
    """

    def __init__(self, threshold: float = MASK_THRESHOLD, eps: float = DEPTH_EPS) -> None:
        self.threshold = float(threshold)
        self.eps = float(eps)
        self.sums = np.zeros(len(SUM_FIELDS), dtype=np.float64)

    @classmethod
    def from_sums(
        cls, sums, threshold: float = MASK_THRESHOLD, eps: float = DEPTH_EPS
    ) -> MetricAccumulator:
        """An accumulator holding ``sums`` (e.g. all-reduced across processes)."""
        sums = np.asarray(sums, dtype=np.float64)
        if sums.shape != (len(SUM_FIELDS),):
            raise MaskDepthError(f"sums need shape ({len(SUM_FIELDS)},), got {sums.shape}")
        accumulator = cls(threshold, eps)
        accumulator.sums = sums.copy()
        return accumulator

    def update(self, mask_pred, mask_true, depth_pred, depth_true) -> None:
        """Add a batch: mask probabilities and targets, predicted and true depth, all in [0, 1]."""
        self.sums += batch_sums(
            mask_pred, mask_true, depth_pred, depth_true, self.threshold, self.eps
        )

    def merge(self, other: MetricAccumulator) -> MetricAccumulator:
        """Add another accumulator's images to this one (same threshold and eps); returns self."""
        if (other.threshold, other.eps) != (self.threshold, self.eps):
            raise MaskDepthError(
                f"cannot merge metrics with threshold/eps {other.threshold}/{other.eps} "
                f"into {self.threshold}/{self.eps}"
            )
        self.sums += other.sums
        return self

    @property
    def count(self) -> int:
        return int(self.sums[_INDEX["count"]])

    def reset(self) -> None:
        self.sums[:] = 0

    def compute(self) -> dict:
        """The metrics so far (see :func:`summarise`)."""
        return summarise(self.sums)
