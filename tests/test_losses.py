"""Training losses: the seed's default against a hand-written sum, each option's term by hand,
gradients, autocast and the configuration checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.train.losses import (
    LossConfig,
    compute_loss,
    dice_loss,
    gaussian_window,
    gradient_loss,
    parse_terms,
    soft_iou_loss,
    ssim,
)

SHAPE = (2, 1, 12, 12)


def make_outputs(seed: int = 0, scale: float = 2.0, requires_grad: bool = False) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        task: [
            (torch.randn(SHAPE, generator=generator) * scale).requires_grad_(requires_grad)
            for _ in range(7)
        ]
        for task in ("mask", "depth")
    }


def make_targets(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mask = (torch.rand(SHAPE, generator=generator) > 0.7).float()
    depth = torch.rand(SHAPE, generator=generator)
    return mask, depth


def hand_bce(logits: torch.Tensor, target: torch.Tensor) -> float:
    """The seed's nn.BCELoss on sigmoid probabilities, in float64."""
    p = torch.sigmoid(logits.double())
    t = target.double()
    return float(-(t * torch.log(p) + (1 - t) * torch.log(1 - p)).mean())


def test_default_is_the_seeds_sum_of_14_bce_terms():
    outputs, (mask, depth) = make_outputs(), make_targets()
    total, parts = compute_loss(outputs, mask, depth)
    mask_sum = sum(hand_bce(x, mask) for x in outputs["mask"])
    depth_sum = sum(hand_bce(x, depth) for x in outputs["depth"])
    assert total.dtype == torch.float32
    assert float(total) == pytest.approx(mask_sum + depth_sum, rel=1e-5)
    assert float(parts["mask"]) == pytest.approx(mask_sum, rel=1e-5)
    assert float(parts["depth/bce"]) == pytest.approx(depth_sum, rel=1e-5)
    assert set(parts) == {"mask", "depth", "mask/bce", "depth/bce"}
    assert not any(p.requires_grad for p in parts.values())


def test_side_and_task_weights():
    outputs, (mask, depth) = make_outputs(), make_targets()
    config = LossConfig(side_weight=0.25, mask_weight=2.0, depth_weight=0.5)
    total, _ = compute_loss(outputs, mask, depth, config)

    def task(maps, target):
        return hand_bce(maps[0], target) + 0.25 * sum(hand_bce(x, target) for x in maps[1:])

    expected = 2.0 * task(outputs["mask"], mask) + 0.5 * task(outputs["depth"], depth)
    assert float(total) == pytest.approx(expected, rel=1e-5)
    fused_only, _ = compute_loss(outputs, mask, depth, LossConfig(side_weight=0))
    expected = hand_bce(outputs["mask"][0], mask) + hand_bce(outputs["depth"][0], depth)
    assert float(fused_only) == pytest.approx(expected, rel=1e-5)


def test_l1_gradient_dice_and_ssim_terms_by_hand():
    pred = torch.tensor([[0.0, 0.2, 0.6], [0.1, 0.1, 0.1]])[None, None]
    # x differences: |0.2|, |0.4|, 0, 0 -> 0.15; y differences: 0.1, 0.1, 0.5 -> 0.7 / 3
    assert float(gradient_loss(pred, torch.zeros_like(pred))) == pytest.approx(0.15 + 0.7 / 3)
    assert float(gradient_loss(pred, pred + 0.3)) == pytest.approx(0.0, abs=1e-7)

    prob = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    # image 0: 1 - (2*0.5 + 1) / (1 + 1 + 1) = 1/3; image 1 (empty, empty): 0
    assert float(dice_loss(prob, target)) == pytest.approx(1 / 6)

    # the L1 term through compute_loss, on the fused output only
    outputs, (mask, depth) = make_outputs(), make_targets()
    _, parts = compute_loss(outputs, mask, depth, LossConfig(depth="l1", side_weight=0))
    expected = (torch.sigmoid(outputs["depth"][0]) - depth).abs().mean()
    assert float(parts["depth/l1"]) == pytest.approx(float(expected), rel=1e-6)


def test_soft_iou_term_by_hand():
    prob = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    target = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).reshape(2, 1, 2, 2)
    # image 0: overlap 0.5, union 1 + 1 - 0.5 = 1.5 -> 1 - 1.5 / 2.5 = 0.4; image 1: 0
    assert float(soft_iou_loss(prob, target)) == pytest.approx(0.2)
    assert float(soft_iou_loss(target, target)) == pytest.approx(0.0)
    # Far from a perfect score when nothing of a large mask is found.
    big = torch.ones(1, 1, 8, 8)
    assert float(soft_iou_loss(torch.zeros_like(big), big)) == pytest.approx(64 / 65)
    _, parts = compute_loss(make_outputs(), *make_targets(), LossConfig(mask="bce+iou"))
    assert float(parts["mask/iou"]) > 0 and "mask/bce" in parts


