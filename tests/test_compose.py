"""`compose`: the seed's recipe on user images, its depth rules, manifest and bad inputs."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image, to_unit, write_image
from maskdepth.runtime.preprocess import resize_image, resize_map
from maskdepth.train.data.compose import compose, draw_positions
from maskdepth.train.data.cutouts import load_foreground
from maskdepth.train.data.depth import (
    GROUND_CAMERA,
    GROUND_SCALE_M,
    OnnxDepthModel,
    ground_plane_depth,
    stand_on_ground,
)
from maskdepth.train.data.depth_presets import DepthInput
from maskdepth.train.data.manifest import read_manifest
from maskdepth.train.data.sources import open_source

SIZE, FG, P = 64, 32, 3
rng = np.random.default_rng(7)


def _smooth(shape: tuple[int, ...]) -> np.ndarray:
    noise = rng.integers(0, 256, shape, np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 3)


def _fg_rgba() -> np.ndarray:
    """32x32 RGBA, alpha never 0 (so the mask's box is the paste box), opaque in an off-centre
    block (rows 4..23, cols 3..20) whose lowest opaque row is 23, soft below it."""
    alpha = np.full((FG, FG), 20, np.uint8)
    alpha[4:24, 3:21] = 255
    alpha[24, 3:21] = 100
    return np.dstack([rng.integers(0, 256, (FG, FG, 3), np.uint8), alpha])


def _inputs(tmp_path: Path, bgs: int = 2, fgs: int = 2, square: bool = False) -> tuple[Path, Path]:
    bg_dir, fg_dir = tmp_path / "bgs", tmp_path / "fgs"
    bg_dir.mkdir()
    fg_dir.mkdir()
    for i in range(bgs):
        if square:  # lossless and already at SIZE: the written bg equals the input exactly
            write_image(bg_dir / f"b{i}.png", _smooth((SIZE, SIZE, 3)))
        else:
            write_image(bg_dir / f"b{i}.jpg", _smooth((80 + 10 * i, 120, 3)), 90)
    for i in range(fgs):
        write_image(fg_dir / f"f{i}.png", _fg_rgba())
    return bg_dir, fg_dir


def _run(tmp_path: Path, bg_dir: Path, fg_dir: Path, out: str = "out", **options) -> dict:
    options = {
        "size": SIZE,
        "fg_size": FG,
        "positions": P,
        "workers": 1,
        "progress": False,
    } | options
    return compose(tmp_path / out, bg_dir, fg_dir, **options)


def _layout(out: Path, k: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    scene = read_image(out / "fg_bg" / str(k) / f"{n}.png")
    mask = to_unit(read_image(out / "fg_bg_mask" / str(k) / f"{n}.png", "gray"))
    depth = to_unit(read_image(out / "dense_depth" / str(k) / f"{n}.png", "gray"))
    return scene, mask, depth


def _box(mask: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    assert rows[-1] - rows[0] + 1 == FG and cols[-1] - cols[0] + 1 == FG
    return int(cols[0]), int(rows[0])


def _files(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != "manifest.json"
    }


def test_counts_and_files_on_disk(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=3)
    result = _run(tmp_path, bg_dir, fg_dir)
    assert result["scenes"] == 3 * 2 * 2 * P == 36
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "bg").iterdir()) == ["1.jpg", "2.jpg", "3.jpg"]
    for tree in ("fg_bg", "fg_bg_mask", "dense_depth"):
        for k in (1, 2, 3):
            names = {p.name for p in (out / tree / str(k)).iterdir()}
            assert names == {f"{n}.jpg" for n in range(12 * (k - 1) + 1, 12 * k + 1)}
    assert read_image(out / "fg_bg" / "2" / "13.jpg").shape == (SIZE, SIZE, 3)
    assert result["scenes_per_s"] > 0 and result["seconds"] > 0
    source = open_source(out)  # the seed-layout reader takes it as is
    assert len(source) == 36 and np.bincount(source.background_ids()).tolist() == [0, 12, 12, 12]

    no_flip = _run(tmp_path, bg_dir, fg_dir, out="flat", flip=False)
    assert no_flip["scenes"] == 3 * 2 * 1 * P
    assert len(list((tmp_path / "flat" / "fg_bg").rglob("*.jpg"))) == 18


def test_png_scenes_are_the_alpha_composite_and_flips_mirror(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=1, fgs=1, square=True)
    _run(tmp_path, bg_dir, fg_dir, image_format="png")
    out = tmp_path / "out"
    bg = read_image(next(bg_dir.iterdir()))
    assert np.array_equal(read_image(out / "bg" / "1.png"), bg)
    fg = read_image(next(fg_dir.iterdir()), "unchanged")
    for n in range(1, 2 * P + 1):
        scene, mask, _ = _layout(out, 1, n)
        cutout = fg if n <= P else fg[:, ::-1]  # n = 1..P original, P+1..2P flipped
        x, y = _box(mask)
        assert 0 <= x <= SIZE - FG and 0 <= y <= SIZE - FG
        box = (slice(y, y + FG), slice(x, x + FG))
        assert np.array_equal(np.rint(mask[box] * 255), cutout[:, :, 3])
        a = cutout[:, :, 3:] / 255
        expected = np.rint((1 - a) * bg[box] + a * cutout[:, :, :3])
        assert np.abs(scene[box].astype(int) - expected).max() <= 1
        outside = np.ones((SIZE, SIZE), bool)
        outside[box] = False
        assert np.array_equal(scene[outside], bg[outside]) and not mask[outside].any()


def test_positions_fit_and_reach_both_ends():
    xy = draw_positions(0, 1, 1, (20, FG), SIZE, variants=2, positions=2000)
    assert xy.shape == (2, 2000, 2)
    assert xy[..., 0].min() == 0 and xy[..., 0].max() == SIZE - FG
    assert xy[..., 1].min() == 0 and xy[..., 1].max() == SIZE - 20
    assert not np.array_equal(xy, draw_positions(0, 1, 2, (20, FG), SIZE, 2, 2000))


def test_same_output_for_any_worker_count_and_seed_changes_it(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=3)
    one = _run(tmp_path, bg_dir, fg_dir, out="w1", image_format="png")
    two = _run(tmp_path, bg_dir, fg_dir, out="w2", image_format="png", workers=2)
    assert _files(tmp_path / "w1") == _files(tmp_path / "w2")
    # Positions are drawn per (seed, k, f): the same cut-out lands elsewhere on each background.
    ids = [(k, 12 * (k - 1) + n) for k in (1, 2, 3) for n in range(1, 13)]
    boxes = np.array([_box(_layout(tmp_path / "w1", k, n)[1]) for k, n in ids]).reshape(3, 12, 2)
    assert not np.array_equal(boxes[0], boxes[1]) and not np.array_equal(boxes[1], boxes[2])
    assert one["stats"] == two["stats"]
    _run(tmp_path, bg_dir, fg_dir, out="s1", image_format="png", seed=1)
    other = _files(tmp_path / "s1")
    same = _files(tmp_path / "w1")
    assert other.keys() == same.keys()
    assert sum(other[key] != same[key] for key in same if key.startswith("fg_bg_mask")) > 30


def test_ground_plane_matches_a_ray_cast_and_grows_toward_the_top():
    ground = ground_plane_depth(48, 40)
    assert ground.shape == (48, 40) and ground.dtype == np.float32
    assert np.all(ground == ground[:, :1])  # no roll: one depth per row
    assert np.all(np.diff(ground[:, 0]) < 0)  # strictly farther toward the top
    assert ground.min() > 0 and ground.max() <= 1 and ground[0, 0] > 0.8
    # Independent check: rotate each row's ray by the pitch and intersect it with the ground.
    cam = GROUND_CAMERA
    pitch = math.atan((0.5 + cam.horizon_margin) / cam.focal)
    u = (np.arange(48) + 0.5) / 48 - 0.5
    down = u * math.cos(pitch) + cam.focal * math.sin(pitch)  # world-down part of ray (0, u, f)
    z = cam.height_m / down * cam.focal
    np.testing.assert_allclose(ground[:, 0] * GROUND_SCALE_M, z, rtol=1e-5)
    # The scale is the same at any resolution: the top edge is GROUND_SCALE_M away.
    assert ground_plane_depth(480, 8)[0, 0] > ground[0, 0]


def test_an_object_stands_on_the_ground_under_its_lowest_opaque_row():
    ground = ground_plane_depth(64, 64)
    alpha = np.zeros((64, 64), np.float32)
    alpha[10:30, 20:40] = 1.0
    alpha[30, 20:40] = 0.3  # soft edge below: not opaque
    alpha[12:20, 40] = 0.6  # opaque but higher up: not the lowest row
    depth = stand_on_ground(ground, alpha)
    contact = ground[30, 0]  # row under the lowest opaque row 29
    assert np.all(depth[10:30, 20:40] == contact)
    np.testing.assert_allclose(depth[30, 20:40], 0.7 * ground[30, 0] + 0.3 * contact, rtol=1e-6)
    np.testing.assert_allclose(depth[12:20, 40], 0.4 * ground[12:20, 40] + 0.6 * contact, rtol=1e-6)
    assert np.array_equal(depth[alpha == 0], ground[alpha == 0])
    assert np.all(depth[10:29, 20:40] < ground[10:29, 20:40])  # nearer than the ground behind
    assert np.array_equal(stand_on_ground(ground, np.zeros_like(alpha)), ground)


def test_written_depth_follows_the_rule(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=1, fgs=1, square=True)
    result = _run(tmp_path, bg_dir, fg_dir, image_format="png")
    assert result["depth"]["source"] == "geometry (ground plane)"
    assert result["depth"]["scale_m"] == pytest.approx(GROUND_SCALE_M, abs=1e-4)
    ground = ground_plane_depth(SIZE, SIZE)
    for n in (1, P + 1):
        _, mask, depth = _layout(tmp_path / "out", 1, n)
        x, y = _box(mask)
        contact = ground[y + 24, 0]  # the cut-out's lowest opaque row is 23
        np.testing.assert_allclose(depth[mask == 1], contact, atol=2e-5)
        np.testing.assert_allclose(depth[mask == 0], ground[mask == 0], atol=2e-5)


def test_manifest_counts_and_stats_match_the_files(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=2, square=True)
    result = _run(tmp_path, bg_dir, fg_dir, image_format="png", seed=5)
    out = tmp_path / "out"
    manifest = read_manifest(out)
    assert {k: result[k] for k in manifest} == manifest
    assert manifest["kind"] == "compose" and manifest["scenes"] == 24
    assert (manifest["backgrounds"], manifest["foregrounds"], manifest["positions"]) == (2, 2, P)
    assert manifest["size"] == [SIZE, SIZE] and manifest["fg_size"] == FG
    assert (manifest["seed"], manifest["flip"], manifest["skipped"]) == (5, True, 0)
    assert manifest["image_format"] == "png" and manifest["jpeg_quality"] is None
    bgs = np.stack([read_image(p) for p in sorted((out / "bg").iterdir())]) / 255
    scenes, masks = zip(*[_layout(out, (n - 1) // 12 + 1, n)[:2] for n in range(1, 25)])
    scenes = np.stack(scenes) / 255
    stats = manifest["stats"]
    np.testing.assert_allclose(stats["bg"]["mean"], bgs.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(stats["bg"]["std"], bgs.std(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(stats["scene"]["mean"], scenes.mean(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(stats["scene"]["std"], scenes.std(axis=(0, 1, 2)), atol=1e-4)
    np.testing.assert_allclose(stats["mask"]["mean"], [np.mean(masks)], atol=1e-4)
    assert 0 < stats["depth"]["mean"][0] < 1


def test_white_key_keys_the_border_white_of_a_jpg(tmp_path):
    image = np.full((60, 40, 3), 255, np.uint8)
    cv2.circle(image, (20, 30), 15, (200, 30, 30), -1)
    cv2.circle(image, (20, 30), 4, (255, 255, 255), -1)  # white inside the object stays
    path = tmp_path / "fgs" / "cup.jpg"
    path.parent.mkdir()
    write_image(path, image, 95)
    rgba = load_foreground(path, FG, white_key=True)
    assert rgba.shape == (FG, round(40 * FG / 60), 4)
    alpha = rgba[:, :, 3]
    assert alpha[0, 0] == alpha[-1, -1] == alpha[4, 10] == 0  # white around the object: clear
    assert alpha[12, 10] == 255  # the red disc
    assert alpha[16, 10] == 255 and rgba[16, 10, :3].min() > 230  # white inside it stays
    assert np.any((alpha > 0) & (alpha < 255))  # a soft edge, not a hard cut
    with pytest.raises(MaskDepthError, match=r"cup\.jpg.*--white-key"):
        load_foreground(path, FG)
    (tmp_path / "x").mkdir()
    bg_dir, _ = _inputs(tmp_path / "x", bgs=1, fgs=0)
    result = _run(tmp_path, bg_dir, path.parent, white_key=True)
    assert result["foregrounds"] == 1 and result["white_key"] is True


def _onnx_model(path: Path, shape: list, name: str = "image") -> Path:
    """A 'depth network' that returns the channel mean of its input (NCHW -> N1HW)."""
    from onnx import TensorProto, helper, save

    node = helper.make_node("ReduceMean", [name], ["depth"], axes=[1], keepdims=1)
    out_shape = [shape[0], 1, *shape[2:]] if len(shape) == 4 else None
    graph = helper.make_graph(
        [node],
        "mean",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("depth", TensorProto.FLOAT, out_shape)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


def _minmax(values: np.ndarray) -> np.ndarray:
    return (values - values.min()) / (values.max() - values.min())


@pytest.mark.parametrize(
    ("shape", "output", "workers"),
    [
        ([1, 3, "h", "w"], "depth", 2),
        ([1, 3, 32, 32], "depth", 1),
        ([1, 3, "h", "w"], "disparity", 1),
    ],
)
def test_onnx_depth_model_on_each_scene(tmp_path, shape, output, workers):
    onnx = _onnx_model(tmp_path / "mean.onnx", shape)
    bg_dir, fg_dir = _inputs(tmp_path, bgs=2, fgs=1)
    options = {"depth_model": onnx, "depth_output": output, "workers": workers}
    result = _run(tmp_path, bg_dir, fg_dir, image_format="png", positions=2, **options)
    assert result["depth"]["source"] == f"onnx:mean.onnx ({output})"
    assert result["depth"]["scale_m"] is None
    for k, n in ((1, 1), (2, 8)):
        scene, _, depth = _layout(tmp_path / "out", k, n)
        if shape[2] == 32:  # fixed input: the scene is resized to it, the output back
            seen = resize_image(scene, (32, 32)).astype(np.float32).mean(axis=2) / 255
            expected = _minmax(resize_map(seen, (SIZE, SIZE)))
        else:
            expected = _minmax(scene.astype(np.float32).mean(axis=2) / 255)
        if output == "disparity":
            expected = 1 - expected
        np.testing.assert_allclose(depth, expected, atol=1e-4)


def test_onnx_depth_model_errors_name_the_file(tmp_path):
    scene = np.full((16, 16, 3), 9, np.uint8)
    constant = OnnxDepthModel(_onnx_model(tmp_path / "ok.onnx", [1, 3, "h", "w"]))(scene)
    assert constant.shape == (16, 16) and not constant.any()  # a flat output: zeros, no NaN
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    cases = {
        "junk.onnx": tmp_path / "junk.onnx",
        "rank.onnx": _onnx_model(tmp_path / "rank.onnx", [3, "h", "w"]),
        "gray.onnx": _onnx_model(tmp_path / "gray.onnx", [1, 1, "h", "w"]),
        "missing.onnx": tmp_path / "missing.onnx",
    }
    for name, path in cases.items():
        with pytest.raises(MaskDepthError, match=name) as caught:
            OnnxDepthModel(path).check((16, 16))
        assert "\n" not in str(caught.value)
    with pytest.raises(MaskDepthError, match="disparity"):
        OnnxDepthModel(cases["rank.onnx"], DepthInput(output="inverse"))


def test_bad_inputs_fail_fast_with_one_line_naming_the_path(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=2)
    empty = tmp_path / "empty"
    empty.mkdir()
    plain = tmp_path / "plain"
    plain.mkdir()
    write_image(plain / "box.png", _smooth((32, 32, 3)))
    cases = [
        (tmp_path / "nope", fg_dir, "nope: no such folder"),
        (bg_dir, empty, "empty: no images found"),
        (bg_dir, plain, "box.png: no alpha channel.*--white-key"),
    ]
    for bgs, fgs, message in cases:
        with pytest.raises(MaskDepthError, match=message) as caught:
            _run(tmp_path, bgs, fgs)
        assert "\n" not in str(caught.value)
        assert not (tmp_path / "out").exists()  # nothing written


def test_truncated_background_fails_or_is_skipped(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=3)
    broken = bg_dir / "b1.jpg"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 2])
    with pytest.raises(MaskDepthError, match=r"b1\.jpg: unreadable or truncated"):
        _run(tmp_path, bg_dir, fg_dir, workers=2)
    assert not (tmp_path / "out").exists()
    result = _run(tmp_path, bg_dir, fg_dir, skip_bad=True)
    assert result["skipped"] == 1 and result["skipped_paths"] == [str(broken)]
    assert result["backgrounds"] == 2 and result["scenes"] == 2 * 2 * 2 * P
    assert sorted(p.name for p in (tmp_path / "out" / "bg").iterdir()) == ["1.jpg", "2.jpg"]


def test_non_empty_out_is_refused_unless_overwrite(tmp_path):
    bg_dir, fg_dir = _inputs(tmp_path, bgs=1, fgs=1)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(MaskDepthError, match="not empty.*--overwrite"):
        _run(tmp_path, bg_dir, fg_dir)
    assert not (tmp_path / "out" / "fg_bg").exists()
    assert _run(tmp_path, bg_dir, fg_dir, overwrite=True)["scenes"] == 2 * P
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
