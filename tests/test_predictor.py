"""The runtime Predictor: every call, input kind and error, the device it reports, no torch on
import, thread safety, constant memory, and parity with the PyTorch model."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from maskdepth.runtime import MaskDepthError, Prediction, Predictor
from maskdepth.runtime.compare import DiffAccumulator
from maskdepth.runtime.image import encode_image, write_image
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.preprocess import Preprocessing, prepare_pair, resize_image, resize_map
from maskdepth.runtime.runners.cuda import GpuInfo
from maskdepth.runtime.runners.ort import (
    OnnxRuntimeRunner,
    _precision_of,
    fallback_problem,
    ort,
    wanted_gpu_providers,
)
from maskdepth.runtime.visualize import depth_colormap, mask_overlay

TINY_SIZE = (16, 24)  # (height, width): not square, so a swapped axis shows
TINY_PRE = Preprocessing(size=TINY_SIZE, mean=(0.5,) * 6, std=(0.25,) * 6)


def tiny_graph(batch="batch", metadata: ModelInfo | None = None) -> onnx.ModelProto:
    """A tiny stand-in for the network with the same inputs and outputs, whose answer is known:
    mask = sigmoid(channel mean of scene - bg), depth = sigmoid(channel mean of scene)."""
    shape = [batch, 3, *TINY_SIZE]
    out_shape = [batch, 1, *TINY_SIZE]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in ("bg", "scene")]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, out_shape) for n in ("mask", "depth")
    ]
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Sub", ["scene", "bg"], ["diff"]),
        helper.make_node("ReduceMean", ["diff", "axes"], ["diff_mean"], keepdims=1),
        helper.make_node("Sigmoid", ["diff_mean"], ["mask"]),
        helper.make_node("ReduceMean", ["scene", "axes"], ["scene_mean"], keepdims=1),
        helper.make_node("Sigmoid", ["scene_mean"], ["depth"]),
    ]
    graph = helper.make_graph(nodes, "tiny", inputs, outputs, initializer=[axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (metadata.to_props() if metadata else {}).items():
        model.metadata_props.add(key=key, value=value)
    return model


def write_tiny_model(path: Path, precision: str = "fp32", depth_scale_m=5.0, batch="batch"):
    info = ModelInfo("tiny", TINY_PRE, precision=precision, depth_scale_m=depth_scale_m)
    onnx.save(tiny_graph(batch, info), str(path))
    return path


def tiny_expected(bg: np.ndarray, scene: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the tiny model must give for RGB uint8 bg and scene, at the scene's size."""
    x = prepare_pair(bg, scene, TINY_PRE).astype(np.float64)
    sigmoid = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    mask = sigmoid((x[3:] - x[:3]).mean(0)).astype(np.float32)
    depth = sigmoid(x[3:].mean(0)).astype(np.float32)
    size = scene.shape[:2]
    return resize_map(mask, size), resize_map(depth, size)


def rgb(seed: int, height: int = 30, width: int = 40) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="module")
def predictor(tiny) -> Predictor:
    with Predictor(tiny, device="cpu") as p:
        yield p


def assert_result(result: Prediction, bg, scene, atol=2e-6):
    mask, depth = tiny_expected(bg, scene)
    assert result.mask.dtype == np.float32 and result.depth.dtype == np.float32
    assert result.mask.shape == scene.shape[:2] == result.depth.shape
    np.testing.assert_allclose(result.mask, mask, atol=atol)
    np.testing.assert_allclose(result.depth, depth, atol=atol)


# ------------------------------------------------------------------------------ predict


def test_predict_arrays_gives_the_models_answer_at_the_scenes_size(predictor):
    bg, scene = rgb(1), rgb(2)
    result = predictor.predict(scene, bg=bg)
    assert_result(result, bg, scene)
    assert 0 < result.mask.min() < result.mask.max() < 1  # varies over the image
    # another scene gives another answer (the inputs reach the model)
    assert np.abs(predictor.predict(rgb(3), bg=bg).mask - result.mask).max() > 0.01


