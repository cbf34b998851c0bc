"""`maskdepth export` of a refined model (U2-Net at a base size, refiner at full resolution): one
graph with full-resolution dynamic height and width, gated at full resolution; fp16, INT8 and a
TensorRT-RTX plan whose profile is the model's range. And a plain model exports as before."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from maskdepth.cli import main
from maskdepth.runtime import Predictor
from maskdepth.runtime.model_info import RefineInfo, read_onnx_info
from maskdepth.train.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
    model_record,
    save_checkpoint,
)
from maskdepth.train.models import InferenceModel, create_model

ort = pytest.importorskip("onnxruntime")
FAST = ["--parity-count", "16", "--calib-count", "16"]
ANY_DELTA = ["--tolerance", "1"]  # as in test_export: a tiny model's fp16/INT8 verdict is noise
# Non-square (1:2), a 2x refiner; the range goes below and above the training resolution.
BASE, FULL = (32, 64), (64, 128)
REFINE = RefineInfo("guided", base_size=BASE, min_size=(32, 64), max_size=(128, 256))
# Today's metadata keys of a plain model's file, in order (no maskdepth.refine).
PLAIN_KEYS = [
    f"maskdepth.{key}"
    for key in ("format", "format_version", "version", "model", "precision", "inputs", "outputs",
                "preprocessing", "depth_scale_m", "manifest_hash", "dynamic", "stride")
]  # fmt: skip


@pytest.fixture(scope="module")
def refined(tiny_checkpoint, tmp_path_factory):
    """A refined u2netp-md checkpoint: the tiny trained base, a refiner with random weights
    (off its identity start, so every refiner layer changes the output), trained at FULL."""
    ckpt = load_checkpoint(tiny_checkpoint)
    torch.manual_seed(0)
    net = create_model("u2netp-md", refine="guided")
    net.base.load_state_dict(ckpt["ema_state_dict"] or ckpt["state_dict"])
    for p in net.refiner.parameters():
        torch.nn.init.normal_(p, std=0.1)
    config = checkpoint_config(ckpt)
    config = replace(config, preprocessing=replace(config.preprocessing, size=FULL), refine=REFINE)
    path = tmp_path_factory.mktemp("refined") / "refined.pt"
    payload = {"model": model_record(net), "state_dict": net.state_dict(), "ema_state_dict": None}
    return save_checkpoint(path, {**ckpt, **payload, "config": config.to_dict()})


@pytest.fixture(scope="module")
def exported(refined, tmp_path_factory):
    """The refined model's three ONNX forms through the CLI (INT8 with its refiner in float)."""
    out = tmp_path_factory.mktemp("refined_export")
    paths = {}
    for fmt, extra in [("onnx", []), ("onnx-fp16", ANY_DELTA), ("onnx-int8", ANY_DELTA)]:
        paths[fmt] = out / f"model.{fmt}.onnx"
        args = ["export", str(refined), "--format", fmt, "--out", str(paths[fmt]), *FAST]
        assert main([*args, *extra]) == 0, fmt
    return paths


def _parity(path):
    return json.loads(path.with_name(path.name + ".parity.json").read_text())


def _feed(size, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal((batch, 3, *size)).astype(np.float32) for n in ("bg", "scene")}


