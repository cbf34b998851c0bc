"""The background policy of ``maskdepth stream`` on a drifting-light clip the test draws itself,
through the real Predictor and a real ONNX change detector (its mask is the thresholded
difference of scene and bg, so what it finds is what the policy leaves to find)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import maskdepth
from maskdepth.benchmarks.scripts.stream_clip import (
    box_sprite,
    difference_model,
    drifting_clip,
    textured_bg,
)
from maskdepth.runtime.image import write_image
from maskdepth.runtime.stream.background import BackgroundModel, fit_gain

SIZE = (48, 64)
FAST = {"bg_rate": 0.5, "bg_relearn": 0.8}  # the clip is a day in 8 s


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return difference_model(tmp_path_factory.mktemp("model") / "difference.onnx", SIZE)


@pytest.fixture(scope="module")
def scene() -> tuple[np.ndarray, tuple]:
    return textured_bg(*SIZE, seed=1), box_sprite(16, 14)


def run(model, folder: Path, bg, **options) -> list[tuple[int, np.ndarray]]:
    options.setdefault("min_area", 20)
    with maskdepth.stream(model, str(folder), bg=bg, **options) as results:
        return [(r.index, r.prediction.binary(0.5)) for r in results]


def write(folder: Path, frames) -> list:
    folder.mkdir()
    kept = []
    for f in frames:
        write_image(folder / f"{f.index:06d}.png", f.frame)
        kept.append(f)
    return kept


def phase_scores(found: list, clip: list) -> dict[str, float]:
    """IoU on frames with an object, false-positive share on empty ones, mean per phase."""
    rows: dict[str, list[float]] = {}
    for index, mask in found:
        truth = clip[index].truth
        value = (mask & truth).sum() / max((mask | truth).sum(), 1) if truth.any() else mask.mean()
        rows.setdefault(clip[index].phase, []).append(float(value))
    return {phase: float(np.mean(v)) for phase, v in rows.items()}


def test_adaptive_absorbs_drift_and_keeps_a_resting_object(model, scene, tmp_path):
    bg, sprite = scene
    clip = write(tmp_path / "clip", drifting_clip(bg, sprite, gain_end=(0.6, 0.5, 0.4)))
    none = phase_scores(run(model, tmp_path / "clip", bg, bg_update="none"), clip)
    adaptive = phase_scores(run(model, tmp_path / "clip", bg, **FAST), clip)
    # frozen: the dimmed background turns into "objects" on the empty frames and around the box
    assert none["empty2"] > 0.02 and adaptive["empty2"] < 0.002
    assert none["rest"] < 0.3 and adaptive["rest"] > 0.6
    # the box rests for 3 s, six time constants of blending: still whole in the last frames
    found = run(model, tmp_path / "clip", bg, **FAST)
    last = [mask for index, mask in found[-10:]]
    truth = clip[-1].truth
    assert all((m & truth).sum() / (m | truth).sum() > 0.6 for m in last)


def test_a_step_of_light_is_repaired_but_blending_alone_never_repairs_it(model, scene, tmp_path):
    bg, sprite = scene
    flat = {"gain_end": (1.0, 1.0, 1.0), "step": 0.7, "step_at": 75}  # lamp off, empty scene
    clip = write(tmp_path / "clip", drifting_clip(bg, sprite, **flat))
    empty_after = [f.index for f in clip if f.phase == "empty2" and f.index >= 80]

    def false_positive(**options) -> float:
        found = dict(run(model, tmp_path / "clip", bg, **options))
        return float(np.mean([found[i].mean() for i in empty_after]))

    assert false_positive(bg_update="none") > 0.3
    # the whole frame is "an object", so it is never blended and never empty: the trap
    assert false_positive(bg_align=False, **FAST) > 0.3
    assert false_positive(**FAST) < 0.002  # the gain fit sees the step and the mask clears


def test_relearn_repairs_a_small_change_that_blending_keeps(model, scene, tmp_path):
    bg = scene[0]
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(60):  # a constant empty scene; a 5x5 patch changes for good at frame 5
        frame = bg.copy()
        if i >= 5:
            frame[20:25, 30:35] = 250
        write_image(folder / f"{i:06d}.png", frame)
    kept = run(model, folder, bg, bg_rate=0.5, bg_relearn=1e9, min_area=50)
    relearned = run(model, folder, bg, bg_rate=0.5, bg_relearn=0.8, min_area=50)
    assert kept[-1][1][20:25, 30:35].all()  # under min-area: no object, but masked for ever
    assert not relearned[-1][1].any()  # 0.8 s with no object: the bg became the frame


def test_the_gain_fit_ignores_an_object_and_finds_the_light():
    rng = np.random.default_rng(0)
    bg = rng.uniform(30, 200, (40, 60, 3)).astype(np.float32)
    frame = bg * np.float32([0.7, 0.8, 0.9]) + np.float32([5, -3, 2])
    frame[5:25, 10:40] = 255.0  # an object not masked yet: 25% of the frame
    gain, offset = fit_gain(bg, frame, None)
    np.testing.assert_allclose(gain, [0.7, 0.8, 0.9], atol=0.01)
    np.testing.assert_allclose(offset, [5, -3, 2], atol=1.5)


def test_a_missing_background_is_learned_as_the_median_of_the_first_frames():
    rng = np.random.default_rng(2)
    empty = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    model = BackgroundModel(None, learn=5)
    for i in range(5):
        frame = empty.copy()
        frame[i, :] = 255 - frame[i, :]  # someone walks by: a different row in each frame
        assert model.learn(frame) == (i == 4)
    np.testing.assert_array_equal(model.image(), empty)
