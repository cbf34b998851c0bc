"""Training losses: the seed's multi-BCE deep supervision, plus optional L1, SSIM, gradient and
Dice terms, all computed from logits in float32 (safe under autocast).

A task's loss is a weighted set of terms, written ``"bce"``, ``"bce+dice"`` or
``"l1+0.5*ssim"``. Every term is applied to every output of the task: the fused map with
weight 1 and each of the six side maps with ``side_weight`` (deep supervision). The default,
BCE on 7 outputs for both tasks and ``total = depth + mask``, is the seed's loss.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from maskdepth.runtime.errors import MaskDepthError

MASK_TERMS = ("bce", "dice", "iou")
DEPTH_TERMS = ("bce", "l1", "ssim", "grad")
TASKS = {"mask": MASK_TERMS, "depth": DEPTH_TERMS}
SSIM_C1, SSIM_C2 = 0.01**2, 0.03**2  # the usual constants for a data range of 1


def parse_terms(spec: str | Mapping[str, float], task: str) -> dict[str, float]:
    """``"l1+0.5*ssim"`` or ``{"l1": 1, "ssim": 0.5}`` -> ``{"l1": 1.0, "ssim": 0.5}``, checked."""
    valid = TASKS[task]
    if isinstance(spec, str):
        items: list[tuple[str, float]] = []
        for part in spec.replace(" ", "").split("+"):
            factor, _, name = part.rpartition("*")
            try:
                items.append((name, float(factor) if factor else 1.0))
            except ValueError:
                raise MaskDepthError(f"{task} loss {spec!r}: bad weight {factor!r}") from None
    else:
        items = [(str(name), float(weight)) for name, weight in spec.items()]
    terms: dict[str, float] = {}
    for name, weight in items:
        if name not in valid:
            raise MaskDepthError(
                f"{task} loss {spec!r}: unknown term {name!r}; valid terms: {', '.join(valid)}"
            )
        if name in terms or not (math.isfinite(weight) and weight >= 0):
            raise MaskDepthError(f"{task} loss {spec!r}: each term once, with a weight >= 0")
        terms[name] = weight
    if not terms:
        raise MaskDepthError(f"{task} loss is empty; valid terms: {', '.join(valid)}")
    return terms


def format_terms(terms: Mapping[str, float]) -> str:
    """The inverse of :func:`parse_terms`: ``{"l1": 1, "ssim": 0.5}`` -> ``"l1+0.5*ssim"``."""
    return "+".join(name if weight == 1 else f"{weight:g}*{name}" for name, weight in terms.items())


@dataclass(frozen=True)
class LossConfig:
    """Which loss terms each task uses and how the parts are weighted.

    ``mask`` and ``depth`` take a spec string or a mapping of term -> weight and are stored as
    a dict. Mask terms: bce, dice, iou. Depth terms: bce, l1, ssim, grad.
    ``total = mask_weight * mask + depth_weight * depth``; within a task each term counts once
    on each of the first ``main_outputs`` outputs (the fused one; a refined model's refined and
    bilinearly upsampled base maps: 2) and ``side_weight`` times on each side output.
    """

    mask: str | Mapping[str, float] = "bce"
    depth: str | Mapping[str, float] = "bce"
    mask_weight: float = 1.0
    depth_weight: float = 1.0
    side_weight: float = 1.0
    ssim_window: int = 7  # gaussian window (sigma 1.5) for the SSIM term; odd
    main_outputs: int = 1  # outputs with weight 1; in to_dict only when not 1 (as before)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mask", parse_terms(self.mask, "mask"))
        object.__setattr__(self, "depth", parse_terms(self.depth, "depth"))
        for name in ("mask_weight", "depth_weight", "side_weight"):
            value = float(getattr(self, name))
            if not (math.isfinite(value) and value >= 0):
                raise MaskDepthError(f"loss {name} must be a finite number >= 0, got {value}")
            object.__setattr__(self, name, value)
        if int(self.main_outputs) < 1:
            raise MaskDepthError(f"main_outputs must be >= 1, got {self.main_outputs}")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise MaskDepthError(f"ssim_window must be odd and >= 3, got {self.ssim_window}")

    def terms(self, task: str) -> Mapping[str, float]:
        """The parsed terms of ``task`` ("mask" or "depth"), as ``__post_init__`` stored them."""
        spec = self.mask if task == "mask" else self.depth
        if isinstance(spec, str):  # never: __post_init__ replaced the spec with its terms
            return parse_terms(spec, task)
        return spec

    def describe(self) -> str:
        """One line for logs, e.g. ``mask=bce+dice depth=l1+ssim``."""
        return f"mask={format_terms(self.terms('mask'))} depth={format_terms(self.terms('depth'))}"

    def to_dict(self) -> dict:
        """Plain types only, for checkpoints loaded with ``weights_only=True``."""
        values = {f.name: getattr(self, f.name) for f in fields(self)} | {
            "mask": dict(self.terms("mask")),
            "depth": dict(self.terms("depth")),
        }
        if self.main_outputs == 1:
            del values["main_outputs"]
        return values

    @classmethod
    def from_dict(cls, data: Mapping) -> LossConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise MaskDepthError(
                f"unknown loss options {unknown}; valid options: {', '.join(sorted(known))}"
            )
        return cls(**data)


def gaussian_window(size: int, sigma: float = 1.5) -> torch.Tensor:
    """A normalised (1, 1, size, size) float32 gaussian kernel."""
    offsets = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    line = torch.exp(-(offsets**2) / (2 * sigma**2))
    line = line / line.sum()
    return (line[:, None] * line[None, :])[None, None]


def ssim(x: torch.Tensor, y: torch.Tensor, window: int = 7, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two (B, C, H, W) maps in [0, 1], gaussian window, no padding (1 = identical)."""
    height, width = x.shape[-2:]
    if min(height, width) < window:
        raise MaskDepthError(
            f"SSIM window {window} does not fit {height}x{width} maps; use a smaller ssim_window"
        )
    # One grouped convolution blurs the five maps the statistics need (5x faster than five).
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    kernel = gaussian_window(window, sigma).to(x.device, x.dtype)
    blurred = F.conv2d(maps, kernel.expand(maps.shape[1], 1, -1, -1), groups=maps.shape[1])
    mu_x, mu_y, xx, yy, xy = blurred.chunk(5, dim=1)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    numerator = (2 * mu_x * mu_y + SSIM_C1) * (2 * cov + SSIM_C2)
    denominator = (mu_x * mu_x + mu_y * mu_y + SSIM_C1) * (var_x + var_y + SSIM_C2)
    return (numerator / denominator).mean()


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean |d pred - d target| over x then y forward differences, summed over the two."""
    dx = (pred.diff(dim=-1) - target.diff(dim=-1)).abs().mean()
    dy = (pred.diff(dim=-2) - target.diff(dim=-2)).abs().mean()
    return dx + dy


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Dice loss per image, averaged: 1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s).

    The smoothing ``s`` makes an empty prediction of an empty mask cost 0, not 0/0.
    """
    prob, target = prob.flatten(1), target.flatten(1)
    overlap = 2 * (prob * target).sum(1) + smooth
    return (1 - overlap / (prob.sum(1) + target.sum(1) + smooth)).mean()