def test_refined_graph_takes_full_resolution_at_any_size_in_range(exported, refined):
    path = exported["onnx"]
    info = read_onnx_info(path)
    assert info.refine == REFINE and info.size == FULL
    assert info.dynamic == ("batch", "height", "width")
    graph = onnx.load(str(path))
    for value in [*graph.graph.input, *graph.graph.output]:
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims[2:]] == ["height", "width"], value.name
    report = _parity(path)  # the gate: full-resolution outputs, full-resolution samples
    assert report["passed"] and report["count"] == 16 and report["measured"]["max_abs"] <= 1e-5
    # No Resize reads scales computed in the graph (TensorRT refuses data-dependent scales).
    initializers = {t.name for t in graph.graph.initializer}
    for node in graph.graph.node:
        if node.op_type == "Resize" and len(node.input) > 2 and node.input[2]:
            assert node.input[2] in initializers, node.name
    # Other sizes in the range, even off the stride: the same as PyTorch there.
    model, _ = model_from_checkpoint(load_checkpoint(refined))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    # 32x64: the base size itself, where eager PyTorch once skipped the shrink the graph makes
    for size in [(32, 64), (48, 96), (80, 150), (128, 256)]:
        feed = _feed(size)
        mask, depth = session.run(["mask", "depth"], feed)
        with torch.no_grad():
            wanted = InferenceModel(model)(*(torch.from_numpy(feed[n]) for n in ("bg", "scene")))
        assert mask.shape == depth.shape == (2, 1, *size)
        np.testing.assert_allclose(mask, wanted[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(depth, wanted[1].numpy(), atol=1e-5)


def test_refined_held_out_samples_are_at_the_full_resolution(refined):
    from maskdepth.export.samples import held_out_samples

    info = checkpoint_config(load_checkpoint(refined))
    samples = held_out_samples(load_checkpoint(refined), info.preprocessing, 3)
    batch = next(samples.batches(3))
    assert batch.feed["scene"].shape == (3, 3, *FULL) and batch.mask.shape == (3, 1, *FULL)


@pytest.mark.parametrize("fmt", ["onnx-fp16", "onnx-int8"])
def test_refined_fp16_and_int8_keep_the_range_and_pass_their_gates(exported, fmt):
    path = exported[fmt]
    info = read_onnx_info(path)
    assert info.refine == REFINE and info.dynamic == ("batch", "height", "width")
    report = _parity(path)
    assert report["passed"] and report["count"] == 16
    assert 1e-5 < report["measured"]["max_abs"] < 0.05  # really converted, and close
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    mask, _ = session.run(["mask", "depth"], _feed((96, 160)))
    assert mask.shape == (2, 1, 96, 160)


def test_int8_blocks_cover_a_refined_graph_and_the_refiner_stays_float(exported, refined, tmp_path):
    from maskdepth.export.onnx_int8 import excluded_nodes
    from maskdepth.export.options import BLOCKS

    graph = onnx.load(str(exported["onnx"]))
    convs = {n.name for n in graph.graph.node if n.op_type == "Conv"}
    assert set(excluded_nodes(graph, BLOCKS)) & convs == convs  # base blocks and the refiner
    refiner = {n for n in convs if n.startswith("/model/refiner/")}
    assert set(excluded_nodes(graph, ["refiner"])) & convs == refiner and len(refiner) == 7
    assert len(set(excluded_nodes(graph, ["sides", "fuse"])) & convs) == 14  # as in a plain one
    quantized = onnx.load(str(exported["onnx-int8"])).graph
    producers = {o: n.op_type for n in quantized.node for o in n.output}
    convs_int8 = [n for n in quantized.node if n.op_type == "Conv"]
    weights = {n.name: producers.get(n.input[1]) for n in convs_int8}
    assert {k for k, v in weights.items() if v != "DequantizeLinear"} == refiner
    assert _parity(exported["onnx-int8"])["float_blocks"] == ["refiner", "outputs"]  # auto


def test_frame_blocks_are_the_nodes_outside_base_and_refiner(exported):
    """ "frame": every node neither under /model/base/ nor /model/refiner/ (the downscale, the
    concat of the base's logits, the slices of the refined ones, the sigmoids); "outputs": its
    tail from the refiner to the graph outputs."""
    from maskdepth.export.onnx_int8 import excluded_nodes
    from maskdepth.export.options import parse_exclude

    assert parse_exclude("frame,outputs") == ("frame", "outputs")
    model = onnx.load(str(exported["onnx"]))
    nodes = {n.name: n for n in model.graph.node}
    outside = [n for n in nodes if not n.startswith(("/model/base/", "/model/refiner/"))]
    frame = excluded_nodes(model, ["frame"])
    assert frame == outside
    ops = {nodes[n].op_type for n in frame}
    assert {"Resize", "AveragePool", "Concat", "Slice", "Sigmoid"} <= ops
    tail = excluded_nodes(model, ["outputs"])
    assert sorted(nodes[n].op_type for n in tail) == ["Sigmoid", "Sigmoid", "Slice", "Slice"]
    producers = {o: name for name, n in nodes.items() for o in n.output}
    for name in tail:  # each reads the refiner's output or another node of the tail
        sources = [producers[i] for i in nodes[name].input if i in producers]
        assert sources and all(s in tail or s.startswith("/model/refiner/") for s in sources)
    assert {o for n in tail for o in nodes[n].output} >= {"mask", "depth"}


def test_refined_int8_keeps_the_refined_logits_float(exported):
    """From the refiner's output to ``mask`` and ``depth`` no Q/DQ: a trained refiner's logits
    span hundreds, so 8 bits there are a step of ~2 at the mask's decision boundary."""
    graph = onnx.load(str(exported["onnx-int8"])).graph
    producers = {o: n for n in graph.node for o in n.output}
    for output in ("mask", "depth"):
        path, todo = [], [producers[output]]
        while todo:
            node = todo.pop()
            if node.name.startswith("/model/refiner/"):
                continue
            path.append(node.op_type)
            todo += [producers[i] for i in node.input if i in producers]
        assert sorted(path) == ["Sigmoid", "Slice"], (output, path)


def test_refined_engine_profile_is_the_models_range(refined, tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from maskdepth.runtime.engine_sidecar import engine_info, read_sidecar

    path = tmp_path / "model.engine"
    args = ["export", str(refined), "--format", "engine", "--out", str(path),
            "--compute-capability", "8.6", "--max-batch", "4", *FAST]  # fmt: skip
    assert main(args) == 0
    assert path.stat().st_size > 1e6 and _parity(tmp_path / "model.fp16.onnx")["passed"]
    sidecar = read_sidecar(path)
    for name in ("bg", "scene"):
        assert sidecar["profile"][name] == {
            "min": [1, 3, 32, 64],
            "opt": [1, 3, 64, 128],
            "max": [4, 3, 128, 256],
        }
    info = engine_info(path)
    assert info.refine == REFINE and info.precision == "fp16" and info.size == FULL


def test_refined_size_inside_the_range_or_one_line(refined, tmp_path, capsys):
    path = tmp_path / "m.onnx"
    assert main(["export", str(refined), "--out", str(path), "--size", "16", "64"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--size 16 64: outside u2netp-md's full-resolution range, 32x64 to 128x256" in err
    assert len(err.splitlines()) == 1 and not list(tmp_path.iterdir())
    # off the stride is fine at full resolution (the base runs at its own size)
    assert main(["export", str(refined), "--out", str(path), "--size", "72", "136", *FAST]) == 0
    assert read_onnx_info(path).size == (72, 136) and _parity(path)["passed"]


def test_a_plain_model_exports_as_before(tiny_checkpoint, tmp_path):
    """Its metadata keys are today's (no maskdepth.refine), its engine profile today's."""
    from maskdepth.export.engine import profile_for
    from maskdepth.export.options import ExportOptions
    from maskdepth.export.tensorrt_build import Profile

    path = tmp_path / "plain.onnx"
    assert main(["export", str(tiny_checkpoint), "--out", str(path), *FAST]) == 0
    graph = onnx.load(str(path))
    assert [p.key for p in graph.metadata_props] == PLAIN_KEYS
    info = read_onnx_info(path)
    assert info.refine is None and info.dynamic == ("batch",)
    options = ExportOptions(format="engine", max_batch=8)
    assert profile_for(info, options) == Profile.for_export(info.size, False, 8, info.stride)
    dynamic = replace(info, dynamic=("batch", "height", "width"))
    assert profile_for(dynamic, options) == Profile.for_export(info.size, True, 8, info.stride)


def test_a_refined_models_triton_repository_serves_full_resolution_frames(
    refined, exported, tmp_path
):
    """The served pre- and post-processing of a refined model is the Predictor's (padded to the
    base aspect, full resolution, cropped back): the in-process chain of the repository's own
    steps equals Predictor.predict on a 16:9 frame and on a square one."""
    from maskdepth.export.triton_check import check_repository
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner
    from maskdepth.runtime.triton import steps

    repo = tmp_path / "repo"
    args = ["export", str(refined), "--from", str(exported["onnx"]), "--format", "triton"]
    assert main([*args, "--out", str(repo), "--triton-network", "python", "--max-batch", "4"]) == 0
    configs = check_repository(repo)  # raises, listing every problem
    info = steps.read_info(repo / "maskdepth_pre")
    assert info.refine == REFINE
    rng = np.random.default_rng(3)
    with Predictor(exported["onnx"], device="cpu") as predictor:
        for size in [(72, 128), (96, 96)]:
            bg = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            scene = bg.copy()
            scene[size[0] // 4 : size[0] // 2, size[1] // 3 : size[1] // 2] = 250
            prepared = steps.preprocess(info, scene, bg)
            feed = predictor._feed_size(size)
            assert prepared["net_scene"].shape[2:] == feed
            # what a server checks each step's tensors against: a refined feed varies
            for dims in (
                configs["maskdepth_pre"].output[0].dims,
                configs["maskdepth_post"].input[0].dims,
            ):
                assert all(d in (-1, f) for d, f in zip(list(dims)[2:], feed)), list(dims)
            feed = {"bg": prepared["net_bg"], "scene": prepared["net_scene"]}
            with OnnxRuntimeRunner(repo / "maskdepth_net" / "1" / "model.onnx") as runner:
                (result,) = steps.run_network(runner, [feed])
            served = steps.postprocess(info, result["mask"], result["depth"], prepared["size"])
            expected = predictor.predict(scene, bg=bg)
            for name in ("mask", "depth"):
                assert served[name].shape == size
                np.testing.assert_allclose(served[name], getattr(expected, name), atol=1e-5)
