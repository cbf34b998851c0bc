"""`compose --depth-model` with the presets of real depth networks: stand-ins with each network's
interface, depth ordering against the network's own output, batching, sizes and errors."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from maskdepth.benchmarks.depth_standins import write_standin
from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image, to_unit, write_image
from maskdepth.train.data.compose import compose
from maskdepth.train.data.depth import OnnxDepthModel
from maskdepth.train.data.depth_presets import IMAGENET_MEAN, IMAGENET_STD, depth_input

SIZE, FG, P = 64, 32, 2
GATE = 0.95  # the item's bar: median rank correlation over scenes, the seed's JPG storage


def _smooth(rng: np.random.Generator, shape: tuple[int, int], channels: int) -> np.ndarray:
    """Colours over the whole 0..255 range that change slowly across the picture."""
    coarse = rng.integers(0, 256, (shape[0] // 8, shape[1] // 8, channels), np.uint8)
    return cv2.resize(coarse, shape[::-1], interpolation=cv2.INTER_CUBIC).reshape(*shape, -1)


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(3)
    bg_dir, fg_dir = tmp_path / "bgs", tmp_path / "fgs"
    bg_dir.mkdir()
    fg_dir.mkdir()
    for i in range(2):
        write_image(bg_dir / f"b{i}.png", _smooth(rng, (SIZE, SIZE), 3))
        alpha = np.zeros((FG, FG), np.uint8)
        cv2.ellipse(alpha, (FG // 2, FG // 2), (FG // 2 - 2, FG // 3), 0, 0, 360, 255, -1)
        write_image(fg_dir / f"f{i}.png", np.dstack([_smooth(rng, (FG, FG), 3), alpha]))
    return bg_dir, fg_dir


def _compose(tmp_path: Path, out: str, model: Path, fmt: str = "jpg", **options) -> Path:
    bg_dir, fg_dir = tmp_path / "bgs", tmp_path / "fgs"
    if not bg_dir.exists():
        _inputs(tmp_path)
    settings = {"size": SIZE, "fg_size": FG, "positions": P, "workers": 1, "progress": False}
    settings |= {"depth_model": model, "image_format": fmt} | options
    compose(tmp_path / out, bg_dir, fg_dir, **settings)
    return tmp_path / out


def _reference(model: Path, preset: str, scene: np.ndarray) -> np.ndarray:
    """The network's own output under its documented pre-processing, as depth order (larger is
    farther), at the scene's size: written out here from the sources, not from the package."""
    rgb = scene.astype(np.float64) / 255
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    if preset == "depth-anything-v2":  # dpt.py image2tensor: cubic to 518, ImageNet mean/std
        x = (
            cv2.resize(rgb, (518, 518), interpolation=cv2.INTER_CUBIC) - IMAGENET_MEAN
        ) / IMAGENET_STD
        feed = x.transpose(2, 0, 1)[None]
    elif preset == "midas-small":  # tf/run_onnx.py: RGB/255 cubic to 256x256, NCHW
        feed = cv2.resize(rgb, (256, 256), interpolation=cv2.INTER_CUBIC).transpose(2, 0, 1)[None]
    else:  # DenseDepth utils.py: 640x480 RGB/255, NHWC; predict(): depth = 1000 / output
        feed = cv2.resize(rgb, (640, 480), interpolation=cv2.INTER_CUBIC)[None]
    (out,) = session.run(None, {session.get_inputs()[0].name: feed.astype(np.float32)})
    out = np.squeeze(out).astype(np.float32)
    depth = 1000 / out if preset == "densedepth" else -out  # disparity: larger is nearer
    return cv2.resize(depth, scene.shape[1::-1], interpolation=cv2.INTER_LINEAR)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties averaged (the stored depth is 8-bit, so ties are many)."""
    flat = values.ravel()
    order = np.argsort(flat, kind="stable")
    ranks = np.empty(flat.size)
    ranks[order] = np.arange(flat.size)
    _, inverse = np.unique(flat, return_inverse=True)
    return (np.bincount(inverse, ranks) / np.bincount(inverse))[inverse]


def _rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(_ranks(a), _ranks(b))[0, 1])


def _median_agreement(tmp_path: Path, jpg: Path, png: Path, model: Path, preset: str) -> float:
    """Median over scenes of the rank correlation between the written (JPG) depth and the
    reference on the exact (PNG) scene."""
    scores = []
    for path in sorted((png / "fg_bg").rglob("*.png")):
        k, n = path.parent.name, path.stem
        depth = to_unit(read_image(jpg / "dense_depth" / k / f"{n}.jpg", "gray"))
        scores.append(_rank_correlation(depth, _reference(model, preset, read_image(path))))
    assert len(scores) == 2 * 2 * 2 * P
    return float(np.median(scores))


# a wrong feed the stand-in must catch: DA without its normalisation, the others with it
_WRONG = {
    "depth-anything-v2": {"depth_preset": "raw", "depth_output": "disparity"},
    "midas-small": {"depth_mean": IMAGENET_MEAN, "depth_std": IMAGENET_STD},
    "densedepth": {"depth_mean": IMAGENET_MEAN, "depth_std": IMAGENET_STD},
}


@pytest.mark.parametrize("preset", ["depth-anything-v2", "midas-small", "densedepth"])
def test_preset_depth_follows_the_networks_own_output(tmp_path, preset):
    model = write_standin(tmp_path / f"{preset}.onnx", preset)
    jpg = _compose(tmp_path, "jpg", model, depth_preset=preset)
    png = _compose(tmp_path, "png", model, fmt="png", depth_preset=preset)  # the exact scenes
    assert _median_agreement(tmp_path, jpg, png, model, preset) >= GATE
    # the test of the test: the same stand-in fed the wrong way scrambles the order
    wrong = _compose(tmp_path, "wrong", model, **({"depth_preset": preset} | _WRONG[preset]))
    assert _median_agreement(tmp_path, wrong, png, model, preset) < 0.7


def test_preset_is_recorded_and_cli_takes_the_overrides(tmp_path, capsys):
    model = write_standin(tmp_path / "da.onnx", "depth-anything-v2", batch="N", size=("h", "w"))
    bg_dir, fg_dir = _inputs(tmp_path)
    args = ["data", "compose", "--backgrounds", bg_dir, "--foregrounds", fg_dir, "--size", SIZE]
    args += ["--positions", 1, "--workers", 1, "--depth-model", model]
    out = tmp_path / "cli"
    code = main([str(a) for a in [*args, "--out", out, "--depth-preset", "depth-anything-v2"]])
    assert code == 0
    depth = json.loads((out / "manifest.json").read_text())["depth"]
    assert depth["source"] == "onnx:da.onnx (disparity)"
    assert depth["input"] == {
        "preset": "depth-anything-v2",
        "size": [518, 518],
        "multiple": 14,
        "keep_aspect": True,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "output": "disparity",
    }
    more = ["--depth-size", 28, 42, "--depth-multiple", 7, "--depth-mean", 0, 0, 0]
    more += ["--depth-std", 1, 1, 1, "--depth-output", "depth", "--depth-batch", 3]
    assert main([str(a) for a in [*args, "--out", tmp_path / "cli2", *more]]) == 0
    record = json.loads((tmp_path / "cli2" / "manifest.json").read_text())["depth"]["input"]
    assert record["size"] == [28, 42] and record["multiple"] == 7 and record["output"] == "depth"
    assert record["mean"] == [0, 0, 0] and record["std"] == [1, 1, 1]
    capsys.readouterr()
    wrong = write_standin(tmp_path / "big.onnx", "depth-anything-v2")
    bad = [*args[:-1], wrong, "--out", tmp_path / "cli3", "--depth-preset", "midas-small"]
    assert main([str(a) for a in bad]) == 2
    err = capsys.readouterr().err.strip()
    assert "big.onnx" in err and "518x518" in err and "256x256" in err and "\n" not in err


def test_run_size_follows_the_reference_resize():
    da = depth_input("depth-anything-v2")
    assert da.run_size((64, 64), None) == (518, 518)
    assert da.run_size((480, 640), None) == (518, 686)  # 518 x 690.7 -> multiple of 14
    assert da.run_size((200, 100), None) == (1036, 518)
    assert da.run_size((64, 64), (518, 518)) == (518, 518)  # a fixed model runs at its size
    with pytest.raises(MaskDepthError, match="--depth-size 252 252"):
        da.run_size((64, 64), (252, 252))
    assert depth_input("depth-anything-v2", size=(252, 252)).run_size((64, 64), (252, 252))
    with pytest.raises(MaskDepthError, match="multiples of 14"):
        depth_input("depth-anything-v2", size=(250, 250)).run_size((64, 64), (250, 250))
    assert depth_input("raw").run_size((64, 48), None) == (64, 48)  # today's: the scene's
    assert depth_input("raw", multiple=14).run_size((64, 48), None) == (70, 42)
    assert depth_input("midas-small").run_size((64, 64), None) == (256, 256)
    assert depth_input("densedepth").run_size((224, 224), None) == (480, 640)


def test_dynamic_batch_gives_the_same_depth_and_a_fixed_batch_is_filled(tmp_path):
    dynamic = write_standin(tmp_path / "n.onnx", "depth-anything-v2", batch="N", size=("h", "w"))
    one = _compose(tmp_path, "one", dynamic, "png", depth_preset="depth-anything-v2", depth_batch=1)
    five = _compose(
        tmp_path, "five", dynamic, "png", depth_preset="depth-anything-v2", depth_batch=5
    )
    fixed = write_standin(tmp_path / "b3.onnx", "depth-anything-v2", batch=3)
    three = _compose(tmp_path, "three", fixed, "png", depth_preset="depth-anything-v2")
    scenes = sorted((one / "dense_depth").rglob("*.png"))
    assert len(scenes) == 16  # 8 per background: neither 5 nor 3 divides it
    for path in scenes:
        relative = path.relative_to(one)
        expected = read_image(path).astype(int)
        assert np.abs(read_image(five / relative).astype(int) - expected).max() <= 1
        assert np.abs(read_image(three / relative).astype(int) - expected).max() <= 1
    model = OnnxDepthModel(fixed, depth_input("depth-anything-v2"), batch=8)
    assert model.batch == 3  # the model's own batch wins
    model.close()
    assert OnnxDepthModel(dynamic, batch=8).batch == 8


def test_models_that_do_not_fit_the_preset_fail_in_one_line(tmp_path):
    midas = write_standin(tmp_path / "midas.onnx", "midas-small")
    da = depth_input("depth-anything-v2")
    cases = [
        (midas, da, "midas.onnx: the model's input is 256x256, not the 518x518"),
        (tmp_path / "missing.onnx", da, "missing.onnx: no such file"),
    ]
    for path, interface, message in cases:
        with pytest.raises(MaskDepthError, match=message) as caught:
            OnnxDepthModel(path, interface).check((SIZE, SIZE))
        assert "\n" not in str(caught.value)
    dense = write_standin(tmp_path / "dense.onnx", "densedepth")  # NHWC, read from its shape
    depth = OnnxDepthModel(dense, depth_input("densedepth"))(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert depth.shape == (SIZE, SIZE)
    for bad in ({"size": (0, 4)}, {"std": (1, 0, 1)}, {"output": "inverse"}):
        with pytest.raises(MaskDepthError, match="--depth|output"):
            depth_input("raw", **bad)
    with pytest.raises(MaskDepthError, match="--depth-preset 'zoe'"):
        depth_input("zoe")
