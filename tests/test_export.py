"""`maskdepth export` to ONNX fp32, fp16 and INT8: files, metadata, parity gate, bad input."""

import json
import warnings
from collections import Counter
from contextlib import nullcontext
from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import read_onnx_info
from maskdepth.train.checkpoint import (
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from maskdepth.train.config import TrainConfig
from maskdepth.train.models import InferenceModel
from maskdepth.train.trainer import train

ort = pytest.importorskip("onnxruntime")
FAST = ["--parity-count", "16", "--calib-count", "16"]
# u2netp-md exported at a static size: the 178 convolutions and what joins them, one Resize per
# upsampling with constant scales; no Shape -> Slice -> Concat chain computing Resize sizes.
STATIC_U2NETP_MD_OPS = Counter(
    Conv=178, Relu=164, Concat=78, Resize=61, MaxPool=47, Add=16, Sigmoid=2
)


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint):
    return tiny_checkpoint


# |dIoU| and |dRMSE| are at most 1: a gate that passes whatever the tiny model's quality. On a
# model that weak (IoU about 0.2, most mask probabilities near 0.5) a few pixels decide the fp16
# and INT8 verdicts at the default bounds, so tests of the files' form do not hang on them.
ANY_DELTA = ["--tolerance", "1"]


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    """The three ONNX forms of the tiny model, exported once through the CLI."""
    out = tmp_path_factory.mktemp("export")
    paths = {}
    for fmt, extra in [("onnx", []), ("onnx-fp16", ANY_DELTA), ("onnx-int8", ANY_DELTA)]:
        paths[fmt] = out / f"model.{fmt}.onnx"
        args = ["export", str(checkpoint), "--format", fmt, "--out", str(paths[fmt]), *FAST]
        assert main([*args, *extra]) == 0, fmt
    return paths


def _run(path, batch=3, size=(32, 32)):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((batch, 3, *size)).astype(np.float32)
            for name in ("bg", "scene")}  # fmt: skip
    return session, dict(zip(["mask", "depth"], session.run(["mask", "depth"], feed)))


def _parity(path):
    return json.loads(path.with_name(path.name + ".parity.json").read_text())


def test_fp32_file_describes_itself_and_matches_pytorch(exported, checkpoint):
    path = exported["onnx"]
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    info = read_onnx_info(path)
    ckpt = load_checkpoint(checkpoint)
    assert (info.model, info.precision, info.size) == ("u2netp-md", "fp32", (32, 32))
    assert info.depth_scale_m == 20.0 and info.manifest_hash == ckpt["data"]["manifest_hash"]
    assert info.preprocessing == checkpoint_config(ckpt).preprocessing
    assert info.dynamic == ("batch",)
    session, out = _run(path, batch=3)
    assert [i.name for i in session.get_inputs()] == ["bg", "scene"]
    assert out["mask"].shape == out["depth"].shape == (3, 1, 32, 32)
    assert out["mask"].min() >= 0 and out["depth"].max() <= 1  # probabilities, not logits
    report = _parity(path)
    assert report["passed"] and report["count"] == 16
    assert report["measured"]["max_abs"] <= 1e-5 and report["d_iou"] == pytest.approx(0, abs=1e-9)
    assert "synthetic scenes never seen in training" in report["samples"]
    # Nothing but the work: constant Resize scales, no shape arithmetic left in the graph.
    ops = Counter(n.op_type for n in graph.graph.node)
    assert ops == STATIC_U2NETP_MD_OPS, ops
    resize_scales = [n.input[2] for n in graph.graph.node if n.op_type == "Resize"]
    assert set(resize_scales) <= {t.name for t in graph.graph.initializer}


