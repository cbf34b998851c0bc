"""Mask and depth metrics: hand-made cases with known answers, the accumulator, numpy vs torch."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from maskdepth.runtime import metrics as M
from maskdepth.runtime.errors import MaskDepthError

EXPECTED_KEYS = {
    "iou",
    "iou_summed",
    "dice",
    "rmse",
    "rmse_pixels",
    "mae",
    "absrel",
    "delta1",
    "boundary_f",
    "count",
}


def squares() -> tuple[np.ndarray, np.ndarray]:
    """Two 4x4 squares on an 8x8 image overlapping by half: IoU 8/24, Dice 16/32."""
    a, b = np.zeros((8, 8), np.float32), np.zeros((8, 8), np.float32)
    a[0:4, 0:4] = 1
    b[0:4, 2:6] = 1
    return a, b


def test_iou_and_dice_of_half_overlapping_squares():
    a, b = squares()
    assert M.iou(a, b) == pytest.approx(1 / 3)
    assert M.dice(a, b) == pytest.approx(0.5)
    assert isinstance(M.iou(a, b), float)


def test_empty_masks_score_one_and_a_miss_scores_zero():
    empty, (a, _) = np.zeros((8, 8), np.float32), squares()
    assert M.iou(empty, empty) == 1.0
    assert M.dice(empty, empty) == 1.0
    assert M.iou_summed(empty, empty) == 1.0
    assert M.iou(empty, a) == 0.0
    assert M.dice(a, empty) == 0.0


def test_masks_are_binarised_above_the_threshold():
    target = np.array([[1.0, 1.0, 0.0, 0.0]], np.float32)
    noisy = np.array([[0.51, 0.9, 0.49, 0.5]], np.float32)  # 0.5 itself is off
    assert M.iou(noisy, target) == 1.0
    assert M.iou(noisy, target, threshold=0.6) == pytest.approx(0.5)


def test_per_image_iou_versus_the_seeds_batch_summed_iou():
    a, b = squares()
    small = np.zeros((8, 8), np.float32)
    small[7, 7] = 1
    pred, target = np.stack([a, small]), np.stack([b, small])
    np.testing.assert_allclose(M.iou(pred, target), [1 / 3, 1.0])
    assert M.iou_summed(pred, target) == pytest.approx((8 + 1) / (24 + 1))
    # (N, 1, H, W) is read as (N, H, W)
    np.testing.assert_allclose(M.iou(pred[:, None], target[:, None]), [1 / 3, 1.0])


def test_rmse_and_mae_per_image():
    target = np.zeros((2, 2, 2), np.float32)
    pred = np.zeros((2, 2, 2), np.float32)
    pred[0, 0, 0] = 1.0  # one pixel off by 1 out of 4
    pred[1] = 0.3
    np.testing.assert_allclose(M.rmse(pred, target), [0.5, 0.3], rtol=1e-6)
    np.testing.assert_allclose(M.mae(pred, target), [0.25, 0.3], rtol=1e-6)


def test_absrel_and_delta1_skip_zero_depth_without_warnings():
    target = np.array([[0.0, 0.5], [0.25, 1.0]], np.float32)
    pred = np.array([[0.3, 0.6], [0.25, 0.5]], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division by zero anywhere
        # valid pixels: 0.1/0.5, 0/0.25, 0.5/1 -> 0.7/3; ratios 1.2, 1, 2 -> 2 of 3 within 1.25
        assert M.absrel(pred, target) == pytest.approx(0.7 / 3, rel=1e-6)
        assert M.delta1(pred, target) == pytest.approx(2 / 3)
        assert M.delta1(np.zeros_like(pred), target) == 0.0  # predicting 0 is never close
        assert math.isnan(M.absrel(pred, np.zeros_like(target)))
        assert math.isnan(M.delta1(pred, np.zeros_like(target)))
    # the eps guard: a target of 0.002 counts with the default eps, not with eps = 0.01
    tiny = np.array([[0.002, 0.5]], np.float32)
    assert M.absrel(tiny, tiny + np.float32(0.001)) > 0.1
    assert M.absrel(tiny, np.array([[0.002, 0.5]], np.float32), eps=0.01) == 0.0


def test_accumulator_keys_and_hand_made_values():
    a, b = squares()
    mask_pred, mask_true = np.stack([a, a]), np.stack([b, a])
    depth_true = np.stack([np.zeros((8, 8)), np.full((8, 8), 0.5)]).astype(np.float32)
    depth_pred = depth_true + np.float32(1.0)  # error 1 on image 0, but image 1 ...
    depth_pred[1] = 0.5  # ... is exact
    acc = M.MetricAccumulator()
    acc.update(mask_pred, mask_true, depth_pred, depth_true)
    result = acc.compute()
    assert set(result) == EXPECTED_KEYS
    assert result["count"] == 2
    assert result["iou"] == pytest.approx((1 / 3 + 1) / 2)
    assert result["iou_summed"] == pytest.approx((8 + 16) / (24 + 16))
    assert result["dice"] == pytest.approx((0.5 + 1) / 2)
    assert result["rmse"] == pytest.approx(0.5)  # mean of per-image 1 and 0
    assert result["rmse_pixels"] == pytest.approx(math.sqrt(0.5))  # the seed's sqrt(MSE)
    assert result["mae"] == pytest.approx(0.5)
    # image 0 has depth 0 everywhere, so AbsRel and delta1 come from image 1 alone
    assert result["absrel"] == 0.0
    assert result["delta1"] == 1.0


def square(shift: int = 0, size: int = 40) -> np.ndarray:
    """A 20x20 square at rows 10..29, columns 10+shift..29+shift, on a size x size image."""
    mask = np.zeros((size, size), np.float32)
    mask[10:30, 10 + shift : 30 + shift] = 1
    return mask


def test_boundary_f_of_shifted_squares():
    truth = square()
    assert M.boundary_f(truth, truth) == 1.0
    # shifted by 1 px every boundary pixel is within 1 px of the other boundary
    assert M.boundary_f(square(1), truth) == 1.0
    assert M.boundary_f(square(2), truth) == 1.0
    # by 4 px: of the 76 boundary pixels, 18 of each 20-pixel top and bottom row lie within 2 px
    # of the other square's rows (columns 14..31 of 14..33), and 2 + 2 of the 18 inner pixels of
    # the near side column (rows 11, 12, 27, 28 reach the other top and bottom rows); the far
    # column is 4 px from anything. Precision = recall = 40/76, so F = 40/76.
    assert M.boundary_f(square(4), truth) == pytest.approx(40 / 76)
    assert M.boundary_f(truth, square(4)) == pytest.approx(40 / 76)
    # a tolerance of 4 px forgives the shift entirely; 0 px keeps only the overlapping rows
    assert M.boundary_f(square(4), truth, tolerance=4) == 1.0
    assert M.boundary_f(square(4), truth, tolerance=0) == pytest.approx(32 / 76)


def test_boundary_f_empty_cases_the_border_and_shapes():
    empty, truth = np.zeros((40, 40), np.float32), square()
    assert M.boundary_f(empty, empty) == 1.0
    assert M.boundary_f(empty, truth) == 0.0
    assert M.boundary_f(truth, empty) == 0.0
    full = np.ones((40, 40), np.float32)
    assert M.boundary_f(full, full) == 1.0  # the image's border is not an edge

    # a half-plane: its only boundary is the column at x = 19, matched by x = 21, not x = 22
    def half(width: int) -> np.ndarray:
        mask = np.zeros((40, 40), np.float32)
        mask[:, :width] = 1
        return mask

    assert M.boundary_f(half(22), half(20)) == 1.0
    assert M.boundary_f(half(23), half(20)) == 0.0
    batch = np.stack([truth, square(4)])[:, None]
    np.testing.assert_allclose(M.boundary_f(batch, np.stack([truth, truth])[:, None]), [1, 40 / 76])


def test_boundary_f_numpy_and_torch_agree_on_random_masks():
    torch = pytest.importorskip("torch")
    from maskdepth.train.metrics import boundary_scores

    rng = np.random.default_rng(7)
    smooth = [cv2_blur(rng.random((6, 1, 37, 53)).astype(np.float32)) for _ in range(3)]
    noisy = random_batch(rng, 6)[:2]  # noise: many short boundaries
    scores = []
    for pred, true in [(smooth[0], smooth[1]), (smooth[1], smooth[2]), noisy]:
        for tolerance in (0, 1, 2, 3):
            expected = M.boundary_f(pred, true, tolerance=tolerance)
            on = [torch.from_numpy(x > 0.5) for x in (pred, true)]
            got = boundary_scores(*on, tolerance).numpy()
            np.testing.assert_allclose(got, expected, rtol=1e-12)
            scores.extend(expected)
    assert sum(0.05 < s < 0.95 for s in scores) > len(scores) // 2  # mostly neither 0 nor 1


def cv2_blur(noise: np.ndarray) -> np.ndarray:
    """Noise smoothed into blobs (per image), rescaled to [0, 1]."""
    import cv2

    out = np.stack([cv2.GaussianBlur(image[0], (0, 0), 3)[None] for image in noise])
    low, high = out.min(), out.max()
    return ((out - low) / (high - low)).astype(np.float32)


def random_batch(rng, n, size=12):
    mask_true = (rng.random((n, 1, size, size)) > 0.6).astype(np.float32)
    mask_pred = np.clip(mask_true + rng.normal(0, 0.4, mask_true.shape), 0, 1).astype(np.float32)
    depth_true = rng.random((n, 1, size, size)).astype(np.float32)
    depth_true[:, :, :3] = 0  # nearest rows, as depth 0 exists
    depth_pred = np.clip(depth_true + rng.normal(0, 0.1, depth_true.shape), 0, 1)
    return mask_pred, mask_true, depth_pred.astype(np.float32), depth_true


def test_accumulator_over_batches_equals_one_call_and_merges():
    rng = np.random.default_rng(0)
    batch = random_batch(rng, 10)
    whole = M.MetricAccumulator()
    whole.update(*batch)
    parts, left, right = M.MetricAccumulator(), M.MetricAccumulator(), M.MetricAccumulator()
    for start, stop in [(0, 3), (3, 4), (4, 10)]:
        parts.update(*(x[start:stop] for x in batch))
    left.update(*(x[:5] for x in batch))
    right.update(*(x[5:] for x in batch))
    merged = left.merge(right)
    expected = whole.compute()
    assert expected["count"] == 10
    assert expected["iou"] == pytest.approx(np.mean(M.iou(batch[0], batch[1])), rel=1e-12)
    assert expected["rmse"] == pytest.approx(np.mean(M.rmse(batch[2], batch[3])), rel=1e-12)
    assert expected["absrel"] == pytest.approx(np.mean(M.absrel(batch[2], batch[3])), rel=1e-12)
    for result in (parts.compute(), merged.compute()):
        assert result == pytest.approx(expected, rel=1e-12)
    assert whole.sums.shape == (len(M.SUM_FIELDS),)  # constant memory: sums, not lists
    with pytest.raises(MaskDepthError, match="threshold"):
        whole.merge(M.MetricAccumulator(threshold=0.3))


def test_empty_accumulator_and_bad_inputs():
    result = M.MetricAccumulator().compute()
    assert result["count"] == 0 and math.isnan(result["iou"]) and math.isnan(result["rmse"])
    with pytest.raises(MaskDepthError, match="does not match"):
        M.iou(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(MaskDepthError, match="divide 8-bit"):
        M.iou(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(MaskDepthError, match="masks but"):
        M.batch_sums(*(np.zeros((2, 4, 4), np.float32),) * 2, *(np.zeros((3, 4, 4)),) * 2)


# ---- torch twin -------------------------------------------------------------------------


def edge_batches(rng):
    """Random data and the edge cases: empty, all-ones, zero depth, predictions at 0."""
    ones, zeros = np.ones((3, 1, 9, 7), np.float32), np.zeros((3, 1, 9, 7), np.float32)
    yield random_batch(rng, 6)
    yield zeros, zeros, zeros, zeros  # empty masks, depth all zero (no AbsRel pixel)
    yield ones, ones, ones, ones
    yield ones, zeros, zeros, ones  # everything wrong, predicted depth 0
    yield random_batch(rng, 1, size=5)


def test_numpy_and_torch_metrics_agree():
    torch = pytest.importorskip("torch")
    from maskdepth.train.metrics import TorchMetricAccumulator, batch_metrics

    rng = np.random.default_rng(3)
    acc_np, acc_torch = M.MetricAccumulator(), TorchMetricAccumulator()
    for batch in edge_batches(rng):
        acc_np.update(*batch)
        acc_torch.update(*(torch.from_numpy(x) for x in batch))
        single = M.MetricAccumulator()
        single.update(*batch)
        from_torch = batch_metrics(*(torch.from_numpy(x) for x in batch))
        assert set(from_torch) == EXPECTED_KEYS
        assert from_torch == pytest.approx(single.compute(), abs=1e-6, nan_ok=True)
    assert acc_torch.compute() == pytest.approx(acc_np.compute(), abs=1e-6)
    assert acc_torch.compute()["count"] == 16


def test_torch_metrics_from_logits_and_low_precision():
    torch = pytest.importorskip("torch")
    from maskdepth.train.metrics import TorchMetricAccumulator, batch_metrics

    rng = np.random.default_rng(5)
    mask_logits = torch.from_numpy(rng.normal(0, 3, (4, 1, 10, 10)).astype(np.float32))
    depth_logits = torch.from_numpy(rng.normal(0, 1, (4, 1, 10, 10)).astype(np.float32))
    mask_true = (torch.rand(4, 1, 10, 10) > 0.5).float()
    depth_true = torch.rand(4, 1, 10, 10)
    from_logits = batch_metrics(mask_logits, mask_true, depth_logits, depth_true, logits=True)
    probs = [torch.sigmoid(mask_logits), mask_true, torch.sigmoid(depth_logits), depth_true]
    reference = M.MetricAccumulator()
    reference.update(*(p.numpy() for p in probs))
    assert from_logits == pytest.approx(reference.compute(), abs=1e-6)
    # bfloat16 predictions (autocast output) are read as float32
    half = batch_metrics(*(p.bfloat16() for p in probs))
    reference_half = M.MetricAccumulator()
    reference_half.update(*(p.bfloat16().float().numpy() for p in probs))
    assert half == pytest.approx(reference_half.compute(), abs=1e-6)
    # merging and converting torch accumulators
    left, right = TorchMetricAccumulator(device="cpu"), TorchMetricAccumulator()
    left.update(*(p[:2] for p in probs))
    right.update(*(p[2:] for p in probs))
    merged = left.merge(right).to_numpy().compute()
    assert merged == pytest.approx(reference.compute(), abs=1e-6)
    assert TorchMetricAccumulator().compute()["count"] == 0
