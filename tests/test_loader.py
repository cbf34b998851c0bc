"""The train/val split, the aligned augmentations, the Dataset and the DataLoader."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair, resize_map
from maskdepth.train.data.augment import Augment, preset
from maskdepth.train.data.loader import MaskDepthDataset, make_loader
from maskdepth.train.data.sample import Sample
from maskdepth.train.data.split import split_indices

HEIGHT, WIDTH = 40, 56  # not square, so a swapped height and width shows


class ListSource:
    """A Source over samples in memory; indices in ``bad`` raise like a truncated file."""

    kind = "test"
    manifest = None

    def __init__(self, samples: list[Sample], bg_ids, bad=()) -> None:
        self.samples = samples
        self.ids = np.asarray(bg_ids, dtype=np.int64)
        self.bad = set(bad)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        if index in self.bad:
            raise MaskDepthError(f"sample {index}: unreadable or truncated image")
        return self.samples[index]

    def background_ids(self) -> np.ndarray:
        return self.ids


def blob_sample(seed: int, depth: str = "x") -> Sample:
    """bg in [0, 100]; the scene is bg + 120 exactly where the mask (an ellipse) is 1.

    ``depth`` "x" or "y" stores that pixel coordinate, scaled to [0, 1], as the depth.
    """
    rng = np.random.default_rng(seed)
    bg = rng.integers(0, 101, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    mask = np.zeros((HEIGHT, WIDTH), np.uint8)
    center = (int(rng.integers(18, WIDTH - 18)), int(rng.integers(14, HEIGHT - 14)))
    cv2.ellipse(mask, center, (14, 9), float(rng.integers(0, 180)), 0, 360, 1, -1)
    scene = bg + (120 * mask[:, :, None]).astype(np.uint8)
    ys, xs = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    coordinate = xs / (WIDTH - 1) if depth == "x" else ys / (HEIGHT - 1)
    return Sample(bg, scene, mask.astype(np.float32), coordinate, name=f"blob{seed}")


def blob_source(count: int, bad=()) -> ListSource:
    return ListSource([blob_sample(i) for i in range(count)], np.arange(count) // 4, bad)


# --- split -----------------------------------------------------------------------------------


def test_split_by_scene_is_deterministic_disjoint_and_covering():
    source = ListSource([None] * 103, np.zeros(103))
    train, val = split_indices(source, 0.1, seed=0)
    again_train, again_val = split_indices(source, 0.1, seed=0)
    other_train, other_val = split_indices(source, 0.1, seed=1)
    assert train.dtype == val.dtype == np.int64
    np.testing.assert_array_equal(val, again_val)
    np.testing.assert_array_equal(train, again_train)
    assert not np.array_equal(val, other_val)  # the seed matters
    assert len(val) == 10 and len(train) == 93  # round(0.1 x 103)
    assert np.all(np.diff(train) > 0) and np.all(np.diff(val) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(103))
    assert val.max() > 50  # drawn from everywhere, not the first tenth
    assert len(split_indices(ListSource([None] * 3, np.zeros(3)), 0.1)[1]) == 1  # at least one


def test_split_by_background_keeps_each_background_on_one_side():
    ids = np.repeat(np.arange(1, 21), np.arange(1, 21))  # 20 backgrounds of 1..20 scenes
    source = ListSource([None] * len(ids), ids)
    train, val = split_indices(source, 0.2, seed=0, by="background")
    assert len(np.unique(ids[val])) == 4  # round(0.2 x 20) backgrounds
    assert not set(ids[train]) & set(ids[val])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(len(ids)))
    np.testing.assert_array_equal(val, split_indices(source, 0.2, 0, "background")[1])
    two = ListSource([None] * 6, [5, 5, 5, 9, 9, 9])
    train, val = split_indices(two, 0.01, by="background")
    assert len(val) == 3 and len(train) == 3  # one of the two backgrounds, at least


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_refuses_a_bad_fraction(fraction):
    with pytest.raises(MaskDepthError, match=r"\[0, 1\)"):
        split_indices(ListSource([None] * 10, np.zeros(10)), fraction)
    with pytest.raises(MaskDepthError, match="background"):
        split_indices(ListSource([None] * 10, np.zeros(10)), 0.1, by="camera")


# --- augmentation ----------------------------------------------------------------------------


def _within_one_pixel_of_edge(mask: np.ndarray) -> np.ndarray:
    inside = (mask >= 0.5).astype(np.uint8)
    kernel = np.ones((3, 3), np.uint8)
    return cv2.dilate(inside, kernel).astype(bool) & ~cv2.erode(inside, kernel).astype(bool)


def test_flip_and_crop_keep_scene_mask_and_depth_aligned():
    augment = Augment(crop_scale=(0.7, 0.9)).without_jitter()
    flips = set()
    for seed in range(12):
        sample_x, sample_y = blob_sample(seed, "x"), blob_sample(seed, "y")
        out_x = augment(sample_x, np.random.default_rng(seed))
        out_y = augment(sample_y, np.random.default_rng(seed))  # same draws, same geometry
        assert out_x.scene.shape == (HEIGHT, WIDTH, 3) and out_x.scene.dtype == np.uint8
        assert out_x.mask.dtype == out_x.depth.dtype == np.float32
        # The scene differs from the bg exactly where the mask is (up to the edge's pixels).
        changed = np.abs(out_x.scene.astype(int) - out_x.bg.astype(int)).max(axis=2) > 0
        wrong = changed != (out_x.mask >= 0.5)
        assert out_x.mask.sum() > 150
        assert not np.any(wrong & ~_within_one_pixel_of_edge(out_x.mask))
        # The depth maps say where each pixel came from: a crop (scale 0.7-0.9), maybe flipped.
        src_x = out_x.depth * (WIDTH - 1)
        src_y = out_y.depth * (HEIGHT - 1)
        inner = (slice(1, -1), slice(1, -1))
        assert np.ptp(src_x[inner], axis=0).max() < 1e-3  # x depends on the column only
        assert np.ptp(src_y[inner], axis=1).max() < 1e-3
        step_x = np.diff(src_x[HEIGHT // 2, 1:-1])
        step_y = np.diff(src_y[1:-1, WIDTH // 2])
        assert np.ptp(step_x) < 1e-3 and np.ptp(step_y) < 1e-3  # affine
        assert 0.69 < abs(step_x[0]) < 0.91 and 0.69 < step_y[0] < 0.91
        assert abs(abs(step_x[0]) - step_y[0]) < 0.05  # one scale for both sides
        flips.add(bool(step_x[0] < 0))
        # The mask moved with them: the original mask read at those coordinates.
        expected = cv2.remap(sample_x.mask, src_x, src_y, cv2.INTER_LINEAR)
        np.testing.assert_allclose(out_x.mask[inner], expected[inner], atol=1e-4)
    assert flips == {True, False}


def test_augment_resizes_to_the_size_it_is_asked_for():
    out = Augment()(blob_sample(0), np.random.default_rng(0), size=(24, 32))
    assert out.bg.shape == out.scene.shape == (24, 32, 3)
    assert out.mask.shape == out.depth.shape == (24, 32)


def test_jitter_changes_bg_and_scene_but_never_mask_or_depth():
    sample = blob_sample(3)
    strong = Augment(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, independent=0.0)
    for seed in range(5):
        jittered = strong(sample, np.random.default_rng(seed))
        plain = strong.without_jitter()(sample, np.random.default_rng(seed))
        np.testing.assert_array_equal(jittered.mask, plain.mask)
        np.testing.assert_array_equal(jittered.depth, plain.depth)
        assert np.abs(jittered.bg.astype(int) - plain.bg).mean() > 2
        assert np.abs(jittered.scene.astype(int) - plain.scene).mean() > 2
        # Only the shared part (independent=0): equal pixels of bg and scene stay equal.
        outside = ~(plain.scene != plain.bg).any(axis=2)
        np.testing.assert_array_equal(jittered.scene[outside], jittered.bg[outside])
    # With an independent part the scene drifts a little from the bg outside the object.
    own = Augment(brightness=0.4, independent=0.5)(sample, np.random.default_rng(1))
    plain = Augment(independent=0.5).without_jitter()(sample, np.random.default_rng(1))
    outside = ~(plain.scene != plain.bg).any(axis=2)
    drift = np.abs(own.scene.astype(int) - own.bg)[outside]
    assert 0 < drift.mean() < 20


def test_augment_refuses_bad_settings():
    with pytest.raises(MaskDepthError, match="crop scale"):
        Augment(crop_scale=(0.9, 1.2))
    with pytest.raises(MaskDepthError, match="flip"):
        Augment(flip=2)
    with pytest.raises(MaskDepthError, match="jpeg a probability"):
        Augment(jpeg=1.5)
    with pytest.raises(MaskDepthError, match="expected one of none, geometry, basic, camera"):
        preset("strong")


def test_camera_noise_and_jpeg_touch_each_photo_on_its_own_never_the_labels():
    sample = blob_sample(4)
    geometry = preset("geometry")
    camera = replace(geometry, noise=6.0, jpeg=1.0)
    for seed in range(3):
        plain = geometry(sample, np.random.default_rng(seed))
        shot = camera(sample, np.random.default_rng(seed))
        np.testing.assert_array_equal(shot.mask, plain.mask)
        np.testing.assert_array_equal(shot.depth, plain.depth)
        bg_change = shot.bg.astype(int) - plain.bg
        scene_change = shot.scene.astype(int) - plain.scene
        assert 0.5 < np.abs(bg_change).mean() < 25 and 0.5 < np.abs(scene_change).mean() < 25
        # Drawn for each photo: outside the object bg and scene no longer match exactly.
        outside = ~(plain.scene != plain.bg).any(axis=2)
        assert (shot.scene[outside] != shot.bg[outside]).mean() > 0.3


def test_shake_moves_the_bg_against_the_scene_and_its_labels():
    sample = blob_sample(5)
    geometry = preset("geometry")
    shaken = replace(geometry, shake=2)
    offsets = set()
    for seed in range(12):
        plain = geometry(sample, np.random.default_rng(seed))
        shot = shaken(sample, np.random.default_rng(seed))
        np.testing.assert_array_equal(shot.scene, plain.scene)
        np.testing.assert_array_equal(shot.mask, plain.mask)
        # The shaken bg is the plain bg moved by whole pixels: find the offset.
        found = [
            (dx, dy)
            for dx in range(-2, 3)
            for dy in range(-2, 3)
            if np.array_equal(
                shot.bg[4:-4, 4:-4], np.roll(plain.bg, (dy, dx), axis=(0, 1))[4:-4, 4:-4]
            )
        ]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 3 and all(max(abs(dx), abs(dy)) <= 2 for dx, dy in offsets)


def test_presets():
    assert preset("none") is None
    assert preset("basic") == Augment()
    assert not preset("geometry").jitters and preset("geometry").flip == Augment().flip
    camera = preset("camera")
    assert camera.jitters and camera.noise > 0 and camera.jpeg > 0 and camera.shake > 0
    assert camera.flip == 0 and camera.crop_scale == (1.0, 1.0)  # a fixed camera's geometry


# --- dataset and loader ----------------------------------------------------------------------


def test_dataset_item_is_prepare_pair_of_the_sample():
    source = blob_source(6)
    pre = Preprocessing(size=(32, 48))
    dataset = MaskDepthDataset(source, indices=[1, 4], pre=pre)
    assert len(dataset) == 2
    item = dataset[1]
    sample = source[4]
    assert item["index"] == 4
    assert item["input"].dtype == item["mask"].dtype == item["depth"].dtype == torch.float32
    assert item["input"].shape == (6, 32, 48)
    assert item["mask"].shape == item["depth"].shape == (1, 32, 48)
    np.testing.assert_array_equal(item["input"].numpy(), prepare_pair(sample.bg, sample.scene, pre))
    np.testing.assert_array_equal(item["depth"][0].numpy(), resize_map(sample.depth, (32, 48)))
    # Normalised per channel: (pixel / 255 - mean) / std, bg first.
    same_size = MaskDepthDataset(source, pre=Preprocessing(size=(HEIGHT, WIDTH)))[4]["input"]
    expected = (sample.scene[5, 7, 2] / 255 - pre.mean[5]) / pre.std[5]
    assert same_size[5, 5, 7].item() == pytest.approx(expected, abs=1e-5)
    assert same_size[0, 5, 7].item() == pytest.approx(
        (sample.bg[5, 7, 0] / 255 - pre.mean[0]) / pre.std[0], abs=1e-5
    )


def _batches(workers: int, epochs: int) -> list[dict]:
    dataset = MaskDepthDataset(
        blob_source(20), pre=Preprocessing(size=(32, 32)), augment=Augment(), seed=7
    )
    loader = make_loader(dataset, 6, workers=workers, seed=3)
    batches = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        batches.extend(loader)
    return batches


def test_loader_batches_do_not_depend_on_the_number_of_workers():
    single, multi = _batches(0, 2), _batches(2, 2)
    assert len(single) == len(multi) == 8  # 4 batches (6, 6, 6, 2) per epoch
    for one, two in zip(single, multi):
        for key in ("input", "mask", "depth", "index"):
            torch.testing.assert_close(one[key], two[key], rtol=0, atol=0)
    # Both epochs see every sample once, in another order and with other augmentations.
    first = torch.cat([b["index"] for b in single[:4]])
    second = torch.cat([b["index"] for b in single[4:]])
    assert sorted(first.tolist()) == sorted(second.tolist()) == list(range(20))
    assert not torch.equal(first, second)
    dataset = MaskDepthDataset(blob_source(4), augment=Augment(), pre=Preprocessing(size=(32, 32)))
    dataset.set_epoch(0)
    again = dataset[2]["input"]
    torch.testing.assert_close(dataset[2]["input"], again, rtol=0, atol=0)
    dataset.set_epoch(1)
    assert not torch.equal(dataset[2]["input"], again)


def test_skip_bad_replaces_and_counts_broken_samples_across_workers():
    dataset = MaskDepthDataset(
        blob_source(16, bad={3, 7, 8}), pre=Preprocessing(size=(32, 32)), skip_bad=True
    )
    loader = make_loader(dataset, 4, workers=2, shuffle=False)
    indices = torch.cat([batch["index"] for batch in loader]).tolist()
    assert len(indices) == 16
    assert not {3, 7, 8} & set(indices)
    assert indices[3] == 4 and indices[7] == indices[8] == 9  # the next good one instead
    assert dataset.bad_count == 3
    np.testing.assert_array_equal(dataset.bad_indices(), [3, 7, 8])


@pytest.mark.parametrize("workers", [0, 2])
def test_without_skip_bad_the_error_reaches_the_caller(workers):
    dataset = MaskDepthDataset(blob_source(8, bad={5}), pre=Preprocessing(size=(32, 32)))
    batches = iter(make_loader(dataset, 4, workers=workers, shuffle=False))
    with pytest.raises(MaskDepthError, match="sample 5: unreadable") as caught:
        list(batches)
    assert dataset.bad_count == 0
    # torch re-raises a worker's error from a frame its exception refers back to; break that
    # cycle so the workers stop now, not at a later garbage collection (5 s per worker).
    caught.value.__traceback__ = None
    del batches, caught
