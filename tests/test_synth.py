"""The synthetic source: exact labels, reproducible samples, real nuisances, and the writer."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image, to_unit
from maskdepth.train.data.layout import INCOMPLETE
from maskdepth.train.data.render import cast, render
from maskdepth.train.data.synth import SynthSource, synthesize


@pytest.fixture(scope="module")
def source() -> SynthSource:
    return SynthSource(8, size=(64, 80), seed=3, per_background=4)


def test_samples_have_the_documented_shapes_ranges_and_names(source):
    assert len(source) == 8 and source.kind == "synth"
    assert source.background_ids().tolist() == [1, 1, 1, 1, 2, 2, 2, 2]
    assert source.manifest["depth"]["scale_m"] == source.depth_scale_m > 0
    for i in range(len(source)):
        sample = source[i].check()
        assert sample.scene.shape == sample.bg.shape == (64, 80, 3)
        assert sample.mask.shape == sample.depth.shape == (64, 80)
        assert set(np.unique(sample.mask)) == {0.0, 1.0}  # every mask non-empty and exact
        assert sample.depth.min() >= 0.0 and sample.depth.max() <= 1.0
        assert sample.name == f"{i // 4 + 1}/{i + 1}"
    assert np.array_equal(source[1].bg, source[3].bg)  # one room per background
    assert not np.array_equal(source[1].bg, source[5].bg)
    with pytest.raises(IndexError):
        source[8]


def test_samples_are_reproducible_in_any_order_and_process(source):
    forward = [source[i] for i in range(6)]
    again = SynthSource(8, size=(64, 80), seed=3, per_background=4)
    backward = {i: again[i] for i in (5, 2, 4, 0, 3, 1)}
    copied = pickle.loads(pickle.dumps(again))
    for i, sample in enumerate(forward):
        for other in (backward[i], copied[i]):
            for key in ("bg", "scene", "mask", "depth"):
                assert np.array_equal(getattr(sample, key), getattr(other, key)), (i, key)
    other_seed = SynthSource(8, size=(64, 80), seed=4, per_background=4)[0]
    assert not np.array_equal(other_seed.bg, forward[0].bg)
    assert not np.array_equal(other_seed.mask, forward[0].mask)


def _ground_depth(camera, rows: np.ndarray) -> np.ndarray:
    """Analytic z-depth of the ground plane y = 0 seen in pixel rows (any yaw)."""
    _, cy = camera.principal
    yn = (rows + 0.5 - cy) / camera.focal_px
    pitch = math.radians(camera.pitch_deg)
    return camera.height_m / (math.sin(pitch) + yn * math.cos(pitch))


def test_depth_is_metric_and_exact(source):
    scale = source.depth_scale_m
    for i in (0, 5):
        scene = source.scene(i)
        rows = np.arange(64)[:, None].repeat(80, axis=1)

        # The bg: its room, unshaken, against the ground plane's own formula.
        room = render(scene.room.camera, scene.room.surfaces, scene.room.light)
        ground = (room.label == 0) & (room.depth_m < scale)
        assert ground.mean() > 0.2
        expected = _ground_depth(scene.room.camera, rows)
        assert np.abs(room.depth_m - expected)[ground].max() < 1e-3

        # The scene's stored depth, seen by the shaken camera, on the ground it still shows.
        assert scene.camera.shift_px == scene.staging.shake_px != (0.0, 0.0)
        shown = (scene.frame.label == 0) & (scene.frame.depth_m < scale)
        stored = scene.sample.depth * scale
        assert np.abs(stored - _ground_depth(scene.camera, rows))[shown].max() < 1e-3

        # Objects stand in front of whatever the same camera sees without them.
        behind = cast(scene.camera, [s.shape for s in scene.room.surfaces]).depth_m
        near = (scene.sample.mask > 0.5) & (stored < scale)
        assert near.sum() > 10 and (stored[near] < behind[near] - 1e-3).all()


def _best_threshold_iou(sample) -> float:
    diff = np.abs(sample.scene.astype(np.int16) - sample.bg.astype(np.int16)).max(axis=2)
    target = sample.mask > 0.5
    best = 0.0
    for threshold in range(0, 255, 3):
        guess = diff > threshold
        best = max(best, (guess & target).sum() / max((guess | target).sum(), 1))
    return best


def test_scene_differs_from_bg_outside_the_mask_so_differencing_is_not_enough():
    source = SynthSource(16, size=64, seed=11, per_background=2)
    ious = []
    for i in range(len(source)):
        sample = source[i]
        outside = sample.mask < 0.5
        change = np.abs(sample.scene.astype(np.float32) - sample.bg.astype(np.float32))
        assert change[outside].mean() > 2.0, sample.name
        ious.append(_best_threshold_iou(sample))
    # The best per-sample threshold of |scene - bg|, chosen knowing the answer, still misses:
    # a few scenes (a plain floor, one big contrasting object) are easy, most are not.
    assert np.mean(ious) < 0.85, ious
    assert np.mean(np.array(ious) >= 0.98) <= 0.25, ious


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_synthesize_writes_what_the_source_yields(tmp_path):
    out = tmp_path / "synth"
    info = synthesize(out, count=5, size=48, seed=2, per_background=2, workers=1, progress=False)
    assert info["scenes"] == 5 and info["backgrounds"] == 3 and info["scenes_per_s"] > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "synth" and manifest["size"] == [48, 48]
    assert manifest["depth"]["scale_m"] == SynthSource(1).depth_scale_m
    assert sorted(p.name for p in (out / "bg").iterdir()) == ["1.png", "2.png", "3.png"]

    source = SynthSource(5, size=48, seed=2, per_background=2)
    scenes, masks, depths = [], [], []
    for i in range(5):
        k, n = i // 2 + 1, i + 1
        expected = source[i]
        scene = read_image(out / "fg_bg" / str(k) / f"{n}.png")
        mask = to_unit(read_image(out / "fg_bg_mask" / str(k) / f"{n}.png", "gray"))
        depth = to_unit(read_image(out / "dense_depth" / str(k) / f"{n}.png", "gray"))
        assert np.array_equal(read_image(out / "bg" / f"{k}.png"), expected.bg)
        assert np.array_equal(scene, expected.scene)
        assert np.array_equal(mask, expected.mask)
        assert np.abs(depth - expected.depth).max() <= 1 / 65535
        scenes.append(scene)
        masks.append(mask)
        depths.append(depth)

    stats = manifest["stats"]
    scene_mean = np.stack(scenes).reshape(-1, 3).mean(axis=0) / 255
    assert np.allclose(stats["scene"]["mean"], scene_mean, atol=2e-4)
    assert stats["mask"]["mean"][0] == pytest.approx(np.mean(masks), abs=2e-4)
    assert stats["depth"]["mean"][0] == pytest.approx(np.mean(depths), abs=2e-4)
    assert stats["depth"]["std"][0] == pytest.approx(np.std(depths), abs=2e-4)


def test_synthesize_refuses_a_full_folder_and_an_unknown_format(tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(MaskDepthError, match="not empty"):
        synthesize(out, count=2, size=32, progress=False)
    with pytest.raises(MaskDepthError, match="format"):
        synthesize(tmp_path / "new", count=2, size=32, image_format="tiff", progress=False)
    synthesize(out, count=2, size=32, image_format="jpg", overwrite=True, progress=False)
    assert (out / "fg_bg" / "1" / "2.jpg").is_file() and (out / "notes.txt").is_file()


def test_one_worker_and_two_workers_write_identical_files(tmp_path):
    options = dict(count=6, size=40, seed=9, per_background=2, progress=False)
    synthesize(tmp_path / "one", workers=1, **options)
    synthesize(tmp_path / "two", workers=2, **options)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert len(one) == 1 + 3 + 3 * 6 and one == two  # the manifest too: stats merge in order


@pytest.mark.slow
def test_a_killed_run_leaves_only_whole_files(tmp_path):
    out = tmp_path / "killed"
    code = (
        "from maskdepth.train.data.synth import synthesize\n"
        f"synthesize({str(out)!r}, count=4000, size=64, per_background=20, workers=2, "
        "progress=False)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    try:  # kill it once it has written a few whole files, not after a guessed time
        deadline = time.monotonic() + 60
        while len(_whole_files(out)) <= 8:
            assert time.monotonic() < deadline, "no files written in 60 s"
            assert process.poll() is None, "the run ended before it was killed"
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the run and its workers, mid-write
        process.wait()
    assert (out / INCOMPLETE).is_file()  # readers can tell the run did not finish
    written = _whole_files(out)
    assert len(written) > 8 and not (out / "manifest.json").exists()
    for path in written:
        assert read_image(path, "unchanged").size > 0, path


def _whole_files(root: Path) -> list[Path]:
    """Files under their final names (a file being written has a hidden temporary name)."""
    return [p for p in root.rglob("*") if not p.name.startswith(".") and p.is_file()]