def soft_iou_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """Soft Jaccard loss per image, averaged: 1 - (sum(p t) + s) / (sum(p + t - p t) + s), the
    differentiable form of the IoU the mask is scored by."""
    prob, target = prob.flatten(1), target.flatten(1)
    overlap = (prob * target).sum(1)
    union = prob.sum(1) + target.sum(1) - overlap
    return (1 - (overlap + smooth) / (union + smooth)).mean()


def _term(name: str, logits, prob, target, config: LossConfig) -> torch.Tensor:
    if name == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if name == "l1":
        return (prob - target).abs().mean()
    if name == "ssim":
        return (1 - ssim(prob, target, config.ssim_window)) / 2
    if name == "grad":
        return gradient_loss(prob, target)
    if name == "iou":
        return soft_iou_loss(prob, target)
    return dice_loss(prob, target)  # "dice"; names were checked by parse_terms


def _task_outputs(
    outputs: Mapping, task: str, target: torch.Tensor, config: LossConfig
) -> Sequence[torch.Tensor]:
    """The task's maps, checked: each the target's shape, except that a refined model's side
    maps (``main_outputs`` > 1) may be smaller (they are at the base size)."""
    if task not in outputs:
        raise MaskDepthError(f"model outputs have no {task!r} entry (keys: {sorted(outputs)})")
    maps = outputs[task]
    maps = [maps] if isinstance(maps, torch.Tensor) else list(maps)
    if not maps:
        raise MaskDepthError(f"model outputs[{task!r}] is empty")
    for index, logits in enumerate(maps):
        side = config.main_outputs > 1 and index >= config.main_outputs
        smaller = all(a <= b for a, b in zip(logits.shape[-2:], target.shape[-2:]))
        fits = logits.shape[:-2] == target.shape[:-2] and logits.dim() == target.dim() and smaller
        if logits.shape != target.shape and not (side and fits):
            raise MaskDepthError(
                f"outputs[{task!r}][{index}] has shape {tuple(logits.shape)}, "
                f"the {task} target {tuple(target.shape)}"
            )
    return maps