def test_ssim_against_a_hand_computation():
    rng = np.random.default_rng(2)
    x, y = rng.random((3, 3)), rng.random((3, 3))
    w = gaussian_window(3).double().numpy()[0, 0]
    assert w.sum() == pytest.approx(1.0)
    mx, my = (w * x).sum(), (w * y).sum()
    vx, vy = (w * x * x).sum() - mx**2, (w * y * y).sum() - my**2
    cov = (w * x * y).sum() - mx * my
    c1, c2 = 0.01**2, 0.03**2
    expected = (2 * mx * my + c1) * (2 * cov + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    tx, ty = (torch.from_numpy(a)[None, None].float() for a in (x, y))
    assert float(ssim(tx, ty, window=3)) == pytest.approx(expected, rel=1e-4)
    assert float(ssim(tx, tx, window=3)) == pytest.approx(1.0, abs=1e-5)


def test_ssim_term_is_zero_for_identical_maps_and_positive_otherwise():
    _, depth = make_targets()
    logits = torch.logit(depth.clamp(1e-4, 1 - 1e-4))
    outputs = {"mask": [logits] * 7, "depth": [logits] * 7}
    config = LossConfig(depth="ssim", side_weight=0)
    _, same = compute_loss(outputs, depth, depth.clamp(1e-4, 1 - 1e-4), config)
    assert float(same["depth/ssim"]) == pytest.approx(0.0, abs=1e-5)
    _, other = compute_loss(outputs, depth, depth.flip(-1), config)
    assert float(other["depth/ssim"]) > 0.05
    with pytest.raises(MaskDepthError, match="does not fit"):
        compute_loss(outputs, depth, depth, LossConfig(depth="ssim", ssim_window=13))


def test_every_option_together_sums_its_parts():
    outputs, (mask, depth) = make_outputs(), make_targets()
    config = LossConfig(mask="bce+0.5*dice", depth="bce+l1+ssim+2*grad", depth_weight=3.0)
    total, parts = compute_loss(outputs, mask, depth, config)
    assert float(parts["mask"]) == pytest.approx(
        float(parts["mask/bce"] + 0.5 * parts["mask/dice"]), rel=1e-6
    )
    depth_terms = parts["depth/bce"] + parts["depth/l1"] + parts["depth/ssim"]
    assert float(parts["depth"]) == pytest.approx(
        float(depth_terms + 2 * parts["depth/grad"]), rel=1e-6
    )
    assert float(total) == pytest.approx(float(parts["mask"] + 3 * parts["depth"]), rel=1e-6)
    fused = torch.sigmoid(outputs["mask"][0])
    sides = sum(float(dice_loss(torch.sigmoid(x), mask)) for x in outputs["mask"][1:])
    assert float(parts["mask/dice"]) == pytest.approx(float(dice_loss(fused, mask)) + sides)


@pytest.mark.parametrize("scale", [2.0, 50.0])
def test_gradients_reach_every_output_without_nan(scale):
    outputs, (mask, depth) = make_outputs(scale=scale, requires_grad=True), make_targets()
    if scale == 50:  # extreme logits: +-50 exactly
        with torch.no_grad():
            for maps in outputs.values():
                for x in maps:
                    x.copy_(torch.sign(x) * 50)
    config = LossConfig(mask="bce+dice", depth="bce+l1+ssim+grad")
    total, parts = compute_loss(outputs, mask, depth, config)
    assert math.isfinite(float(total.detach()))
    assert all(math.isfinite(float(p)) for p in parts.values())
    total.backward()
    for maps in outputs.values():
        for x in maps:
            assert x.grad is not None and torch.isfinite(x.grad).all()
            assert x.grad.abs().sum() > 0


def test_autocast_bfloat16_is_computed_in_float32():
    outputs, (mask, depth) = make_outputs(), make_targets()
    low = {task: [x.bfloat16() for x in maps] for task, maps in outputs.items()}
    config = LossConfig(mask="bce+dice", depth="l1+ssim+grad")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, parts = compute_loss(low, mask, depth, config)
    reference = {task: [x.float() for x in maps] for task, maps in low.items()}
    expected, _ = compute_loss(reference, mask, depth, config)
    assert total.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in parts.values())
    assert float(total) == pytest.approx(float(expected), rel=1e-6)