def test_fp16_keeps_fp32_inputs_and_outputs(exported):
    graph = onnx.load(str(exported["onnx-fp16"]))
    io_types = {v.type.tensor_type.elem_type for v in [*graph.graph.input, *graph.graph.output]}
    assert io_types == {onnx.TensorProto.FLOAT}
    weights = [w for w in graph.graph.initializer if w.data_type == onnx.TensorProto.FLOAT16]
    assert len(weights) > 100  # the convolutions really are fp16
    assert read_onnx_info(exported["onnx-fp16"]).precision == "fp16"
    report = _parity(exported["onnx-fp16"])
    assert report["passed"] and 0 < report["measured"]["max_abs"] < 0.01  # fp16's rounding
    assert report["tolerance"] == {"iou": 1, "rmse": 1}


def test_int8_for_tensorrt_is_symmetric_qdq_without_quantized_bias(exported):
    graph = onnx.load(str(exported["onnx-int8"]))
    ops = {n.op_type for n in graph.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    weights = {w.name: onnx.numpy_helper.to_array(w) for w in graph.graph.initializer}
    zero_points = [weights[n.input[2]] for n in graph.graph.node
                   if n.op_type == "QuantizeLinear" and len(n.input) > 2]  # fmt: skip
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert not [w for w in weights.values() if w.dtype == np.int32]  # biases stay fp32
    assert read_onnx_info(exported["onnx-int8"]).precision == "int8"
    report = _parity(exported["onnx-int8"])
    assert report["passed"] and report["int8_target"] == "tensorrt"
    assert report["measured"]["max_abs"] > 1e-4  # really quantized
    _run(exported["onnx-int8"])


def test_int8_for_cpu_uses_uint8_activations(checkpoint, tmp_path, capsys):
    path = tmp_path / "cpu.onnx"
    args = ["export", str(checkpoint), "--format", "onnx-int8", "--int8-target", "cpu",
            "--out", str(path), *ANY_DELTA, *FAST]  # fmt: skip
    assert main(args) == 0
    assert "note:" not in capsys.readouterr().out  # the CPU's own INT8: nothing to warn about
    tensorrt = tmp_path / "trt.onnx"
    assert main([*args[:5], "tensorrt", "--out", str(tensorrt), *args[8:]]) == 0
    printed = capsys.readouterr().out
    assert "note: this INT8 file is for TensorRT" in printed and "--int8-target cpu" in printed
    graph = onnx.load(str(path))
    types = {onnx.numpy_helper.to_array(w).dtype for w in graph.graph.initializer}
    assert np.dtype(np.uint8) in types and np.dtype(np.int32) in types  # U8 zero points, bias


def test_dynamic_size_runs_at_other_sizes(checkpoint, tmp_path):
    path = tmp_path / "dyn.onnx"
    args = ["export", str(checkpoint), "--out", str(path), "--size", "64", "64", "--dynamic"]
    assert main([*args, *FAST]) == 0
    info = read_onnx_info(path)
    assert info.size == (64, 64) and info.dynamic == ("batch", "height", "width")
    session, out = _run(path, batch=2, size=(96, 128))
    assert out["depth"].shape == (2, 1, 96, 128)
    # Constant scales are right at every size the stride allows: the same as PyTorch there.
    model, _ = model_from_checkpoint(load_checkpoint(checkpoint))
    rng = np.random.default_rng(0)
    feed = {name: rng.standard_normal((2, 3, 96, 128)).astype(np.float32)
            for name in ("bg", "scene")}  # fmt: skip
    with torch.no_grad():
        mask, depth = InferenceModel(model)(*(torch.from_numpy(feed[n]) for n in ("bg", "scene")))
    mask_onnx, depth_onnx = session.run(["mask", "depth"], feed)
    np.testing.assert_allclose(mask_onnx, mask.numpy(), atol=1e-5)
    np.testing.assert_allclose(depth_onnx, depth.numpy(), atol=1e-5)


def test_over_tolerance_keeps_the_file_under_a_failed_name(checkpoint, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    args = ["export", str(checkpoint), "--out", str(path), "--tolerance", "1e-12", *FAST]
    assert main(args) == 1
    printed = capsys.readouterr().out
    assert "parity: FAILED" in printed and "over by" in printed
    assert not path.exists() and (tmp_path / "model.parity-failed.onnx").is_file()
    report = _parity(path)
    assert report["passed"] is False and report["file"].endswith("model.parity-failed.onnx")
    assert not list(tmp_path.glob(".*pending"))


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """(dataset folder, checkpoint): a run trained on a generated folder (with statistics and a
    depth scale in its manifest)."""
    from maskdepth.train.data.synth import synthesize

    root = tmp_path_factory.mktemp("folder_run")
    data = root / "data"
    synthesize(data, 40, size=32, per_background=10, workers=1, progress=False)
    config = TrainConfig(
        data=str(data), sizes=[32], epochs=1, batch=8, out=str(root / "run"), threads=2,
        workers=0, samples=0, progress=False, val_fraction=0.25,
    )  # fmt: skip
    train(config)
    return data, root / "run" / "best.pt"


def test_parity_on_the_training_data_uses_its_validation_split(folder_run, tmp_path):
    data, best = folder_run
    path = tmp_path / "m.onnx"
    assert main(["export", str(best), "--out", str(path),
                 "--data", str(data), *FAST]) == 0  # fmt: skip
    report = _parity(path)
    assert report["count"] == 10 and "validation scenes of" in report["samples"]


def test_export_without_data_uses_the_training_folders_validation_split(folder_run, tmp_path):
    from maskdepth.train.datasets import data_from_checkpoint

    data, best = folder_run
    path = tmp_path / "m.onnx"
    assert main(["export", str(best), "--out", str(path), *FAST]) == 0
    _, _, val = data_from_checkpoint(load_checkpoint(best))
    assert _parity(path)["count"] == len(val) == 10
    assert _parity(path)["samples"] == f"10 validation scenes of {data.resolve()}"


def test_a_training_folder_whose_manifest_changed_is_not_held_out_data(
    folder_run, tmp_path, capsys
):
    """Its validation split is unknown then: without --data, synthetic scenes and why; with it,
    one line (the whole folder is mostly training scenes, which would flatter the gate)."""
    data, best = folder_run
    manifest = data / "manifest.json"
    original = manifest.read_bytes()
    manifest.write_bytes(original.replace(b"{", b'{"edited": true, ', 1))
    try:
        path = tmp_path / "m.onnx"
        capsys.readouterr()
        assert main(["export", str(best), "--out", str(path), *FAST]) == 0
        assert "16 synthetic scenes (the checkpoint's training folder" in _parity(path)["samples"]
        assert "its manifest is not the one trained on" in capsys.readouterr().out
        explicit = tmp_path / "explicit.onnx"
        assert main(["export", str(best), "--out", str(explicit), "--data", str(data)]) == 2
        assert "manifest is not the one trained on" in capsys.readouterr().err
        assert not explicit.exists()
    finally:
        manifest.write_bytes(original)


def test_export_keeps_the_data_facts_when_the_training_folder_is_gone(folder_run, tmp_path, capsys):
    from maskdepth.train.data.manifest import read_manifest

    data, best = folder_run
    stats = read_manifest(data)["stats"]
    moved = tmp_path / "elsewhere"
    data.rename(moved)  # the training folder is gone: export must not need it
    try:
        path = tmp_path / "m.onnx"
        capsys.readouterr()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no fallback to the training data, silent or not
            assert main(["export", str(best), "--out", str(path), *FAST]) == 0
        gone = f"synthetic scenes (the checkpoint's training folder {data.resolve()} is not there)"
        assert f"held-out samples: 16 {gone}\n" in capsys.readouterr().out
        assert _parity(path)["samples"] == f"16 {gone}"
        info = read_onnx_info(path)
        assert info.depth_scale_m == 20.0  # the manifest's scale, through the checkpoint
        assert info.preprocessing.mean == tuple(stats["bg"]["mean"] + stats["scene"]["mean"])
        assert info.preprocessing.std == tuple(stats["bg"]["std"] + stats["scene"]["std"])
        old = tmp_path / "old.pt"  # the same checkpoint as written before model configs: refused
        save_checkpoint(old, {k: v for k, v in load_checkpoint(best).items() if k != "config"})
        assert main(["export", str(old), "--out", str(tmp_path / "old.onnx"), *FAST]) == 2
        assert not (tmp_path / "old.onnx").exists()
    finally:
        moved.rename(data)


def test_a_seed_layout_folder_is_its_own_held_out_data_until_it_moves(tmp_path, capsys):
    """A folder without manifest.json (the seed's data): the checkpoint names it, so export
    checks parity on its validation split, with or without --data, and says so; once it is
    gone, on synthetic scenes, and says why."""
    from conftest import write_seed_dataset

    data = tmp_path / "seed"
    write_seed_dataset(data, backgrounds=4, per_background=3, size=32)
    config = TrainConfig(
        data=str(data), sizes=[32], epochs=1, batch=3, out=str(tmp_path / "run"), threads=2,
        workers=0, samples=0, progress=False, val_fraction=0.25, model="u2netp-lite",
    )  # fmt: skip
    train(config)
    best = tmp_path / "run" / "best.pt"
    assert load_checkpoint(best)["data"]["manifest_hash"] is None
    val = f"3 validation scenes of {data.resolve()}"  # one background of four, whole
    for extra in ([], ["--data", str(data)]):
        path = tmp_path / f"m{len(extra)}.onnx"
        capsys.readouterr()
        assert main(["export", str(best), "--out", str(path), *FAST, *extra]) == 0
        assert f"held-out samples: {val}\n" in capsys.readouterr().out
        assert _parity(path)["samples"] == val and _parity(path)["count"] == 3
    data.rename(tmp_path / "moved")
    path = tmp_path / "gone.onnx"
    assert main(["export", str(best), "--out", str(path), "--parity-count", "4"]) == 0
    gone = f"4 synthetic scenes (the checkpoint's training folder {data.resolve()} is not there)"
    assert f"held-out samples: {gone}\n" in capsys.readouterr().out
    assert _parity(path)["samples"] == gone and _parity(path)["count"] == 4


def test_the_model_config_travels_to_onnx_sidecar_and_runtime(exported, checkpoint, tmp_path):
    from maskdepth import __version__
    from maskdepth.runtime import Predictor
    from maskdepth.runtime.engine_sidecar import engine_info, make_sidecar, write_sidecar

    config = checkpoint_config(load_checkpoint(checkpoint))
    info = read_onnx_info(exported["onnx"])
    assert info == replace(config, version=__version__)  # every fact, the stride included
    assert info.stride == 32 and info.to_props()["maskdepth.stride"] == "32"
    engine = tmp_path / "model.engine"
    sidecar = make_sidecar(
        flavour="tensorrt_rtx", flavour_version="1.7", target={}, profile={}, precision="fp32",
        onnx_path=exported["onnx"], plan=b"plan", info=info,
    )  # fmt: skip
    write_sidecar(engine, sidecar)
    assert engine_info(engine) == info
    assert Predictor(exported["onnx"]).info == info


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--size", "100", "100"], "multiple of 32"),
        (["--opset", "99"], "--opset 99"),
        (["--calib-count", "0"], "expected a number >= 1"),
    ],
)
def test_bad_options_are_one_line(checkpoint, tmp_path, capsys, extra, message):
    path = tmp_path / "m.onnx"
    with pytest.raises(SystemExit) if "--calib-count" in extra else nullcontext():
        code = main(["export", str(checkpoint), "--out", str(path), *extra])
        assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err.splitlines()[-1] and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_bad_files_are_one_line_and_leave_nothing(checkpoint, tmp_path, capsys):
    not_ckpt = tmp_path / "model.pt"
    not_ckpt.write_bytes(b"hello")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        ([str(not_ckpt), "--out", str(tmp_path / "a.onnx")], "not a PyTorch checkpoint"),
        ([str(checkpoint), "--out", str(blocker / "a.onnx")], "cannot create"),
        ([str(checkpoint), "--out", str(empty)], "is a folder"),
        (
            [
                str(checkpoint),
                "--out",
                str(tmp_path / "b.onnx"),
                "--format",
                "onnx-int8",
                "--data",
                str(empty),
            ],
            "--data",
        ),  # fmt: skip
    ]
    for args, message in cases:
        assert main(["export", *args]) == 2, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert not list(tmp_path.glob("*.onnx")) and not list(empty.iterdir())