def test_model_description_and_device(predictor):
    assert predictor.info.model == "tiny" and predictor.size == TINY_SIZE
    assert predictor.info.preprocessing == TINY_PRE
    assert predictor.device == "cpu" and predictor.provider == "CPUExecutionProvider"
    assert "tiny fp32 16x24 on cpu via CPUExecutionProvider" in repr(predictor)


def test_paths_bytes_and_arrays_give_the_same_result(predictor, tmp_path):
    bg, scene = rgb(4), rgb(5)
    write_image(tmp_path / "bg.png", bg)
    write_image(tmp_path / "scene.png", scene)
    reference = predictor.predict(scene, bg=bg)
    for pair in [
        (tmp_path / "bg.png", tmp_path / "scene.png"),
        (str(tmp_path / "bg.png"), str(tmp_path / "scene.png")),
        (encode_image(bg, ".png"), encode_image(scene, ".png")),
    ]:
        result = predictor.predict(pair[1], bg=pair[0])
        np.testing.assert_array_equal(result.mask, reference.mask)
        np.testing.assert_array_equal(result.depth, reference.depth)
        np.testing.assert_array_equal(result.scene, scene)


def test_grayscale_and_rgba_are_converted(predictor):
    bg = rgb(6)
    gray = rgb(7)[:, :, 0]
    as_color = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_array_equal(
        predictor.predict(gray, bg=bg).mask, predictor.predict(as_color, bg=bg).mask
    )
    np.testing.assert_array_equal(
        predictor.predict(gray[:, :, None], bg=bg).mask, predictor.predict(as_color, bg=bg).mask
    )
    scene = rgb(8)
    rgba = np.dstack([scene, np.full(scene.shape[:2], 77, np.uint8)])
    np.testing.assert_array_equal(
        predictor.predict(rgba, bg=rgba).depth, predictor.predict(scene, bg=scene).depth
    )
    # a non-contiguous view (BGR -> RGB by slicing) works too
    np.testing.assert_array_equal(
        predictor.predict(scene[:, :, ::-1], bg=bg).mask,
        predictor.predict(np.ascontiguousarray(scene[:, :, ::-1]), bg=bg).mask,
    )


def test_a_bg_of_another_size_is_resized_to_the_scene(predictor):
    big_bg, scene = rgb(9, 90, 120), rgb(10, 30, 40)
    result = predictor.predict(scene, bg=big_bg)
    same = predictor.predict(scene, bg=resize_image(big_bg, scene.shape[:2]))
    np.testing.assert_allclose(result.mask, same.mask, atol=1e-6)
    assert_result(result, big_bg, scene)


def test_scenes_of_any_size_come_back_at_their_size(predictor):
    bg = rgb(11)
    for height, width in [(16, 24), (7, 300), (200, 50)]:
        scene = rgb(12, height, width)
        assert_result(predictor.predict(scene, bg=bg), bg, scene)


# ------------------------------------------------------------------------------ background


@pytest.fixture
def count_bg_preparations(monkeypatch):
    import maskdepth.runtime.framing as module

    calls = []
    original = module.prepare_background

    def counting(bg, scene_size, pre, out=None):
        calls.append(tuple(scene_size))
        return original(bg, scene_size, pre, out)

    monkeypatch.setattr(module, "prepare_background", counting)
    return calls


def test_set_background_prepares_it_once_per_scene_size(tiny, count_bg_preparations):
    predictor = Predictor(tiny, device="cpu")
    bg = rgb(13)
    predictor.set_background(bg)
    assert count_bg_preparations == []
    scenes = [rgb(20 + i) for i in range(4)]
    for scene in scenes:
        result = predictor.predict(scene)
        assert_result(result, bg, scene)
        np.testing.assert_array_equal(result.mask, predictor.predict(scene, bg=bg).mask)
    assert count_bg_preparations.count((30, 40)) == 1 + len(scenes)  # once + once per explicit
    other = rgb(30, 50, 60)
    assert_result(predictor.predict(other), bg, other)
    for result, scene in zip(predictor.predict_batch(scenes + [other], batch_size=3), scenes):
        assert_result(result, bg, scene)
    assert count_bg_preparations.count((50, 60)) == 1  # cached per size, batches included
    assert count_bg_preparations.count((30, 40)) == 1 + len(scenes)


