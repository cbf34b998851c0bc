"""The U2-Net family for mask + depth, in one file (timm's order): blocks, model, builders.

``u2netp-md`` is the seed's network: a shared U2-Net-small encoder over ``cat([bg, scene])`` and
two full decoders (mask, depth), each with six side outputs fused by a 1x1 convolution.
Variants differ only by the stage table and the number of decoders.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .configs import TASKS
from .registry import register_model


@dataclass(frozen=True)
class Stage:
    """One RSU block: ``height`` levels (RSU-7 .. RSU-4), or dilated instead of pooled (RSU-4F)."""

    height: int
    mid: int
    out: int
    dilated: bool = False


def _upsample_like(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    if torch.jit.is_tracing():
        # Exported: a constant scale instead of the size read from ``like``, which the graph
        # would compute with a Shape -> Slice -> Concat chain per Resize (README, Export: the
        # node counts with and without them).
        # Exact: exported sides are multiples of the stride, so every ratio is a power of 2,
        # and bilinear sampling at a given scale is what it is at the size it gives.
        scale = [float(like.shape[i]) / float(x.shape[i]) for i in (-2, -1)]
        return F.interpolate(
            x,
            scale_factor=scale,
            mode="bilinear",
            align_corners=False,
            recompute_scale_factor=False,
        )
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class ConvNormAct(nn.Sequential):
    """3x3 convolution (padding = dilation) -> norm -> ReLU: the seed's REBNCONV."""

    def __init__(self, cin: int, cout: int, dilation: int = 1, norm_layer=nn.BatchNorm2d) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation),
            norm_layer(cout),
            nn.ReLU(inplace=True),
        )


