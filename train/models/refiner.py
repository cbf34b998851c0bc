"""Refined models: the U2-Net at a small base size, a learned refiner at full resolution.

:class:`RefinedModel` takes the FULL-resolution normalised pair (B, 6, H, W), shrinks it to the
base size itself (:func:`downscale`), runs the U2-Net there and hands its fused mask and depth
logits to a refiner that produces them at full resolution, guided by the full-resolution bg,
scene and their difference (the sharpest cue there is at full resolution).

Refiners (``REFINERS``, by kind):

- ``"guided"``: the Fast/Deep Guided Filter (Wu et al., CVPR 2018), as Robust Video Matting's
  DeepGuidedFilterRefiner. A learned guide (1x1 convolutions of bg, scene, |scene - bg|) is
  computed at both resolutions; at the base size box filters give the local statistics of
  guide and logits and 1x1 convolutions turn them into a per-pixel linear model (A, b); A and b
  are upsampled bilinearly and applied to the full-resolution guide: ``A * guide + b``. At full
  resolution it costs a few 1x1 convolutions and one resize: cheap at any size.
- ``"conv"``: a small full-resolution convolution head on [upsampled logits, bg, scene,
  |scene - bg|] that adds a correction to the upsampled logits (two 3x3 and one 1x1
  convolution).

Both start close to ``--no-refine`` (their last layer is zero): the conv head exactly at the
bilinear upsampling of the base's logits, the guided filter at the upsampled box-filtered
logits (A = 0, b = their local mean), so a refiner trained from a base checkpoint starts near
where the base is.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configs import TASKS

POOL = 4  # downscale: bilinear to POOL x the base size, then POOL x POOL averaging
COLOURS = 3


def downscale(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``x`` (B, C, H, W) at ``size`` (height, width): bilinear to ``POOL`` times ``size``, then
    ``POOL`` x ``POOL`` averaging (exactly area averaging when H, W are ``POOL`` x ``size``).

    Exportable everywhere: the Resize has CONSTANT output sizes (TensorRT refuses
    data-dependent scales) and the averaging is a fixed AveragePool; bilinear alone would
    alias (sample 4 of every 16 pixels at a 4x shrink), antialiased Resize is opset 18 only and
    not in every runtime.
    """
    height, width = (int(v) for v in size)
    # No shortcut at x's own size: the exported graph cannot take one, and eager must equal it.
    x = F.interpolate(x, size=(POOL * height, POOL * width), mode="bilinear", align_corners=False)
    return F.avg_pool2d(x, POOL)


