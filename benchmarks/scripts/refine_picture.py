"""The README's picture of the refiner: one held-out frame at full resolution, its mask from the
base upsampled bilinearly and from the refiner, whole and zoomed on an object's edge.

    python -m maskdepth.benchmarks.scripts.refine_picture BILINEAR.pt REFINED.pt --out FILE.png

Both checkpoints are refined models (``refine_quality --out DIR`` keeps them: DIR/bilinear is
today's base inside a refined wrapper, scored through its bilinear output; DIR/staged or
DIR/refined the refiner); the frame is from the refined run's own validation split.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from maskdepth.runtime.image import write_image
from maskdepth.runtime.preprocess import prepare_pair
from maskdepth.runtime.visualize import grid, mask_overlay, mask_picture
from maskdepth.train.checkpoint import load_checkpoint, model_from_checkpoint
from maskdepth.train.datasets import data_from_checkpoint

BILINEAR, REFINED = 1, 0  # a refined model's outputs: index 0 refined, 1 bilinear upsampling
ZOOM = 4  # the zoomed window is a quarter of the frame's height
CELL = 240  # pixels high per picture


def probabilities(checkpoint: Path, bg: np.ndarray, scene: np.ndarray, output: int) -> np.ndarray:
    """The mask (H, W) a refined checkpoint gives at the frame's resolution: ``output`` 0 its
    refiner's, 1 its base's upsampled bilinearly."""
    model, pre = model_from_checkpoint(load_checkpoint(checkpoint))
    pre = type(pre)(size=scene.shape[:2], mean=pre.mean, std=pre.std)
    x = torch.from_numpy(prepare_pair(bg, scene, pre))[None]
    with torch.no_grad():
        logits = model(x)["mask"][output]
    return torch.sigmoid(logits)[0, 0].numpy()


def pick_frame(checkpoint: Path, count: int = 40):
    """The validation scene whose object has the longest outline (thin parts, corners)."""
    source, _, val = data_from_checkpoint(load_checkpoint(checkpoint))
    best, best_len = None, -1.0
    for index in val[:count]:
        sample = source[int(index)]
        target = sample.mask > 0.5
        edge = float(np.count_nonzero(target ^ np.roll(target, 1, 0)))
        if 0.02 < target.mean() < 0.4 and edge > best_len:
            best, best_len = sample, edge
    if best is None:
        raise SystemExit(f"{checkpoint}: no validation scene with an object of a useful size")
    return best


def zoom_window(target: np.ndarray) -> tuple[slice, slice]:
    """A window a ``ZOOM``-th of the frame high, centred on the object's outline."""
    height, width = target.shape
    side = max(8, height // ZOOM)
    edge = np.argwhere(target ^ np.roll(target, 1, 1))
    y, x = edge[len(edge) // 2] if len(edge) else (height // 2, width // 2)
    top = int(np.clip(y - side // 2, 0, height - side))
    left = int(np.clip(x - side // 2, 0, width - side))
    return slice(top, top + side), slice(left, left + side)


def picture(bilinear: Path, refined: Path) -> np.ndarray:
    sample = pick_frame(refined)
    masks = {
        "bilinear": probabilities(bilinear, sample.bg, sample.scene, BILINEAR),
        "refined": probabilities(refined, sample.bg, sample.scene, REFINED),
    }
    window = zoom_window(sample.mask > 0.5)
    whole = [sample.scene, mask_picture(sample.mask)]
    whole += [mask_overlay(sample.scene, m > 0.5) for m in masks.values()]
    zoomed = [tile[window] for tile in whole[:2]]
    zoomed += [mask_picture(m[window]) for m in masks.values()]
    zoomed = [pixels(tile, CELL) for tile in zoomed]  # the zoom shows pixels, not a blur
    labels = ["scene", "true mask", "base + bilinear", "base + refiner"]
    return grid([whole, zoomed], labels, cell=CELL)


def pixels(tile: np.ndarray, height: int) -> np.ndarray:
    """``tile`` scaled to ``height`` rows by repeating pixels."""
    scale = max(1, height // tile.shape[0])
    return cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bilinear", type=Path)
    parser.add_argument("refined", type=Path)
    parser.add_argument("--out", type=Path, default=Path("docs/refine_edges.png"))
    args = parser.parse_args(argv)
    write_image(args.out, picture(args.bilinear, args.refined))
    print(f"wrote {args.out}")
    return args.out


if __name__ == "__main__":
    main()