@pytest.mark.gpu
def test_autocast_float16_on_cuda():
    outputs, (mask, depth) = make_outputs(scale=8.0), make_targets()
    config = LossConfig(mask="bce+dice", depth="bce+l1+ssim+grad")
    expected, _ = compute_loss(outputs, mask, depth, config)
    cuda = {k: [x.cuda().half().requires_grad_() for x in maps] for k, maps in outputs.items()}
    with torch.autocast("cuda", dtype=torch.float16):
        total, _ = compute_loss(cuda, mask.cuda(), depth.cuda(), config)
    assert total.dtype == torch.float32
    assert float(total) == pytest.approx(float(expected), rel=1e-2)
    total.backward()
    assert all(torch.isfinite(x.grad).all() for maps in cuda.values() for x in maps)


def test_terms_parse_and_unknown_options_are_rejected():
    assert parse_terms("bce + 0.5*dice", "mask") == {"bce": 1.0, "dice": 0.5}
    assert parse_terms({"l1": 2}, "depth") == {"l1": 2.0}
    config = LossConfig(mask="bce+dice", depth={"l1": 1.0, "ssim": 0.5})
    assert config.describe() == "mask=bce+dice depth=l1+0.5*ssim"
    assert LossConfig.from_dict(config.to_dict()) == config
    with pytest.raises(MaskDepthError, match="valid terms: bce, l1, ssim, grad"):
        LossConfig(depth="l2")
    with pytest.raises(MaskDepthError, match="valid terms: bce, dice"):
        LossConfig(mask="bce+ssim")
    with pytest.raises(MaskDepthError, match="weight"):
        LossConfig(depth="bce+-1*l1")
    with pytest.raises(MaskDepthError, match="side_weight"):
        LossConfig(side_weight=-1)
    with pytest.raises(MaskDepthError, match="valid options"):
        LossConfig.from_dict({"mask": "bce", "focal": 1})


def test_outputs_are_checked_against_the_targets():
    outputs, (mask, depth) = make_outputs(), make_targets()
    with pytest.raises(MaskDepthError, match="no 'depth'"):
        compute_loss({"mask": outputs["mask"]}, mask, depth)
    outputs["mask"][3] = outputs["mask"][3][..., :6]
    with pytest.raises(MaskDepthError, match=r"outputs\['mask'\]\[3\]"):
        compute_loss(outputs, mask, depth)
    # a lone fused map per task is accepted (one term each)
    single = {"mask": torch.zeros(SHAPE), "depth": torch.zeros(SHAPE)}
    total, _ = compute_loss(single, mask, depth)
    assert float(total) == pytest.approx(2 * math.log(2), rel=1e-6)


def test_smaller_outputs_are_scored_against_the_target_area_averaged_to_them():
    """A refined model's side maps are at the base size: the target shrinks to them."""
    target = torch.zeros(1, 1, 4, 4)
    target[0, 0, 0, 0] = 1  # a quarter of the top-left 2x2 block: 0.25 there at 2x2
    small = torch.zeros(1, 1, 2, 2)  # probability 0.5 everywhere
    full = (0.5 + 15 * 0.5) / 16  # |0.5 - t| on the 4x4 target
    shrunk = (0.25 + 3 * 0.5) / 4  # on the target area-averaged to 2x2 (nearest would be 0.5)
    # main_outputs: the first two maps (refined, upsampled base) count with weight 1
    two = LossConfig(mask="bce", depth="l1", side_weight=0.5, main_outputs=2)
    _, parts = compute_loss({"mask": [target * 0], "depth": [target * 0, target * 0, small]},
                            target, target, two)  # fmt: skip
    assert float(parts["depth/l1"]) == pytest.approx(2 * full + 0.5 * shrunk)
    assert "main_outputs" not in LossConfig().to_dict() and two.to_dict()["main_outputs"] == 2
    assert LossConfig.from_dict(two.to_dict()) == two
    for maps in ([torch.zeros(1, 1, 8, 8)], [target, small]):  # larger; smaller, not refined
        with pytest.raises(MaskDepthError, match="has shape"):
            compute_loss({"mask": [target], "depth": maps}, target, target)
    with pytest.raises(MaskDepthError, match="has shape"):  # the main maps: the target's size
        compute_loss({"mask": [target], "depth": [small, small, small]}, target, target, two)