class RSU(nn.Module):
    """Residual U-block: a small U-Net inside a stage, added to its input projection."""

    def __init__(self, cin: int, stage: Stage, norm_layer=nn.BatchNorm2d) -> None:
        super().__init__()
        mid, out = stage.mid, stage.out
        if stage.dilated:  # RSU-4F: no pooling, growing dilation instead
            dilations, bottom = [1, 2, 4], 8
        else:
            dilations, bottom = [1] * (stage.height - 1), 2
        self.pooled = not stage.dilated
        self.project = ConvNormAct(cin, out, norm_layer=norm_layer)
        self.encoder = nn.ModuleList(
            ConvNormAct(out if i == 0 else mid, mid, d, norm_layer) for i, d in enumerate(dilations)
        )
        self.bottom = ConvNormAct(mid, mid, bottom, norm_layer)
        self.decoder = nn.ModuleList(
            ConvNormAct(2 * mid, out if i == 0 else mid, d, norm_layer)
            for i, d in reversed(list(enumerate(dilations)))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = x = self.project(x)
        skips = []
        for i, conv in enumerate(self.encoder):
            x = conv(x)
            skips.append(x)
            if self.pooled and i < len(self.encoder) - 1:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
        x = self.bottom(x)
        for conv, skip in zip(self.decoder, reversed(skips)):
            x = conv(torch.cat([_upsample_like(x, skip), skip], dim=1))
        return x + projected


class Encoder(nn.Module):
    """RSU stages with a max-pool between them; returns every stage's output (deepest last)."""

    def __init__(self, in_chans: int, stages: tuple[Stage, ...], norm_layer=nn.BatchNorm2d):
        super().__init__()
        widths = [in_chans] + [s.out for s in stages[:-1]]
        self.stages = nn.ModuleList(RSU(w, s, norm_layer) for w, s in zip(widths, stages))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for i, stage in enumerate(self.stages):
            if i:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)
            x = stage(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """RSU stages from deep to shallow on cat(upsampled deeper, encoder skip), six side outputs
    (five of its stages, plus the shared deepest encoder stage) and a 1x1 fusion."""

    def __init__(
        self,
        encoder: tuple[Stage, ...],
        stages: tuple[Stage, ...],
        out_chans: int,
        norm_layer=nn.BatchNorm2d,
    ):
        super().__init__()
        deeper = [encoder[-1].out] + [s.out for s in stages[:-1]]
        skips = [s.out for s in reversed(encoder[:-1])]
        self.stages = nn.ModuleList(
            RSU(d + s, stage, norm_layer) for d, s, stage in zip(deeper, skips, stages)
        )
        side_widths = [s.out for s in reversed(stages)] + [encoder[-1].out]  # shallow first
        self.sides = nn.ModuleList(nn.Conv2d(w, out_chans, 3, padding=1) for w in side_widths)
        self.fuse = nn.Conv2d(len(side_widths) * out_chans, out_chans, 1)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Logits at the input size: [fused, side 1 (finest), ..., side 6 (deepest)]."""
        x, decoded = features[-1], []
        for stage, skip in zip(self.stages, reversed(features[:-1])):
            x = stage(torch.cat([_upsample_like(x, skip), skip], dim=1))
            decoded.append(x)
        finest = decoded[-1]
        maps = list(reversed(decoded)) + [features[-1]]
        sides = [_upsample_like(side(m), finest) for side, m in zip(self.sides, maps)]
        return [self.fuse(torch.cat(sides, dim=1))] + sides


class U2NetMD(nn.Module):
    """Shared encoder over the 6-channel (bg, scene) input; per task a decoder (``decoders=2``)
    or one decoder whose two output channels are the tasks (``decoders=1``)."""

    # Set when built through the registry: its name and options (create_model), the stage table
    # (_create_u2net).
    name: str
    options: dict[str, Any]
    arch: dict[str, Any]

    def __init__(
        self,
        encoder: tuple[Stage, ...],
        decoder: tuple[Stage, ...],
        decoders: int = 2,
        in_chans: int = 6,
        norm_layer=nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if decoders not in (1, 2):
            raise ValueError(f"decoders must be 1 or 2, got {decoders}")
        self.encoder = Encoder(in_chans, encoder, norm_layer)
        out = 1 if decoders == 2 else len(TASKS)
        self.decoders = nn.ModuleList(
            Decoder(encoder, decoder, out, norm_layer) for _ in range(decoders)
        )

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.encoder(x)

    def forward_heads(self, features: list[torch.Tensor]) -> dict[str, list[torch.Tensor]]:
        if len(self.decoders) == 2:
            return {task: head(features) for task, head in zip(TASKS, self.decoders)}
        maps = self.decoders[0](features)
        return {task: [m[:, i : i + 1] for m in maps] for i, task in enumerate(TASKS)}

    def forward(self, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """Training form: per task, 7 logit maps (fused first, then the six sides)."""
        return self.forward_heads(self.forward_features(x))

    @torch.no_grad()
    def init_prior(self, kind: str) -> None:
        """Start the first convolution from a prior (same architecture, same parameters).

        ``"difference"``: its first six filters become scene minus bg per colour, both signs
        (after the ReLU: where the scene got brighter, where darker), so the network compares
        the two photos from its first step instead of having to discover that it should.
        """
        if kind != "difference":
            raise ValueError(f"unknown prior {kind!r}; expected 'difference'")
        first = self.encoder.stages[0]
        assert isinstance(first, RSU)
        conv = first.project[0]
        assert isinstance(conv, nn.Conv2d)
        colours = conv.in_channels // 2
        if conv.in_channels != 2 * colours or conv.out_channels < 2 * colours:
            raise ValueError(f"a difference prior needs bg + scene inputs, got {conv.in_channels}")
        centre = conv.kernel_size[0] // 2, conv.kernel_size[1] // 2
        for colour in range(colours):
            for sign_index, sign in enumerate((1.0, -1.0)):
                filt = conv.weight[2 * colour + sign_index]
                filt.zero_()
                filt[colours + colour, centre[0], centre[1]] = sign
                filt[colour, centre[0], centre[1]] = -sign
                if conv.bias is not None:
                    conv.bias[2 * colour + sign_index] = 0.0


class InferenceModel(nn.Module):
    """The exported form: normalised ``bg`` and ``scene`` in, the fused ``mask`` and ``depth``
    probabilities out (each (B, 1, H, W)).

    A refined model (one with a ``refiner``) takes ``bg`` and ``scene`` at full resolution,
    shrinks them to its base size inside (constant sizes: ``base_size`` or the model's
    ``base_size`` attribute) and gives the refined probabilities at full resolution."""

    def __init__(self, model: nn.Module, base_size: tuple[int, int] | None = None) -> None:
        """``model``: a registered model (a U2NetMD or a RefinedModel), called on
        ``cat([bg, scene])``; its ``"mask"`` and ``"depth"`` outputs start with the fused (for
        a refined model: refined) logits."""
        super().__init__()
        self.model = model
        self.base_size: tuple[int, int] | None = None
        if getattr(model, "refiner", None) is not None:
            size = base_size or getattr(model, "base_size", None)
            if size is None:
                raise ValueError("a refined model's exported form needs its base_size")
            self.base_size = (int(size[0]), int(size[1]))

    def forward(self, bg: torch.Tensor, scene: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([bg, scene], dim=1)
        outputs = self.model(x) if self.base_size is None else self.model(x, self.base_size)
        return torch.sigmoid(outputs["mask"][0]), torch.sigmoid(outputs["depth"][0])


SMALL = dict(
    encoder=(
        Stage(7, 16, 64),
        Stage(6, 16, 64),
        Stage(5, 16, 64),
        Stage(4, 16, 64),
        Stage(4, 16, 64, dilated=True),
        Stage(4, 16, 64, dilated=True),
    ),
    decoder=(
        Stage(4, 16, 64, dilated=True),
        Stage(4, 16, 64),
        Stage(5, 16, 64),
        Stage(6, 16, 64),
        Stage(7, 16, 64),
    ),
)
FULL = dict(
    encoder=(
        Stage(7, 32, 64),
        Stage(6, 32, 128),
        Stage(5, 64, 256),
        Stage(4, 128, 512),
        Stage(4, 256, 512, dilated=True),
        Stage(4, 256, 512, dilated=True),
    ),
    decoder=(
        Stage(4, 256, 512, dilated=True),
        Stage(4, 128, 256),
        Stage(5, 64, 128),
        Stage(6, 32, 64),
        Stage(7, 16, 64),
    ),
)


def _create_u2net(name: str, **args) -> U2NetMD:
    model = U2NetMD(**args)
    model.name = name
    model.arch = {k: [asdict(s) for s in v] if k in ("encoder", "decoder") else v
                  for k, v in args.items() if k != "norm_layer"}  # fmt: skip
    return model


# Builders (their default configs: configs.CONFIGS). Options are plain values, recorded in the
# checkpoint by create_model; ``decoders``: 2 (one per task) or 1 (two output channels).


@register_model("u2netp-md")
def u2netp_md(decoders: int = 2) -> U2NetMD:
    """The seed's network: U2-Net-small encoder, two full decoders, 1,769,306 parameters."""
    return _create_u2net("u2netp-md", **dict(SMALL, decoders=decoders))


@register_model("u2net-md")
def u2net_md(decoders: int = 2) -> U2NetMD:
    """Full-width U2-Net stages, two decoders: the large variant."""
    return _create_u2net("u2net-md", **dict(FULL, decoders=decoders))


@register_model("u2netp-lite")
def u2netp_lite(decoders: int = 1) -> U2NetMD:
    """One U2-Net-small decoder with two output channels: ~1.14 M parameters."""
    return _create_u2net("u2netp-lite", **dict(SMALL, decoders=decoders))
