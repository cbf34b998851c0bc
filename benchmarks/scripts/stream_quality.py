"""The background policy measured: ``maskdepth stream`` on a drifting-light clip it makes
itself (:mod:`maskdepth.benchmarks.scripts.stream_clip`), per phase, for each policy.

    python -m maskdepth.benchmarks.scripts.stream_quality MODEL.onnx [--size 96] [--out DIR]

A table per policy (``none``, ``adaptive``, and the pieces alone): mean IoU on the frames with
an object, false-positive pixel fraction on the empty frames. The scene is a synthetic room of
the training generator (a scene the model was trained on), the object a box.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

import maskdepth
from maskdepth.benchmarks.scripts.stream_clip import box_sprite, drifting_clip, textured_bg
from maskdepth.runtime.image import write_image

# (name, stream options): the pieces alone and together
INF = float("inf")
# The clip is a day in 8 s, so blending and relearn run on its time scale: a 1 s time
# constant, a relearn after 0.8 s empty (the defaults, 30 s and 60 s, are for real light).
CLIP_TIMES = {"bg_rate": 1.0, "bg_relearn": 0.8}
POLICIES: list[tuple[str, dict]] = [
    ("none", {"bg_update": "none"}),
    ("align only", {"bg_rate": INF, "bg_relearn": INF}),
    ("blend only", {"bg_align": False, "bg_rate": 1.0, "bg_relearn": INF}),
    ("blend + relearn", {"bg_align": False, **CLIP_TIMES}),
    ("align + blend", {"bg_rate": 1.0, "bg_relearn": INF}),
    ("adaptive", CLIP_TIMES),
]


# the light of each clip: constant; dimming and warming over the clip; a step at frame 75
# (the first empty frame after the crossing: a lamp switched off)
LIGHTS: dict[str, dict] = {
    "constant": {"gain_end": (1.0, 1.0, 1.0)},
    "drifting": {"gain_end": (0.6, 0.5, 0.4)},
    "across": {"gain_end": (0.5, 0.4, 0.3), "across": True},
    "step": {"gain_end": (1.0, 1.0, 1.0), "step": 0.7, "step_at": 75},
}


def write_frames(folder: Path, frames) -> list:
    """Write the clip as lossless PNGs (a folder source); return (phase, truth) per frame."""
    folder.mkdir(parents=True, exist_ok=True)
    truth = []
    for f in frames:
        write_image(folder / f"{f.index:06d}.png", f.frame)
        truth.append((f.phase, f.truth))
    return truth


def score(model, folder: Path, bg: np.ndarray, truth: list, **options) -> dict:
    """Per phase: mean IoU on frames with an object, false-positive share on empty frames."""
    threshold = options.pop("threshold", 0.5)
    rows: dict[str, list[float]] = {}
    with maskdepth.stream(model, str(folder), bg=bg, threshold=threshold, **options) as results:
        for r in results:
            phase, mask = truth[r.index]
            found = r.prediction.binary(threshold)
            if mask.any():
                value = (found & mask).sum() / max((found | mask).sum(), 1)
            else:
                value = found.mean()
            rows.setdefault(phase, []).append(float(value))
    return {phase: float(np.mean(values)) for phase, values in rows.items()}


def room(size: int, seed: int = 3) -> np.ndarray:
    """An empty room of the training generator at ``size`` x ``size``."""
    from maskdepth.train.data.synth import render_background, sample_room

    rgb, _ = render_background(sample_room(np.random.default_rng(seed), (size, size)))
    return rgb


def measure(model, bg: np.ndarray, sprite, folder: Path) -> dict[str, dict[str, float]]:
    """The table: per light and policy, the per-phase scores."""
    table = {}
    for light, clip in LIGHTS.items():
        truth = write_frames(folder / light, drifting_clip(bg, sprite, **clip))
        for name, policy in POLICIES if light != "constant" else POLICIES[:1]:
            table[f"{light}, {name}"] = score(model, folder / light, bg, truth, **policy)
    return table


def markdown(table: dict[str, dict[str, float]]) -> str:
    phases = ["empty", "crossing", "empty2", "entering", "rest"]
    lines = ["| light, policy | " + " | ".join(phases) + " |", "|---|" + "---:|" * len(phases)]
    for key, row in table.items():
        cells = [
            f"{100 * row[p]:.1f}%" if p.startswith("empty") else f"{row[p]:.3f}" for p in phases
        ]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--size", type=int, default=96, help="frame side in pixels")
    parser.add_argument("--scene", choices=("room", "texture"), default="room")
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    size = args.size
    bg = room(size) if args.scene == "room" else textured_bg(size, size)
    with tempfile.TemporaryDirectory() as tmp:
        table = measure(args.model, bg, box_sprite(size // 3, size // 4), Path(tmp))
    print(markdown(table))
    if args.out:
        args.out.write_text(json.dumps(table, indent=2))


if __name__ == "__main__":
    main()