def test_predict_without_a_background_says_what_to_do(tiny):
    predictor = Predictor(tiny, device="cpu")
    with pytest.raises(MaskDepthError, match="set_background"):
        predictor.predict(rgb(1))
    with pytest.raises(MaskDepthError, match="set_background"):
        list(predictor.predict_batch([rgb(1)]))
    predictor.set_background(rgb(2))
    predictor.predict(rgb(1))
    predictor.set_background(None)
    with pytest.raises(MaskDepthError, match="set_background"):
        predictor.predict(scene=rgb(1))
    with pytest.raises(MaskDepthError, match="no scene"):
        predictor.predict(None)


# ------------------------------------------------------------------------------ batches


def test_predict_batch_streams_in_order(predictor):
    bg = rgb(40)
    scenes = [rgb(41 + i, 30 + 5 * (i % 3), 40) for i in range(7)]  # mixed sizes in a batch
    taken = []

    def lazily():
        for scene in scenes:
            taken.append(1)
            yield scene

    results = predictor.predict_batch(lazily(), bgs=bg, batch_size=3)
    assert taken == []  # nothing read before the first result is asked for
    first = next(results)
    assert len(taken) == 3  # one batch read, not the whole list
    assert_result(first, bg, scenes[0])
    rest = list(results)
    assert len(rest) == 6
    for result, scene in zip(rest, scenes[1:]):
        assert_result(result, bg, scene)


def test_predict_batch_one_bg_per_scene_and_batch_sizes_agree(predictor):
    bgs = [rgb(50 + i) for i in range(5)]
    scenes = [rgb(60 + i) for i in range(5)]
    one_by_one = [predictor.predict(s, bg=b) for b, s in zip(bgs, scenes)]
    for batch_size in (1, 2, 5, 8):
        batched = list(predictor.predict_batch(scenes, bgs=bgs, batch_size=batch_size))
        for a, b in zip(batched, one_by_one):
            np.testing.assert_allclose(a.mask, b.mask, atol=1e-6)
            np.testing.assert_allclose(a.depth, b.depth, atol=1e-6)
    # a 4-D array of scenes is a list of scenes
    stacked = list(predictor.predict_batch(np.stack(scenes), bgs=bgs[0], batch_size=2))
    assert_result(stacked[4], bgs[0], scenes[4])


def test_predict_batch_errors(predictor, tmp_path):
    bgs, scenes = [rgb(1), rgb(2)], [rgb(3), rgb(4), rgb(5)]
    with pytest.raises(MaskDepthError, match="more scenes than backgrounds"):
        list(predictor.predict_batch(scenes, bgs=bgs))
    with pytest.raises(MaskDepthError, match="more backgrounds than scenes"):
        list(predictor.predict_batch(bgs, bgs=scenes))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(MaskDepthError, match="batch_size"):
            predictor.predict_batch(scenes, bgs=rgb(1), batch_size=bad)  # at the call, not later
    with pytest.raises(MaskDepthError, match="for one scene use predict"):
        predictor.predict_batch(rgb(2), bgs=rgb(1))
    with pytest.raises(MaskDepthError, match=r"scenes\[1\]: expected dtype uint8"):
        list(predictor.predict_batch([rgb(2), rgb(3).astype(np.float32)], bgs=rgb(1)))
    with pytest.raises(FileNotFoundError, match="absent.png"):
        list(predictor.predict_batch([tmp_path / "absent.png"], bgs=rgb(1)))


def test_a_fixed_batch_model_is_fed_whole_batches(tmp_path):
    path = write_tiny_model(tmp_path / "fixed.onnx", batch=4)
    predictor = Predictor(path, device="cpu")
    bg = rgb(70)
    scenes = [rgb(71 + i) for i in range(6)]
    results = list(predictor.predict_batch(scenes, bgs=bg, batch_size=16))
    assert len(results) == 6
    for result, scene in zip(results, scenes):
        assert_result(result, bg, scene)
    assert_result(predictor.predict(scenes[0], bg=bg), bg, scenes[0])


