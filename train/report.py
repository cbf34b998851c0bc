"""What a run leaves for people: ``metrics.csv`` (one row per epoch), ``samples.png`` (the
model on fixed validation scenes) and ``curves.png`` (loss, IoU and RMSE per epoch)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import require
from maskdepth.runtime.image import write_bytes_atomic, write_image
from maskdepth.runtime.preprocess import resize_image, resize_map
from maskdepth.runtime.visualize import depth_colormap, grid, mask_picture

from .data.sample import Sample

FIRST_COLUMNS = ("epoch", "step", "epoch_fraction", "lr")
LAST_COLUMNS = ("seconds", "elapsed", "images_per_s", "data_wait")  # elapsed: since the run began
SAMPLE_LABELS = ("bg", "scene", "mask true", "mask predicted", "depth true", "depth predicted")


class MetricsLog:
    """The rows of ``metrics.csv``; the whole file is rewritten (atomically) on each add.

    On ``--resume`` the rows logged after the checkpoint's step are dropped: they are done
    again.
    """

    def __init__(self, path: Path, keep_steps: int = 0) -> None:
        self.path = Path(path)
        self.rows: list[dict] = []
        if keep_steps and self.path.is_file():
            with self.path.open(newline="") as file:
                rows = list(csv.DictReader(file))
            self.rows = [_numbers(r) for r in rows if float(r["step"]) <= keep_steps]

    def add(self, row: dict) -> None:
        self.rows.append(row)
        self.write()

    def columns(self) -> list[str]:
        seen = dict.fromkeys(FIRST_COLUMNS)
        for row in self.rows:
            seen.update(dict.fromkeys(k for k in row if k not in LAST_COLUMNS))
        return list(seen) + list(LAST_COLUMNS)

    def write(self) -> None:
        text = io.StringIO()
        writer = csv.DictWriter(text, self.columns(), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        write_bytes_atomic(self.path, text.getvalue().encode())


def _numbers(row: dict) -> dict:
    """A row read back from metrics.csv with its numbers as written (1 stays 1, not 1.0)."""
    out: dict = {}
    for key, value in row.items():
        for kind in (int, float):
            try:
                out[key] = kind(value)
                break
            except ValueError:
                out[key] = value
    return out


def sample_row(sample: Sample, mask_prob: np.ndarray, depth_prob: np.ndarray) -> list[np.ndarray]:
    """One samples.png row at the prediction's size: bg | scene | mask true | mask predicted |
    depth true | depth predicted."""
    size = mask_prob.shape[:2]
    return [
        resize_image(sample.bg, size),
        resize_image(sample.scene, size),
        mask_picture(resize_map(sample.mask, size)),
        mask_picture(mask_prob),
        depth_colormap(resize_map(sample.depth, size)),
        depth_colormap(depth_prob),
    ]


def write_samples(path: Path, rows: Sequence[list[np.ndarray]]) -> None:
    """The grid of :func:`sample_row` rows, each picture at least 128 pixels high."""
    cell = max(128, rows[0][0].shape[0])
    write_image(path, grid(rows, SAMPLE_LABELS, cell=cell))


def _series(rows: Sequence[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs done, values): a run stopped part way through an epoch plots at the fraction."""
    kept = [r for r in rows if r.get(key, "") != ""]
    xs = [float(r["epoch"]) - 1 + float(r.get("epoch_fraction") or 1) for r in kept]
    return np.asarray(xs, float), np.asarray([r[key] for r in kept], float)


def write_curves(path: Path, rows: Sequence[dict], title: str) -> None:
    """Loss, IoU and RMSE per epoch, training and validation, side by side."""
    matplotlib = require("matplotlib", "train", "curves.png")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    panels = [("loss", "loss (mask + depth)"), ("iou", "mask IoU"), ("rmse", "depth RMSE")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4), constrained_layout=True)
    for ax, (key, label) in zip(axes, panels):
        for prefix, style in (("train", "o-"), ("val", "s-")):
            xs, ys = _series(rows, f"{prefix}_{key}")
            if len(xs):
                ax.plot(xs, ys, style, label=prefix, markersize=4)
        ax.set_xlabel("epochs done")
        ax.set_ylabel(label)
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())
