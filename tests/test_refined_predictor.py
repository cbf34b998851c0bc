"""The Predictor and ``predict --video`` with a real refined model (u2netp-md + guided refiner,
tiny sizes): full-resolution outputs at the frame's size, the frame's aspect kept by padding;
an unrefined model exactly as before."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_predict_cli import _read_video
from test_predictor import rgb

from maskdepth.cli import main
from maskdepth.export.onnx_fp32 import export_graph, save_model
from maskdepth.runtime.model_info import ModelInfo, RefineInfo
from maskdepth.runtime.predictor import Predictor
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair, resize_map
from maskdepth.runtime.refine_layout import Layout, layout, pad_planes, prepare_padded
from maskdepth.train.models import create_model

BASE = (32, 64)  # 1:2
REFINE = RefineInfo("guided", base_size=BASE, min_size=BASE, max_size=(256, 512))
PRE = Preprocessing(size=(128, 256))


@pytest.fixture(scope="module")
def refined(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("u2netp-md", refine="guided").eval()
    with torch.no_grad():
        for p in model.refiner.parameters():
            p.normal_(std=0.1)
    info = ModelInfo("u2netp-md", PRE, refine=REFINE)
    return save_model(export_graph(model, info, 17), tmp_path_factory.mktemp("m") / "r.onnx")


def test_layout_pads_to_the_base_aspect_and_fits_the_range():
    assert layout((144, 256), REFINE) == Layout(content=(144, 256), feed=(144, 288))  # 16:9
    assert layout((100, 400), REFINE) == Layout(content=(100, 400), feed=(200, 400))  # 1:4
    big = layout((720, 1280), REFINE)  # padded 720x1440, scaled by 512/1440 into the range
    assert big == Layout(content=(256, 455), feed=(256, 512))
    assert layout((16, 32), REFINE) == Layout(content=(32, 64), feed=(32, 64))  # grows to min
    planes = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3)
    padded = pad_planes(planes, (3, 5))
    np.testing.assert_array_equal(padded[:, :2, :3], planes)
    np.testing.assert_array_equal(padded[:, 2, :3], planes[:, 1])  # the last row repeated
    np.testing.assert_array_equal(padded[:, :, 3:], padded[:, :, 2:3].repeat(2, axis=2))


@pytest.mark.slow
@pytest.mark.parametrize("frame", [(144, 256), (288, 512)])  # 16:9 in range, and above it
def test_a_16_9_frame_runs_padded_at_full_resolution_and_comes_back_at_its_size(refined, frame):
    bg, scene = rgb(1, *frame), rgb(2, *frame)
    scene[40:80, 60:120] = 255  # something new
    with Predictor(refined, device="cpu") as predictor:
        assert predictor.info.refine == REFINE
        result = predictor.predict(scene, bg=bg)
        predictor.set_background(bg)
        fixed = predictor.predict(scene)
    assert result.mask.shape == result.depth.shape == frame
    np.testing.assert_array_equal(fixed.mask, result.mask)
    # the same by hand: both padded by replicating their edge, run, cropped, resized back
    place = layout(frame, REFINE)
    feed = {
        "bg": prepare_padded(bg, frame, PRE, REFINE)[None],
        "scene": prepare_padded(scene, None, PRE, REFINE)[None],
    }
    assert feed["bg"].shape[-2:] == place.feed != place.content
    rows, cols = place.content
    np.testing.assert_array_equal(feed["bg"][..., rows:, :], feed["bg"][..., rows - 1 : rows, :]
                                  .repeat(place.feed[0] - rows, axis=-2))  # fmt: skip
    np.testing.assert_array_equal(feed["scene"][..., :, cols:], feed["scene"][..., :, cols - 1 :
                                  cols].repeat(place.feed[1] - cols, axis=-1))  # fmt: skip
    session = ort.InferenceSession(str(refined), providers=["CPUExecutionProvider"])
    mask, depth = session.run(None, feed)
    for got, raw in ((result.mask, mask), (result.depth, depth)):
        want = np.clip(resize_map(raw[0, 0, :rows, :cols], frame), 0, 1)
        np.testing.assert_allclose(got, want, atol=1e-6)


@pytest.mark.slow
def test_an_unrefined_models_predictor_gives_todays_numbers_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    info = ModelInfo("u2netp-md", Preprocessing(size=(32, 64)))
    path = save_model(export_graph(create_model("u2netp-md").eval(), info, 17), tmp_path / "m.onnx")
    bg, scene = rgb(3, 45, 80), rgb(4, 45, 80)
    with Predictor(path, device="cpu") as predictor:
        assert predictor.info.refine is None
        result = predictor.predict(scene, bg=bg)
    # today's path: both resized to the model's size (squashed), run, resized back, clipped
    x = prepare_pair(bg, scene, info.preprocessing)[None]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mask, depth = session.run(None, {"bg": x[:, :3].copy(), "scene": x[:, 3:].copy()})
    np.testing.assert_array_equal(result.mask, np.clip(resize_map(mask[0, 0], (45, 80)), 0, 1))
    np.testing.assert_array_equal(result.depth, np.clip(resize_map(depth[0, 0], (45, 80)), 0, 1))


@pytest.mark.slow
def test_predict_video_with_a_refined_model_writes_full_resolution_frames(refined, tmp_path):
    height, width = 72, 128  # 16:9
    bg = rgb(1, height, width)
    cv2.imwrite(str(tmp_path / "bg.png"), bg[..., ::-1])
    source = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for i in range(4):
        writer.write(rgb(20 + i, height, width))
    writer.release()
    out = tmp_path / "out"
    args = ["predict", str(refined), "--bg", str(tmp_path / "bg.png"), "--video", str(source),
            "--out", str(out), "--save", "mask", "--quiet"]  # fmt: skip
    assert main(args) == 0
    frames = _read_video(out / "clip" / "clip.mp4")
    assert len(frames) == 4 and frames[0].shape == (height, 2 * width, 3)  # overlay | depth
    masks = sorted((out / "clip" / "mask").iterdir())
    assert len(masks) == 4
    assert cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE).shape == (height, width)
    assert json.loads((out / "summary.json").read_text())["sources"]["clip"]["processed"] == 4