# ------------------------------------------------------------------------------ results


def test_prediction_helpers(predictor):
    bg, scene = rgb(80), rgb(81)
    result = predictor.predict(scene, bg=bg)
    threshold = float(np.median(result.mask))
    binary = result.binary(threshold)
    assert binary.dtype == bool and binary.shape == scene.shape[:2]
    np.testing.assert_array_equal(binary, result.mask > threshold)
    assert 0 < binary.mean() < 1
    assert not result.binary(1.0).any() and result.binary(0.0).all()
    with pytest.raises(MaskDepthError, match="threshold"):
        result.binary(1.5)
    overlay = result.overlay()
    assert overlay.dtype == np.uint8 and overlay.shape == scene.shape
    np.testing.assert_array_equal(overlay, mask_overlay(scene, result.mask))
    np.testing.assert_array_equal(result.depth_colormap(), depth_colormap(result.depth))
    np.testing.assert_allclose(result.depth_metres, result.depth * 5.0, rtol=1e-6)


def test_depth_metres_is_none_without_a_scale(tmp_path):
    path = write_tiny_model(tmp_path / "noscale.onnx", depth_scale_m=None)
    result = Predictor(path, device="cpu").predict(rgb(2), bg=rgb(1))
    assert result.depth_metres is None


# ------------------------------------------------------------------------------ input errors


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((30, 40, 3), np.float32), "scene: expected dtype uint8, got float32"),
        (np.zeros((30, 40, 2), np.uint8), r"scene: expected HxW, HxWx3 or HxWx4, got shape"),
        (np.zeros((0, 40, 3), np.uint8), "scene: empty array"),
        (np.zeros(5, np.uint8), "scene: expected HxW"),
        ([[1, 2], [3, 4]], "scene: expected a numpy array, got list"),
        (b"not an image", "scene: unreadable or truncated image"),
        (b"", "scene: empty file"),
    ],
)
def test_bad_scenes_raise_a_clear_value_error(predictor, bad, message):
    with pytest.raises(ValueError, match=message):
        predictor.predict(bad, bg=rgb(1))


def test_bad_bg_and_files_name_the_problem(predictor, tmp_path):
    with pytest.raises(MaskDepthError, match="bg: expected dtype uint8, got int64"):
        predictor.predict(rgb(1), bg=np.zeros((4, 4, 3), np.int64))
    with pytest.raises(FileNotFoundError, match="absent.jpg"):
        predictor.predict(rgb(1), bg=tmp_path / "absent.jpg")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MaskDepthError, match="broken.png: unreadable"):
        predictor.predict(broken, bg=rgb(1))
    with pytest.raises(MaskDepthError, match="bg: expected dtype uint8"):
        predictor.set_background(np.zeros((4, 4), np.float64))


# ------------------------------------------------------------------------------ model errors


def test_model_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.onnx"):
        Predictor(tmp_path / "absent.onnx")
    bare = tmp_path / "bare.onnx"
    onnx.save(tiny_graph(), str(bare))
    with pytest.raises(MaskDepthError, match="bare.onnx: no maskdepth metadata"):
        Predictor(bare, device="cpu")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(MaskDepthError, match="junk.onnx: onnxruntime cannot load it"):
        Predictor(junk, device="cpu")
    model = write_tiny_model(tmp_path / "m.onnx")
    with pytest.raises(MaskDepthError, match="backend 'torch'"):
        Predictor(model, backend="torch")
    with pytest.raises(MaskDepthError, match="tensorrt backend runs engines"):
        Predictor(model, backend="tensorrt")
    with pytest.raises(MaskDepthError, match="device 'gpu'"):
        Predictor(model, device="gpu")
    with pytest.raises(MaskDepthError, match="runs on a CUDA GPU"):
        Predictor(model, device="cpu", backend="onnxruntime-tensorrt")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan")
    with pytest.raises(MaskDepthError, match="runs on a CUDA GPU only"):
        Predictor(engine, device="cpu")
    with pytest.raises(MaskDepthError, match="needs backend 'tensorrt'"):
        Predictor(engine, backend="onnxruntime")
    with pytest.raises(MaskDepthError, match="no sidecar m.engine.json"):
        Predictor(engine)  # checked before TensorRT is even imported


