"""The README's picture of the live background: frames of the drifting-light clip, the mask a
frozen background gives, the adaptive background as it evolved, and the mask it gives.

    python -m maskdepth.benchmarks.scripts.stream_picture [MODEL.onnx] [--out FILE.png]

Without a model, the ONNX change detector of ``stream_clip.difference_model`` (what the
background leaves to find); the scene is a room of the training generator.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import maskdepth
from maskdepth.benchmarks.scripts.stream_clip import box_sprite, difference_model, drifting_clip
from maskdepth.benchmarks.scripts.stream_quality import LIGHTS, room, write_frames
from maskdepth.runtime.image import write_image
from maskdepth.runtime.visualize import grid, mask_picture

SHOWN = {"start, empty": 0, "crossing": 50, "empty, light dimmed": 90, "at rest, end": 199}
LABELS = ["frame", "mask, frozen bg", "adaptive bg", "mask, adaptive"]


def masks(model, folder: Path, bg: np.ndarray, **options) -> dict[int, tuple]:
    """(mask, background given) of the shown frames."""
    kept = {}
    with maskdepth.stream(model, str(folder), bg=bg, **options) as results:
        for r in results:
            if r.index in SHOWN.values():
                kept[r.index] = (r.prediction.binary(0.5), r.background, r.frame)
    return kept


def picture(model, size: int, tmp: Path) -> np.ndarray:
    bg = room(size)
    write_frames(
        tmp / "clip", drifting_clip(bg, box_sprite(size // 3, size // 4), **LIGHTS["drifting"])
    )
    frozen = masks(model, tmp / "clip", bg, bg_update="none")
    adaptive = masks(model, tmp / "clip", bg, bg_rate=1.0, bg_relearn=0.8)
    rows = []
    for index in SHOWN.values():
        mask, given, frame = adaptive[index]
        rows.append([frame, mask_picture(frozen[index][0]), given, mask_picture(mask)])
    return grid(rows, LABELS, cell=size)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, nargs="?", default=None)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("docs/stream_background.png"))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        model = args.model or difference_model(tmp / "difference.onnx", (64, 64))
        write_image(args.out, picture(model, args.size, tmp))
    print(f"wrote {args.out} (rows: {', '.join(SHOWN)})")


if __name__ == "__main__":
    main()
