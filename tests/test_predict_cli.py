"""`maskdepth predict`: one image, a folder, a video (the stream loop with a frozen background);
what it writes; one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from test_predictor import rgb, tiny_expected, write_tiny_model

from maskdepth.cli import main
from maskdepth.runtime import MaskDepthError
from maskdepth.runtime.image import from_unit, read_image, write_image
from maskdepth.runtime.outputs import output_names, parse_save, write_video


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def images(tmp_path) -> dict:
    """A background and three lossless scenes of the same camera in a folder with the bg."""
    folder = tmp_path / "scenes"
    folder.mkdir()
    bg = rgb(1, 30, 40)
    write_image(folder / "bg.png", bg)
    scenes = {}
    for i in range(3):
        scenes[f"s{i}"] = rgb(10 + i, 30, 40)
        write_image(folder / f"s{i}.png", scenes[f"s{i}"])
    return {"folder": folder, "bg": bg, "bg_path": folder / "bg.png", "scenes": scenes}


def _predict(model, *args) -> int:
    return main(["predict", str(model), *map(str, args), "--quiet"])


def test_one_scene_writes_mask_depth_and_overlay(model, images, tmp_path, capsys):
    out = tmp_path / "out"
    scene = images["scenes"]["s1"]
    assert _predict(model, "--bg", images["bg_path"], "--scene", images["folder"] / "s1.png",
                    "--out", out) == 0  # fmt: skip
    assert "wrote 1 scenes" in capsys.readouterr().out
    mask, depth = tiny_expected(images["bg"], scene)
    saved_mask = read_image(out / "mask" / "s1.png", "gray")
    np.testing.assert_array_equal(saved_mask, np.where(mask > 0.5, 255, 0))
    saved_depth = read_image(out / "depth" / "s1.png", "gray")
    assert saved_depth.dtype == np.uint16  # 16-bit: depth keeps its precision
    assert np.abs(saved_depth.astype(np.int64) - from_unit(depth, 16)).max() <= 2
    overlay = read_image(out / "overlay" / "s1.png")
    assert overlay.shape == scene.shape
    assert sorted(p.name for p in out.iterdir()) == ["depth", "mask", "overlay"]


def test_a_folder_skips_the_bg_in_it_and_honours_save_and_threshold(model, images, tmp_path):
    out = tmp_path / "out"
    options = ["--save", "mask,colormap", "--threshold", "none", "--batch", "2"]
    assert _predict(model, "--bg", images["bg_path"], "--scenes", images["folder"], "--out", out,
                    *options) == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == ["colormap", "mask"]
    assert sorted(p.name for p in (out / "mask").iterdir()) == ["s0.png", "s1.png", "s2.png"]
    for name, scene in images["scenes"].items():
        mask, _ = tiny_expected(images["bg"], scene)
        saved = read_image(out / "mask" / f"{name}.png", "gray")  # probabilities, 8 bit
        assert np.abs(saved.astype(int) - from_unit(mask)).max() <= 1
        assert len(np.unique(saved)) > 2
    assert not list(out.rglob(".*"))  # no temporary files left


def _clip(tmp_path, name="clip.mp4", frames=6) -> Path:
    bg = rgb(1, 48, 64)
    write_image(tmp_path / "bg.png", bg)
    source = tmp_path / name
    writer = cv2.VideoWriter(str(source), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    for i in range(frames):
        writer.write(rgb(20 + i, 48, 64))
    writer.release()
    return source


def _read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (frame := capture.read())[0]:
        frames.append(frame[1])
    capture.release()
    return frames


def test_a_video_runs_the_stream_loop_with_a_frozen_background(model, tmp_path, capsys):
    source = _clip(tmp_path)
    out = tmp_path / "out"
    assert _predict(model, "--bg", tmp_path / "bg.png", "--video", source, "--out", out,
                    "--batch", "4") == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "(6 frames)" in printed and str(out / "clip" / "clip.mp4") in printed
    assert sorted(p.name for p in out.iterdir()) == ["clip", "summary.json"]
    assert sorted(p.name for p in (out / "clip").iterdir()) == ["clip.mp4", "events.jsonl"]
    frames = _read_video(out / "clip" / "clip.mp4")
    assert len(frames) == 6
    assert frames[0].shape == (48, 128, 3)  # overlay | depth colour map
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bg_update"] == "none" and summary["batch"] == 4
    counts = summary["sources"]["clip"]
    assert (counts["processed"], counts["dropped"], counts["bg_updates"]) == (6, 0, 0)
    lines = (out / "clip" / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["frame"] for line in lines] == list(range(6))
    # with --save, the frames' pictures too, as the stream names them; the threshold is kept
    out2 = tmp_path / "out2"
    assert _predict(model, "--bg", tmp_path / "bg.png", "--video", source, "--out", out2,
                    "--save", "mask", "--threshold", "0.9") == 0  # fmt: skip
    masks = sorted(p.name for p in (out2 / "clip" / "mask").iterdir())
    assert masks == [f"{i:06d}.png" for i in range(6)]
    decoded = _read_video(source)  # the frames as the loop saw them (mp4 is lossy)
    for i in (0, 5):
        expected, _ = tiny_expected(rgb(1, 48, 64), decoded[i][..., ::-1])
        saved = read_image(out2 / "clip" / "mask" / f"{i:06d}.png", "gray")
        np.testing.assert_array_equal(saved, np.where(expected > 0.9, 255, 0))


def test_a_video_whose_stem_has_a_space_or_an_equals_sign(model, tmp_path, capsys):
    source = _clip(tmp_path, "door=1 a.mp4", frames=3)
    out = tmp_path / "out"
    assert _predict(model, "--bg", tmp_path / "bg.png", "--video", source, "--out", out) == 0
    assert len(_read_video(out / "door=1 a" / "door=1 a.mp4")) == 3


def test_written_video_is_all_or_nothing(tmp_path):
    target = tmp_path / "v.mp4"

    def broken():
        yield np.zeros((16, 16, 3), np.uint8)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_video(target, broken(), 10.0)
    assert list(tmp_path.iterdir()) == []
    assert write_video(target, iter([]), 10.0) == 0
    assert list(tmp_path.iterdir()) == []
    assert write_video(target, (np.zeros((16, 16, 3), np.uint8) for _ in range(3)), 10.0) == 3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]


def test_save_kinds_and_output_names():
    assert parse_save("mask, depth,mask") == ("mask", "depth")
    assert parse_save("") == ()
    with pytest.raises(MaskDepthError, match="unknown masks"):
        parse_save("masks")
    paths = [Path("a.jpg"), Path("a.png"), Path("b.png")]
    assert output_names(paths) == ["a.jpg", "a.png", "b"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--bg", "{bg}", "--scene", "{dir}/absent.png"], "absent.png: no such image file"),
        (["--bg", "{dir}/nobg.png", "--scene", "{dir}/s0.png"], "nobg.png: no such image file"),
        (["--bg", "{bg}", "--scene", "{dir}/s0.png", "--save", "x"], "--save x: unknown x"),
        (["--bg", "{bg}", "--scenes", "{dir}/empty"], "empty: no images"),
        (["--bg", "{bg}", "--scenes", "{dir}/absent"], "absent: no such folder"),
        (["--bg", "{bg}", "--video", "{dir}/junk.mp4"], "OpenCV cannot open"),
        (["--bg", "{bg}", "--video", "{dir}/s0.png", "--threshold", "none"], "needs a number"),
        (["--bg", "{bg}", "--video", "{dir}/absent.mp4"], "absent.mp4: no such video file"),
    ],
)
def test_errors_are_one_line_and_exit_2(model, images, tmp_path, capsys, args, message):
    (images["folder"] / "empty").mkdir()
    (images["folder"] / "junk.mp4").write_bytes(b"not a video at all" * 10)
    args = [a.format(bg=images["bg_path"], dir=images["folder"]) for a in args]
    assert _predict(model, *args, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("maskdepth predict: error:")
    assert message in err[0]


def test_a_model_that_is_missing_is_one_line_from_the_shell(images, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "maskdepth", "predict", str(tmp_path / "absent.onnx"),
         "--bg", str(images["bg_path"]), "--scene", str(images["bg_path"]),
         "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip() == f"maskdepth predict: error: {tmp_path / 'absent.onnx'}: " + (
        "no such model file"
    )


def test_bad_numbers_are_refused_by_the_parser(model, images, tmp_path, capsys):
    common = ["--bg", images["bg_path"], "--scene", images["bg_path"], "--out", tmp_path / "o"]
    for extra in (["--threshold", "2"], ["--threshold", "x"], ["--batch", "0"]):
        with pytest.raises(SystemExit) as stop:
            _predict(model, *common, *extra)
        assert stop.value.code == 2
    assert "expected a number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _predict(model, "--bg", images["bg_path"], "--out", tmp_path / "o")  # no scenes