def test_closed_predictor_refuses_to_run(tiny):
    with Predictor(tiny, device="cpu") as predictor:
        predictor.predict(rgb(2), bg=rgb(1))
    with pytest.raises(MaskDepthError, match="activate"):
        predictor.predict(rgb(2), bg=rgb(1))


# ------------------------------------------------------------------------------ runner


@pytest.mark.skipif(
    "CUDAExecutionProvider" in ort.get_available_providers(), reason="this machine has CUDA"
)
def test_asking_for_cuda_without_it_is_one_clear_error(tiny):
    with pytest.raises(MaskDepthError, match="asked for device 'cuda'.*runs it on CPUExecution"):
        Predictor(tiny, device="cuda")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" without a GPU is no surprise: no warning
        assert Predictor(tiny, device="auto").device == "cpu"


GPU_BUILD = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
CPU_BUILD = ["CPUExecutionProvider"]


A100 = GpuInfo(0, "NVIDIA A100-SXM4-40GB", "8.0")  # the GPU fact, injected


@pytest.mark.parametrize(
    "requested, tensorrt, available, wanted",
    [
        ("cpu", False, GPU_BUILD, []),
        ("auto", False, CPU_BUILD, []),  # a CPU-only build: nothing to ask for, no warning
        ("auto", False, GPU_BUILD, ["CUDAExecutionProvider"]),
        ("cuda", False, CPU_BUILD, ["CUDAExecutionProvider"]),  # asked: its absence is news
        ("auto", True, GPU_BUILD, ["TensorrtExecutionProvider", "CUDAExecutionProvider"]),
    ],
)
def test_gpu_provider_choice_from_the_providers_onnxruntime_has(
    requested, tensorrt, available, wanted
):
    assert wanted_gpu_providers(requested, tensorrt, available, A100) == wanted


def test_fallback_problems_name_the_cause_and_the_fix():
    cuda = ["CUDAExecutionProvider"]
    assert fallback_problem("auto", cuda, set(GPU_BUILD), cuda + CPU_BUILD) is None
    absent = fallback_problem("cuda", cuda, set(CPU_BUILD), CPU_BUILD)
    assert "no CUDAExecutionProvider (it has CPUExecutionProvider)" in absent
    assert "pip install 'maskdepth[gpu]'" in absent and "device 'cpu'" in absent
    failed = fallback_problem("auto", cuda, set(GPU_BUILD), CPU_BUILD)
    assert "runs it on CPUExecutionProvider" in failed and "cuDNN" in failed
    trt = fallback_problem("auto", GPU_BUILD[:2], set(GPU_BUILD), GPU_BUILD[1:])
    assert "TensorRT provider did not start" in trt


def test_auto_whose_gpu_provider_fails_warns_loudly_once(tiny, capfd):
    """onnxruntime-gpu on a machine whose CUDA libraries are missing: the session runs on the
    CPU. Shown with the real runner by asking for a provider that cannot start here."""
    runner = OnnxRuntimeRunner(tiny, device="auto")
    runner.requested_device, wanted = "auto", ["CUDAExecutionProvider"]
    with pytest.warns(RuntimeWarning, match="asked for device 'auto'.*runs it on CPUExecution"):
        runner._warn_if_fallen_back(wanted, set(GPU_BUILD), CPU_BUILD)
    assert capfd.readouterr().err.count("maskdepth: WARNING:") == 1