def upscale(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``x`` bilinearly at ``like``'s height and width: in an exported graph these sizes come
    from ``like``'s shape (the full resolution is dynamic), never a constant scale."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def guide_inputs(x: torch.Tensor) -> torch.Tensor:
    """[bg, scene, |scene - bg|] (B, 9, H, W) of the normalised 6-channel pair."""
    bg, scene = x[:, :COLOURS], x[:, COLOURS : 2 * COLOURS]
    return torch.cat([bg, scene, (scene - bg).abs()], dim=1)


def _box(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over a (2r+1)^2 window, counting only pixels inside the image (the guided
    filter's N normalisation)."""
    return F.avg_pool2d(x, 2 * radius + 1, 1, radius, count_include_pad=False)


class GuidedRefiner(nn.Module):
    """Deep Guided Filter refiner (see the module docstring); ``guides`` learned guide
    channels, ``hidden`` channels in the guide and coefficient networks, box ``radius`` at
    the base size."""

    def __init__(
        self, outputs: int = len(TASKS), guides: int = 4, hidden: int = 16, radius: int = 1
    ) -> None:
        super().__init__()
        self.outputs, self.guides, self.radius = outputs, guides, radius
        # No normalisation in the guide: it runs at two resolutions and must mean the same.
        self.guide = nn.Sequential(
            nn.Conv2d(3 * COLOURS, hidden, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, guides, 1),
        )
        pairs = outputs * guides
        self.coefficients = nn.Sequential(
            nn.Conv2d(pairs + guides + outputs, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, pairs, 1),
        )
        last = self.coefficients[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)  # A = 0 to start: b = the box-filtered base logits
        nn.init.zeros_(last.bias)

    def forward(
        self, full: torch.Tensor, small: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        """``full`` (B, 6, H, W) and ``small`` (B, 6, h, w) normalised pairs, ``logits``
        (B, outputs, h, w) of the base -> refined logits (B, outputs, H, W)."""
        guide = self.guide(guide_inputs(small))
        mean_x, mean_y = _box(guide, self.radius), _box(logits, self.radius)
        var_x = _box(guide * guide, self.radius) - mean_x * mean_x
        cov = [
            _box(guide * logits[:, k : k + 1], self.radius) - mean_x * mean_y[:, k : k + 1]
            for k in range(self.outputs)
        ]
        a = self.coefficients(torch.cat([*cov, var_x, mean_y], dim=1))
        g = self.guides
        b = [mean_y[:, k : k + 1] - (a[:, k * g : (k + 1) * g] * mean_x).sum(1, keepdim=True)
             for k in range(self.outputs)]  # fmt: skip
        up = upscale(torch.cat([a, *b], dim=1), full)
        fine = self.guide(guide_inputs(full))
        n = self.outputs * g  # up = [A (outputs x guides channels), b (outputs)]
        refined = [
            (up[:, k * g : (k + 1) * g] * fine).sum(1, keepdim=True) + up[:, n + k : n + k + 1]
            for k in range(self.outputs)
        ]
        return torch.cat(refined, dim=1)


class ConvRefiner(nn.Module):
    """Small full-resolution convolution head: upsampled logits plus a correction from
    [upsampled logits, bg, scene, |scene - bg|] (3x3 -> 3x3 -> 1x1, ``hidden`` channels)."""

    def __init__(self, outputs: int = len(TASKS), hidden: int = 8) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv2d(outputs + 3 * COLOURS, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, outputs, 1),
        )
        last = self.head[-1]
        assert isinstance(last, nn.Conv2d) and last.bias is not None
        nn.init.zeros_(last.weight)  # no correction to start: the bilinear upsampling
        nn.init.zeros_(last.bias)

    def forward(
        self, full: torch.Tensor, small: torch.Tensor, logits: torch.Tensor
    ) -> torch.Tensor:
        up = upscale(logits, full)
        return up + self.head(torch.cat([up, guide_inputs(full)], dim=1))


REFINERS: dict[str, type[nn.Module]] = {"guided": GuidedRefiner, "conv": ConvRefiner}


class RefinedModel(nn.Module):
    """A U2-Net (``base``) run at a base size and a refiner (``refiner``) at full resolution.

    ``base_size``: the (height, width) the base runs at when ``forward`` is not given one (set
    from the model config when a checkpoint is loaded; the exported form needs it).
    """

    name: str
    options: dict[str, Any]

    def __init__(self, base: nn.Module, kind: str) -> None:
        super().__init__()
        if kind not in REFINERS:
            raise ValueError(f"unknown refiner {kind!r}; expected one of {', '.join(REFINERS)}")
        self.kind = kind
        self.base = base
        self.refiner = REFINERS[kind]()
        self.base_size: tuple[int, int] | None = None

    def init_prior(self, kind: str) -> None:
        """The base's first-convolution prior (see U2NetMD.init_prior)."""
        self.base.init_prior(kind)  # type: ignore[operator]

    def forward(
        self, x: torch.Tensor, base_size: tuple[int, int] | None = None
    ) -> dict[str, list[torch.Tensor]]:
        """Per task: [refined logits at full resolution, the base's fused logits bilinearly
        upsampled to full resolution, the base's six side logits at the base size]."""
        size = base_size or self.base_size
        if size is None:
            raise ValueError("a refined model needs base_size (forward's or the attribute)")
        small = downscale(x, size)
        base = self.base(small)
        logits = torch.cat([base[task][0] for task in TASKS], dim=1)
        refined = self.refiner(x, small, logits)
        upsampled = upscale(logits, x)
        return {
            task: [refined[:, i : i + 1], upsampled[:, i : i + 1], *base[task][1:]]
            for i, task in enumerate(TASKS)
        }
