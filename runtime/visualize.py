"""Pictures people look at: depth colour maps, mask overlays and labelled grids."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .image import as_rgb, from_unit


def depth_colormap(depth: np.ndarray) -> np.ndarray:
    """RGB picture of a [0,1] depth map (0 nearest): near is warm (red), far is cool (blue)."""
    gray = from_unit(1.0 - np.asarray(depth, np.float32))
    return cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)


def mask_picture(mask: np.ndarray) -> np.ndarray:
    """RGB grey-level picture of a [0,1] mask (white = object)."""
    return cv2.cvtColor(from_unit(np.asarray(mask, np.float32)), cv2.COLOR_GRAY2RGB)


def mask_overlay(
    scene: np.ndarray, mask: np.ndarray, color=(255, 40, 40), alpha: float = 0.5
) -> np.ndarray:
    """The scene with the mask tinted in ``color`` and its outline drawn."""
    scene = as_rgb(scene, "scene")
    weight = np.clip(np.asarray(mask, np.float32), 0, 1)[:, :, None] * alpha
    tinted = scene * (1 - weight) + np.asarray(color, np.float32) * weight
    out = np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    edges = (mask >= 0.5).astype(np.uint8)
    contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, color, 1)
    return out


def _label(text: str, width: int, height: int = 22) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = (max(2, (width - tw) // 2), (height + th) // 2)
    cv2.putText(strip, text, org, font, scale, (20, 20, 20), thick, cv2.LINE_AA)
    return strip


def grid(
    rows: Sequence[Sequence[np.ndarray]], labels: Sequence[str], cell: int = 160
) -> np.ndarray:
    """Tile RGB pictures into a grid with a label over each column and thin white gutters.

    Each picture is scaled to ``cell`` pixels high keeping its aspect ratio.
    """
    gap = 4
    tiles = []
    for row in rows:
        scaled = []
        for image in row:
            h, w = image.shape[:2]
            scaled.append(cv2.resize(as_rgb(image), (max(1, round(w * cell / h)), cell)))
        tiles.append(scaled)
    widths = [max(row[c].shape[1] for row in tiles) for c in range(len(labels))]
    header = [_label(text, w) for text, w in zip(labels, widths)]
    lines = [header] + [[_pad(t, w, cell) for t, w in zip(row, widths)] for row in tiles]
    white_col = lambda h: np.full((h, gap, 3), 255, np.uint8)  # noqa: E731
    joined = []
    for line in lines:
        parts = []
        for tile in line:
            parts += [tile, white_col(tile.shape[0])]
        joined.append(np.concatenate(parts[:-1], axis=1))
        joined.append(np.full((gap, joined[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(joined[:-1], axis=0)


def _pad(tile: np.ndarray, width: int, height: int) -> np.ndarray:
    out = np.full((height, width, 3), 255, np.uint8)
    out[: tile.shape[0], : tile.shape[1]] = tile
    return out