def test_runner_keeps_its_old_constructor_and_exposes_metadata(tiny):
    with OnnxRuntimeRunner(tiny.read_bytes(), threads=None) as runner:
        assert runner.device == "cpu" and runner.provider == "CPUExecutionProvider"
        assert runner.metadata["maskdepth.model"] == "tiny"
        assert ModelInfo.from_props(runner.metadata).preprocessing == TINY_PRE
        feed = {n: np.ones((2, 3, *TINY_SIZE), np.float32) for n in ("bg", "scene")}
        out = runner.infer(feed)
        np.testing.assert_allclose(out["mask"], 0.5)
        assert runner.last_inference_time > 0
    with pytest.raises(FileNotFoundError):
        OnnxRuntimeRunner(tiny.parent / "absent.onnx")
    with pytest.raises(MaskDepthError, match="threads"):
        OnnxRuntimeRunner(tiny, threads=0)


def test_io_binding_path_gives_the_same_outputs(tiny):
    rng = np.random.default_rng(0)
    feed = {n: rng.normal(size=(3, 3, *TINY_SIZE)).astype(np.float32) for n in ("bg", "scene")}
    with OnnxRuntimeRunner(tiny) as plain, OnnxRuntimeRunner(tiny, io_binding=True) as bound:
        expected = plain.infer(feed)
        on_device = dict(feed, bg=bound.to_device(feed["bg"]))
        assert isinstance(plain.to_device(feed["bg"]), np.ndarray)  # CPU: nothing to upload
        got = bound.infer(on_device)
        got_ortvalue = bound.infer(dict(feed, bg=ort.OrtValue.ortvalue_from_numpy(feed["bg"])))
    for name in ("mask", "depth"):
        np.testing.assert_array_equal(got[name], expected[name])
        np.testing.assert_array_equal(got_ortvalue[name], expected[name])


def test_precision_is_read_from_the_file_without_a_session(tmp_path):
    for precision in ("fp32", "fp16", "int8"):
        path = write_tiny_model(tmp_path / f"{precision}.onnx", precision=precision)
        assert _precision_of(str(path)) == precision
        assert _precision_of(path.read_bytes()) == precision
    bare = tmp_path / "bare.onnx"
    onnx.save(tiny_graph(), str(bare))
    assert _precision_of(str(bare)) == "fp32"
    assert _precision_of(b"\x08\x09\x12") == "fp32"  # truncated: no crash


# ------------------------------------------------------------------------------ lean import


