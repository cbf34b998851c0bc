"""`maskdepth export --format triton`: the repository's configs parse as Triton's ModelConfig and
agree with the ONNX graph, the ensemble connects, and the python backends' steps (run here in
process, no server) give what Predictor.predict gives."""

from __future__ import annotations

import ast
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from maskdepth.cli import main
from maskdepth.export.triton import (
    TritonSettings,
    check_plan,
    net_config,
    pbtxt,
)
from maskdepth.export.triton_check import (
    check_repository,
    ensemble_problems,
    graph_problems,
    load_configs,
    parse_config,
)
from maskdepth.runtime import MaskDepthError, Predictor
from maskdepth.runtime.engine_sidecar import make_sidecar, write_sidecar
from maskdepth.runtime.image import read_image
from maskdepth.runtime.model_info import read_onnx_info
from maskdepth.runtime.runners.cuda import GpuInfo
from maskdepth.runtime.runners.ort import OnnxRuntimeRunner
from maskdepth.runtime.triton import steps
from tests.conftest import write_seed_dataset

pytest.importorskip("tritonclient.grpc.model_config_pb2")

FAST = ["--parity-count", "8", "--max-batch", "4"]
MODEL_FILES = Path(steps.__file__).parent


def _export(checkpoint: Path, out: Path, *extra: str) -> Path:
    args = ["export", str(checkpoint), "--format", "triton", "--out", str(out), *FAST, *extra]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def repos(tiny_checkpoint, tmp_path_factory):
    """The python network (what the live tests serve) and onnxruntime with its TensorRT
    accelerator at fp16, each exported once through the CLI."""
    out = tmp_path_factory.mktemp("triton")
    return {
        "python": _export(tiny_checkpoint, out / "python", "--triton-network", "python"),
        "onnxruntime": _export(tiny_checkpoint, out / "ort", "--precision", "fp16"),
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[tuple[np.ndarray, np.ndarray]]:
    """(scene, bg) pairs read back from image files, at two sizes (one not square)."""
    pairs = []
    for size, crop in ((48, None), (90, (90, 70))):
        root = tmp_path_factory.mktemp(f"images{size}")
        write_seed_dataset(root, backgrounds=1, per_background=1, size=size)
        scene = read_image(next((root / "fg_bg" / "1").iterdir()))
        bg = read_image(next((root / "bg").iterdir()))
        if crop:
            scene, bg = scene[: crop[0], : crop[1]].copy(), bg[: crop[0], : crop[1]].copy()
        pairs.append((scene, bg))
    return pairs


# ------------------------------------------------------------------------------ configs


@pytest.mark.parametrize("network", ["python", "onnxruntime"])
def test_every_config_parses_and_agrees_with_the_onnx_graph(repos, network):
    root = repos[network]
    configs = check_repository(root)  # parses, connects, agrees with model.onnx, warm-ups
    assert sorted(configs) == ["maskdepth", "maskdepth_net", "maskdepth_post", "maskdepth_pre"]
    net = configs["maskdepth_net"]
    assert net.max_batch_size == 4 and net.dynamic_batching.max_queue_delay_microseconds > 0
    graph = onnx.load(str(root / "maskdepth_net" / "1" / "model.onnx")).graph
    for tensor in [*graph.input, *graph.output]:  # what onnxruntime's backend needs to batch
        batch = tensor.type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.HasField("dim_value"), tensor.name
    assert [list(t.dims) for t in net.input] == [[3, 32, 32]] * 2
    assert [list(t.dims) for t in net.output] == [[1, 32, 32]] * 2
    for name in ("maskdepth", "maskdepth_pre", "maskdepth_post"):
        assert "max_batch_size: 0" in (root / name / "config.pbtxt").read_text()  # not dropped
    ensemble = configs["maskdepth"]
    assert [(t.name, list(t.dims)) for t in ensemble.input] == [("scene", [-1, -1, 3]),
                                                                ("bg", [-1, -1, 3])]  # fmt: skip
    assert [(t.name, list(t.dims)) for t in ensemble.output] == [("mask", [-1, -1]),
                                                                 ("depth", [-1, -1])]  # fmt: skip
    assert all(c.model_warmup for n, c in configs.items() if n != "maskdepth")


def test_the_network_kinds_and_precisions(repos):
    python = load_configs(repos["python"])["maskdepth_net"]
    assert python.backend == "python" and python.instance_group[0].kind == 2  # KIND_CPU
    assert (repos["python"] / "maskdepth_net" / "1" / "model.py").is_file()
    ort = load_configs(repos["onnxruntime"])["maskdepth_net"]
    assert ort.platform == "onnxruntime_onnx" and ort.instance_group[0].kind == 1  # KIND_GPU
    (accelerator,) = ort.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "FP16"
    assert read_onnx_info(repos["onnxruntime"] / "maskdepth_net" / "1" / "model.onnx").precision \
        == "fp32"  # fmt: skip  # TensorRT makes the fp16 itself
    info = read_onnx_info(repos["python"] / "maskdepth_net" / "1" / "model.onnx")
    graph = repos["python"] / "maskdepth_net" / "1" / "model.onnx"
    for settings in (TritonSettings("tensorrt", 4, 2, "fp16"),
                     TritonSettings("onnxruntime", 4, 1, "int8"),
                     TritonSettings("python", 4, 3, "fp32")):  # fmt: skip
        text = pbtxt(net_config(info, settings))
        (config_file := graph.parent.parent.parent / f"{settings.network}.pbtxt").write_text(text)
        config = parse_config(config_file)
        assert not graph_problems(config, graph), settings
        assert config.instance_group[0].count == settings.instances
    dynamic = replace(info, dynamic=("batch", "height", "width"))
    dims = [t["dims"] for t in net_config(dynamic, TritonSettings())["input"]]
    assert dims == [[3, -1, -1]] * 2


def test_the_checker_fails_on_an_unknown_field_a_wrong_enum_and_a_broken_map(repos, tmp_path):
    root = tmp_path / "repo"
    shutil.copytree(repos["python"], root)
    config = root / "maskdepth_pre" / "config.pbtxt"
    original = config.read_text()
    config.write_text(original.replace("max_batch_size: 0", "max_batch_sizes: 0"))
    with pytest.raises(MaskDepthError, match="max_batch_sizes"):
        check_repository(root)
    config.write_text(original.replace("KIND_CPU", "KIND_CPUS"))
    with pytest.raises(MaskDepthError, match="KIND_CPUS"):
        check_repository(root)
    config.write_text(original.replace('name: "size"\n  data_type: TYPE_INT32', 'name: "size"\n'
                                       "  data_type: TYPE_INT64"))  # fmt: skip
    with pytest.raises(MaskDepthError, match="size: TYPE_INT64 on one end, TYPE_INT32"):
        check_repository(root)
    config.write_text(original)
    ensemble = root / "maskdepth" / "config.pbtxt"
    text = ensemble.read_text()
    ensemble.write_text(
        text.replace('key: "size"\n      value: "size"', 'key: "x"\n value: "y"', 1)
    )
    problems = ensemble_problems(load_configs(root))
    assert "maskdepth_pre: output_map names no output x" in problems
    assert "maskdepth_post: reads size before any step makes it" in problems
    ensemble.write_text(text)
    check_repository(root)  # restored: passes again


def test_model_info_is_written_once_and_is_the_networks(repos):
    root = repos["python"]
    assert list(root.rglob(steps.INFO_FILE)) == [root / steps.INFO_FILE]
    info = steps.read_info(root / "maskdepth_pre")
    assert info == read_onnx_info(root / "maskdepth_net" / "1" / "model.onnx")
    size = np.frombuffer((root / "maskdepth_post" / "warmup" / "size").read_bytes(), np.int32)
    assert size.tolist() == list(info.size)
    readme = (root / "README.md").read_text()
    assert "nvcr.io/nvidia/tritonserver:24.10-py3" in readme and "--no-deps" in readme
    assert 'Predictor("grpc://HOST:8001/maskdepth")' in readme


def test_the_model_files_import_only_numpy_opencv_and_the_runtime():
    allowed = {"__future__", "functools", "json", "pathlib", "collections.abc", "numpy", "cv2",
               "triton_python_backend_utils"}  # fmt: skip
    for path in sorted(MODEL_FILES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert name in allowed or name.startswith("maskdepth.runtime."), (path, name)


# ------------------------------------------------------------------------------ the steps


def _serve_in_process(root: Path, pairs) -> list[dict]:
    """What the ensemble does, step by step, with the repository's own files: pre per request,
    the net once over all of them (one dynamic batch), post per request."""
    info = steps.read_info(root / "maskdepth_pre")
    prepared = [steps.preprocess(info, scene, bg) for scene, bg in pairs]
    feeds = [{"bg": p["net_bg"], "scene": p["net_scene"]} for p in prepared]
    with OnnxRuntimeRunner(root / "maskdepth_net" / "1" / "model.onnx") as runner:
        results = steps.run_network(runner, feeds)
    return [
        steps.postprocess(info, result["mask"], result["depth"], p["size"])
        for result, p in zip(results, prepared)
    ]


def test_the_in_process_chain_equals_predictor(repos, images):
    root = repos["python"]
    served = _serve_in_process(root, images)
    with Predictor(root / "maskdepth_net" / "1" / "model.onnx", device="cpu") as predictor:
        for (scene, bg), answer in zip(images, served):
            expected = predictor.predict(scene, bg=bg)
            for name in ("mask", "depth"):
                assert answer[name].shape == scene.shape[:2] and answer[name].dtype == np.float32
                np.testing.assert_allclose(answer[name], getattr(expected, name), rtol=0, atol=1e-5)
    assert images[0][0].shape != images[1][0].shape


def test_pre_refuses_what_the_server_must_refuse(repos, images):
    info = steps.read_info(repos["python"] / "maskdepth_pre")
    scene, bg = images[0]
    with pytest.raises(MaskDepthError, match="bg: shape .* differs from scene"):
        steps.preprocess(info, scene, images[1][1])
    with pytest.raises(MaskDepthError, match="scene: empty array"):
        steps.preprocess(info, scene[:0], bg[:0])
    with pytest.raises(MaskDepthError, match="scene: expected dtype uint8"):
        steps.preprocess(info, scene.astype(np.float32), bg)
    with pytest.raises(MaskDepthError, match="size: expected a positive height"):
        steps.postprocess(info, np.zeros((1, 1, 32, 32), np.float32),
                          np.zeros((1, 1, 32, 32), np.float32), np.zeros(2, np.int32))  # fmt: skip


# ------------------------------------------------------------------------------ the command


def test_an_existing_out_and_a_failed_parity_are_refused(tiny_checkpoint, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    args = ["export", str(tiny_checkpoint), "--format", "triton", "--out", str(taken), *FAST]
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    out = tmp_path / "repo"
    args[args.index(str(taken))] = str(out)
    assert main([*args, "--tolerance", "1e-12"]) == 1
    assert not out.exists() and not (tmp_path / ".repo.partial").exists()
    failed = tmp_path / "repo.parity-failed" / "maskdepth_net" / "1"
    assert (failed / "model.parity-failed.onnx").is_file()


def test_a_plan_is_refused_unless_its_sidecar_matches(tiny_checkpoint, repos, tmp_path):
    info = read_onnx_info(repos["python"] / "maskdepth_net" / "1" / "model.onnx")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"a serialized plan")
    gpu = GpuInfo(0, "NVIDIA L4", "8.9")

    def sidecar(flavour="tensorrt", largest=8, data=b"a serialized plan"):
        profile = {"scene": {"min": [1, 3, 32, 32], "opt": [4, 3, 32, 32],
                             "max": [largest, 3, 32, 32]}}  # fmt: skip
        target = {"gpu": gpu.name, "compute_capability": "8.9"}
        write_sidecar(plan, make_sidecar(
            flavour=flavour, flavour_version="10.5.0", target=target, profile=profile,
            precision="fp16", onnx_path=repos["python"] / "maskdepth_net" / "1" / "model.onnx",
            plan=data, info=info,
        ))  # fmt: skip

    sidecar()
    check_plan(plan, 8, "10.5.0", gpu)  # the same TensorRT and GPU: served
    for made, settings, wanted in [
        ({}, (8, "10.7.0", gpu), "built with tensorrt 10.5.0, this is tensorrt 10.7.0"),
        ({}, (8, None, gpu), "which is not installed"),
        ({}, (8, "10.5.0", GpuInfo(0, "NVIDIA A100", "8.0")), "this GPU NVIDIA A100 is 8.0"),
        ({"largest": 4}, (8, "10.5.0", gpu), "largest batch is 4, below --max-batch 8"),
        ({"flavour": "tensorrt_rtx"}, (8, "10.5.0", gpu), "built with tensorrt_rtx"),
        ({"data": b"another plan"}, (8, "10.5.0", gpu), "describes another plan"),
    ]:
        sidecar(**made)
        with pytest.raises(MaskDepthError, match=wanted):
            check_plan(plan, *settings)
    plan.with_name("model.plan.json").unlink()
    with pytest.raises(MaskDepthError, match="no sidecar"):
        check_plan(plan, 8, "10.5.0", gpu)