def test_engine_export_builds_plan_sidecar_and_its_onnx(checkpoint, tmp_path, capsys):
    pytest.importorskip("tensorrt_rtx")
    from maskdepth.runtime.engine_sidecar import read_sidecar

    path = tmp_path / "model.engine"
    args = ["export", str(checkpoint), "--format", "engine", "--out", str(path),
            "--compute-capability", "8.6", *FAST]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    onnx_path = tmp_path / "model.fp16.onnx"  # the graph it compiled, gated like any export
    assert path.stat().st_size > 1e6 and onnx_path.is_file() and _parity(onnx_path)["passed"]
    sidecar = read_sidecar(path)
    assert sidecar["flavour"] == "tensorrt_rtx" and sidecar["model"]["precision"] == "fp16"
    assert sidecar["target"]["compute_capabilities"] == ["8.6"]
    from maskdepth.runtime.runners.cuda import gpu_info

    if gpu_info() is None:
        assert "parity not checked" in printed and _parity(path)["passed"] is None
    else:
        assert _parity(path)["passed"]


def test_engine_from_a_file_builds_the_precision_asked_for_or_refuses(
    exported, checkpoint, tmp_path, capsys
):
    """--from FILE --precision P: TensorRT-RTX compiles the precision the graph holds, so an
    fp32 file asked for fp16 is refused in one line before any work (it built fp32 before)."""
    pytest.importorskip("tensorrt_rtx")
    from maskdepth.runtime.engine_sidecar import read_sidecar

    path = tmp_path / "model.engine"
    args = ["export", str(checkpoint), "--format", "engine", "--out", str(path),
            "--compute-capability", "8.6", "--max-batch", "2", *FAST]  # fmt: skip
    assert main([*args, "--from", str(exported["onnx"]), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "--precision fp16: " in err and "holds an fp32 graph" in err
    assert "--format onnx-fp16" in err and not list(tmp_path.iterdir())
    assert main([*args, "--from", str(exported["onnx-fp16"]), "--precision", "fp16"]) == 0
    assert read_sidecar(path)["model"]["precision"] == "fp16"


def test_int8_exclude_keeps_named_blocks_in_float(exported, checkpoint, tmp_path):
    from maskdepth.export.onnx_int8 import excluded_nodes
    from maskdepth.export.options import AUTO_EXCLUDE, BLOCKS, parse_exclude

    assert parse_exclude("auto") == AUTO_EXCLUDE and parse_exclude("none") == ()
    assert parse_exclude("sides, fuse") == ("sides", "fuse")
    with pytest.raises(MaskDepthError, match="--int8-exclude side: expected auto, none or"):
        parse_exclude("side")
    graph = onnx.load(str(exported["onnx"]))
    convs = {n.name for n in graph.graph.node if n.op_type == "Conv"}
    every_block = set(excluded_nodes(graph, BLOCKS)) & convs
    assert every_block == convs  # the blocks cover the whole network
    assert len(set(excluded_nodes(graph, ["sides", "fuse"])) & convs) == 14
    # a plain model's frame: the wrapper's input Concat and output Sigmoids, its tail the latter
    assert excluded_nodes(graph, ["frame"]) == ["/Concat", "/Sigmoid", "/Sigmoid_1"]
    assert excluded_nodes(graph, ["outputs"]) == ["/Sigmoid", "/Sigmoid_1"]
    path = tmp_path / "float_sides.onnx"
    args = ["export", str(checkpoint), "--format", "onnx-int8", "--int8-exclude", "sides,fuse",
            "--out", str(path), *ANY_DELTA, *FAST]  # fmt: skip
    assert main(args) == 0
    report = _parity(path)
    assert report["float_blocks"] == ["sides", "fuse"]
    quantized = onnx.load(str(path)).graph
    producers = {o: n.op_type for n in quantized.node for o in n.output}
    sides = [n for n in quantized.node if n.op_type == "Conv" and "/sides." in n.name]
    assert len(sides) == 12 and all(producers.get(n.input[1]) != "DequantizeLinear" for n in sides)
    assert _parity(exported["onnx-int8"])["float_blocks"] == list(AUTO_EXCLUDE)


def test_int8_sensitivity_sweeps_calibrations_and_blocks_with_latency(checkpoint, tmp_path):
    from maskdepth.benchmarks.scripts import int8_sensitivity

    args = [str(checkpoint), "--count", "8", "--target", "cpu", "--blocks", "outputs",
            "--keep-float", "outputs", "--calib-methods", "minmax", "percentile", "--time",
            "--repeats", "1"]  # fmt: skip
    assert int8_sensitivity.main([*args, "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "int8_sensitivity.json").read_text())["rows"]
    blocks = ["(none: full INT8)", "outputs"]  # --keep-float outputs: every row but the first
    assert [(r["calibration"], r["float"]) for r in rows] == [
        (method, block) for method in ("minmax", "percentile") for block in blocks
    ]
    assert rows[0]["d_iou"] != rows[1]["d_iou"] or rows[0]["max_abs"] != rows[1]["max_abs"]
    assert "| outputs |" in (tmp_path / "int8_sensitivity.md").read_text()
    assert all(abs(r["d_iou"]) <= 1 and r["max_abs"] > 0 and r["p50_ms"] > 0 for r in rows)
    assert [r["x_full_int8"] for r in rows][::2] == [1.0, 1.0]  # each against its own full INT8
    # --keep-float with more blocks: the kept ones alone, then each other block added to them
    assert int8_sensitivity.float_sets(("refiner",), ("refiner", "frame", "outputs")) == [
        (), ("refiner",), ("refiner", "frame"), ("refiner", "outputs"),
    ]  # fmt: skip


def test_the_same_weights_are_traced_once_per_process(monkeypatch):
    """export_graph reuses a trace for the same weights, facts and opset (a fresh copy each
    time), and traces again when any of them changes."""
    from maskdepth.export import onnx_fp32
    from maskdepth.runtime.model_info import ModelInfo, Preprocessing
    from maskdepth.train.models import create_model

    traced = []
    trace = onnx_fp32.trace_graph
    monkeypatch.setattr(onnx_fp32, "trace_graph", lambda *a: traced.append(a) or trace(*a))
    monkeypatch.setattr(onnx_fp32, "_TRACED", type(onnx_fp32._TRACED)())
    torch.manual_seed(0)
    model = create_model("u2netp-lite").eval()
    info = ModelInfo("u2netp-lite", Preprocessing(size=(32, 32)), version="test")
    first = onnx_fp32.export_graph(model, info, 17)
    first.graph.node[0].name = "changed by a caller"
    again = onnx_fp32.export_graph(model, info, 17)
    assert len(traced) == 1 and again.graph.node[0].name != "changed by a caller"
    assert again.SerializeToString() == trace(model, info, 17).SerializeToString()
    key = onnx_fp32.fingerprint(model, info, 17)
    assert onnx_fp32.fingerprint(model, info, 16) != key
    assert onnx_fp32.fingerprint(model, replace(info, version="other"), 17) != key
    with torch.no_grad():
        next(model.parameters()).add_(1e-3)
    changed = onnx_fp32.export_graph(model, info, 17)
    assert len(traced) == 2 and changed.SerializeToString() != again.SerializeToString()
    assert len(onnx_fp32._TRACED) == 2
    monkeypatch.setattr(onnx_fp32, "TRACED_BYTES", 1)  # over the budget: only the newest stays
    onnx_fp32.export_graph(model, info, 17)
    assert len(traced) == 2 and list(onnx_fp32._TRACED) == [onnx_fp32.fingerprint(model, info, 17)]