def test_runtime_and_a_prediction_import_no_torch(tiny):
    code = (
        "import sys, numpy as np\n"
        "import maskdepth.runtime as r\n"
        "assert 'onnxruntime' not in sys.modules, 'onnxruntime at import'\n"
        f"p = r.Predictor({str(tiny)!r}, device='cpu')\n"
        "img = np.zeros((20, 20, 3), np.uint8)\n"
        "out = p.predict(img, bg=img)\n"
        "p.set_background(img)\n"
        "list(p.predict_batch([img, img], batch_size=2))\n"
        "out.overlay(); out.depth_colormap(); out.binary()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'onnx'))\n"
        "print(out.mask.shape, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "(20, 20) []"


# ------------------------------------------------------------------------------ threads, memory


def test_eight_threads_give_the_same_results_as_one(u2net):
    predictor = Predictor(u2net["path"], device="cpu", threads=1)
    bg = rgb(90, 64, 64)
    predictor.set_background(bg)
    scenes = [rgb(100 + i, 64 - 8 * (i % 2), 64) for i in range(16)]
    expected = [predictor.predict(scene) for scene in scenes]
    got: dict[int, list] = {}
    errors = []
    start = threading.Barrier(8)

    def work(worker: int) -> None:
        try:
            start.wait()
            mine = scenes[worker::8] + scenes[(worker + 1) % 8 :: 8]
            single = [predictor.predict(scene) for scene in mine]
            batched = list(predictor.predict_batch(mine, batch_size=2))
            explicit = [predictor.predict(scene, bg=bg) for scene in mine[:1]]
            got[worker] = [mine, single, batched, explicit]
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    index = {id(scene): i for i, scene in enumerate(scenes)}
    for mine, single, batched, explicit in got.values():
        for scene, a, b in zip(mine, single, batched):
            reference = expected[index[id(scene)]]
            np.testing.assert_array_equal(a.mask, reference.mask)
            np.testing.assert_array_equal(a.depth, reference.depth)
            np.testing.assert_allclose(b.mask, reference.mask, atol=1e-6)
        np.testing.assert_array_equal(explicit[0].mask, expected[index[id(mine[0])]].mask)


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_ten_thousand_predictions_do_not_grow_memory(tiny):
    """A leak of one result per call (2 x 60x80 floats, 38 KB) would add ~370 MiB; of one
    input batch, more. Allow 8 MiB of allocator noise."""
    predictor = Predictor(tiny, device="cpu", threads=1)
    bg, scenes = rgb(1, 60, 80), [rgb(2 + i, 60, 80) for i in range(4)]
    predictor.set_background(bg)
    for scene in scenes * 50:  # warm up: arenas, caches
        predictor.predict(scene).overlay()
    for _ in predictor.predict_batch(scenes * 4, batch_size=8):  # the batch-8 arena, once
        pass
    before = _rss_mib()
    readings = []
    for step in range(2500):
        for scene in scenes:
            predictor.predict(scene)
        if step % 500 == 499:
            readings.append(_rss_mib())
    for _ in predictor.predict_batch(scenes * 250, batch_size=8):
        pass
    grown = _rss_mib() - before
    assert grown < 8, f"RSS grew {grown:.1f} MiB over 11,000 predictions ({readings})"


# ------------------------------------------------------------------------------ parity


@pytest.fixture(scope="module")
def u2net(tmp_path_factory) -> dict:
    """u2netp-md with seeded random weights, exported at 64x64 once for the module."""
    torch = pytest.importorskip("torch")
    from maskdepth.export.onnx_fp32 import export_graph, save_model
    from maskdepth.train.models import create_model

    torch.manual_seed(0)
    model = create_model("u2netp-md").eval()
    info = ModelInfo("u2netp-md", Preprocessing(size=(64, 64)), depth_scale_m=10.0)
    path = tmp_path_factory.mktemp("u2net") / "u2netp-md.onnx"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see _torch_reference
    try:
        save_model(export_graph(model, info, 17), path)
    finally:
        torch.set_num_threads(threads)
    return {"path": path, "model": model, "info": info}


def _torch_reference(u2net: dict, bg: np.ndarray, scene: np.ndarray) -> dict:
    """The PyTorch model on the same prepare_pair input, resized back like the Predictor."""
    import torch

    from maskdepth.train.models.u2net import InferenceModel

    x = torch.from_numpy(prepare_pair(bg, scene, u2net["info"].preprocessing))[None]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on a shared 2-core machine can take 50x longer
    try:
        with torch.no_grad():
            mask, depth = InferenceModel(u2net["model"])(x[:, :3], x[:, 3:])
    finally:
        torch.set_num_threads(threads)
    size = scene.shape[:2]
    return {
        "mask": resize_map(mask[0, 0].numpy(), size)[None, None],
        "depth": resize_map(depth[0, 0].numpy(), size)[None, None],
    }


def test_predictor_equals_pytorch_within_1e_4(u2net):
    predictor = Predictor(u2net["path"], device="cpu")
    assert predictor.info.depth_scale_m == 10.0
    pairs = [
        (rgb(200, 64, 64), rgb(201, 64, 64)),  # the model's size
        (rgb(202, 64, 64), rgb(203, 90, 120)),  # a scene to shrink, bg of another size
        (rgb(204, 200, 100), rgb(205, 40, 50)),  # a scene to grow, a bigger bg
    ]
    accumulator = DiffAccumulator()
    for bg, scene in pairs:
        reference = _torch_reference(u2net, bg, scene)
        result = predictor.predict(scene, bg=bg)
        candidate = {"mask": result.mask[None, None], "depth": result.depth[None, None]}
        accumulator.update(reference, candidate, reference["mask"], reference["depth"])
        # the check can fail: another input (the scene as its own bg) is far outside 1e-4
        other = _torch_reference(u2net, scene, scene)
        assert np.abs(other["mask"] - reference["mask"]).max() > 1e-3
    comparison = accumulator.result("fp32")
    assert comparison, comparison.table()
    assert max(comparison.max_abs.values()) <= 1e-4