def target_at(target: torch.Tensor, size: Sequence[int], cache: dict) -> torch.Tensor:
    """``target`` area-averaged to (height, width) ``size`` (a refined model's base-size side
    maps are scored against the full-resolution target shrunk to them), once per size."""
    key = tuple(int(v) for v in size)
    if key == tuple(target.shape[-2:]):
        return target
    if key not in cache:
        cache[key] = F.interpolate(target, size=key, mode="area")
    return cache[key]


def _task_loss(
    maps: Sequence[torch.Tensor],
    target: torch.Tensor,
    terms: Mapping[str, float],
    config: LossConfig,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of the terms over fused (weight 1) and side outputs (``side_weight``).

    ``maps`` is not empty (the fused output always counts) and neither is ``terms``.
    """
    full = target.float()
    needs_prob = any(name != "bce" for name in terms)
    per_term: dict[str, torch.Tensor] = {}
    resized: dict = {}
    for index, logits in enumerate(maps):
        weight = 1.0 if index < config.main_outputs else config.side_weight
        if weight == 0:
            continue
        logits = logits.float()
        prob = torch.sigmoid(logits) if needs_prob else None
        target = target_at(full, logits.shape[-2:], resized)
        for name in terms:
            value = weight * _term(name, logits, prob, target, config)
            per_term[name] = per_term[name] + value if name in per_term else value
    weighted = [weight * per_term[name] for name, weight in terms.items()]
    total = weighted[0]
    for value in weighted[1:]:
        total = total + value
    return total, per_term


def compute_loss(
    outputs: Mapping[str, Sequence[torch.Tensor]],
    mask: torch.Tensor,
    depth: torch.Tensor,
    config: LossConfig | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Total loss and its named parts from the model's training outputs.

    ``outputs`` is ``{"mask": [fused, side1, ...], "depth": [...]}`` of (B, 1, H, W) logits
    (a refined model's side maps, smaller than the targets, are scored against them
    area-averaged to their size);
    ``mask`` and ``depth`` are (B, 1, H, W) targets in [0, 1]. Returns the float32 total (with
    gradient) and detached parts: ``mask``, ``depth`` (each task's loss before its task weight)
    and ``mask/bce``, ``depth/l1``, ... (each term summed over outputs, before its term weight).
    """
    config = config or LossConfig()
    device_type = mask.device.type
    with torch.autocast(device_type=device_type, enabled=False):
        parts: dict[str, torch.Tensor] = {}
        task_totals: dict[str, torch.Tensor] = {}
        for task, target in (("mask", mask), ("depth", depth)):
            maps = _task_outputs(outputs, task, target, config)
            task_total, per_term = _task_loss(maps, target, config.terms(task), config)
            task_totals[task] = task_total
            parts[task] = task_total.detach()
            parts.update({f"{task}/{name}": value.detach() for name, value in per_term.items()})
        total = (
            config.mask_weight * task_totals["mask"] + config.depth_weight * task_totals["depth"]
        )
    return total, parts
