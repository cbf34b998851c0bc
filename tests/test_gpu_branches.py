"""GPU branches whose logic needs no GPU, run here with the facts injected (a GpuInfo), and the
one-line refusal of ``--device cuda`` on a machine without one, for every command that has it."""

from __future__ import annotations

import pytest

from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.runners.cuda import GpuInfo, check_device, gpu_info

H200 = GpuInfo(0, "NVIDIA H200", "9.0")
COMMANDS = {  # each would fail later for other reasons; the device check comes first
    "train": ["train", "--data", "synth", "--out", "run"],
    "export": ["export", "missing.pt", "--out", "model.onnx"],
    "predict": ["predict", "missing.onnx", "--bg", "bg.png", "--scene", "a.png", "--out", "o"],
    "bench": ["bench", "missing.onnx", "--out", "bench"],
    "demo": ["demo"],
    "eval": ["eval", "missing.pt"],
}


def test_device_check_goes_by_the_gpu_it_is_given():
    check_device("cuda", gpu=H200)
    check_device("cpu", gpu=None)
    check_device("auto", gpu=None)
    with pytest.raises(MaskDepthError, match="--device cuda: no CUDA GPU on this machine"):
        check_device("cuda", gpu=None)
    with pytest.raises(MaskDepthError, match="--device gpu: expected one of auto, cpu, cuda"):
        check_device("gpu", gpu=H200)


@pytest.mark.skipif(gpu_info() is not None, reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_device_cuda_without_a_gpu_is_one_line_and_exit_2(command, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*COMMANDS[command], "--device", "cuda"]) == 2
    captured = capfd.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"maskdepth {command}: error: --device cuda: no CUDA GPU")
    assert "--device cpu" in lines[0] and not list(tmp_path.iterdir())  # nothing was started


# GPU N (cuda:N) everywhere a device is taken, and the fp32 gate without TF32


def test_cuda_n_is_a_device_everywhere_one_is_taken():
    from maskdepth.cli import build_parser
    from maskdepth.options import options_from
    from maskdepth.runtime.runners.cuda import parse_device

    assert [parse_device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == [
        ("auto", 0),
        ("cpu", 0),
        ("cuda", 0),
        ("cuda", 1),
    ]
    check_device("cuda:1", gpu=GpuInfo(1, "NVIDIA H200", "9.0"))
    with pytest.raises(MaskDepthError, match="--device cuda:1: no CUDA GPU 1 here"):
        check_device("cuda:1", gpu=None)
    for bad in ("cuda:", "cuda:x", "gpu:1", "cuda:-1"):
        with pytest.raises(MaskDepthError, match=f"device '{bad}': expected one of"):
            parse_device(bad)
        with pytest.raises(MaskDepthError, match=f"--device {bad}: expected one of"):
            check_device(bad)
    for argv in (COMMANDS["export"], COMMANDS["predict"], COMMANDS["bench"], COMMANDS["eval"]):
        args = build_parser().parse_args([*argv, "--device", "cuda:1"])
        assert options_from(args.handler.options, args) is not None
        assert args.device == "cuda:1"


def test_device_gpu_n_reaches_the_cuda_provider_and_tf32_is_off_for_the_gate(tmp_path):
    from test_predictor import write_tiny_model

    from maskdepth.runtime.runners.ort import CUDA, TENSORRT, OnnxRuntimeRunner

    tiny = write_tiny_model(tmp_path / "tiny.onnx")
    runner = OnnxRuntimeRunner(tiny, device="cuda:1")
    assert (runner.requested_device, runner.device_index) == ("cuda", 1)
    assert runner._provider_entry(CUDA) == (CUDA, {"device_id": "1"})  # TF32: onnxruntime's
    assert runner._provider_entry(TENSORRT)[1]["device_id"] == 1
    gate = OnnxRuntimeRunner(tiny, device="cuda", tf32=False)  # what the export gate runs
    assert gate._provider_entry(CUDA) == (CUDA, {"device_id": "0", "use_tf32": "0"})


def test_auto_asks_for_a_gpu_provider_only_when_there_is_a_gpu():
    """onnxruntime-gpu on a machine without a GPU: "auto" asks for nothing (and so warns of
    nothing); "cuda" still asks, so that its absence is an error."""
    from maskdepth.runtime.runners.ort import CPU, CUDA, TENSORRT, wanted_gpu_providers

    gpu_build = [TENSORRT, CUDA, CPU]
    assert wanted_gpu_providers("auto", False, gpu_build, None) == []
    assert wanted_gpu_providers("auto", True, gpu_build, None) == []
    assert wanted_gpu_providers("auto", False, gpu_build, H200) == [CUDA]
    assert wanted_gpu_providers("auto", False, [CPU], H200) == []
    assert wanted_gpu_providers("cuda", False, gpu_build, None) == [CUDA]


def test_fp32_plans_are_built_without_tf32():
    """The builder flags of each precision, set on a real (TensorRT-RTX) builder config."""
    trt = pytest.importorskip("tensorrt_rtx")
    from maskdepth.export.tensorrt_build import Flavour, set_precision_flags
    from maskdepth.runtime.runners.tensorrt import flavour_logger

    builder = trt.Builder(flavour_logger(trt, "tensorrt_rtx"))
    flavour = Flavour("tensorrt_rtx", trt, H200)
    flags = {}
    for precision in ("fp32", "fp16", "int8"):
        config = builder.create_builder_config()
        assert config.get_flag(trt.BuilderFlag.TF32)  # TensorRT's default
        set_precision_flags(config, flavour, precision, fp16_flag=False)
        flags[precision] = config.get_flag(trt.BuilderFlag.TF32)
    assert flags == {"fp32": False, "fp16": True, "int8": True}


def test_a_gpu_made_current_gives_the_previous_one_back():
    """cuda-python's runtime API, as far as ``current()`` uses it (the calls' names and
    signatures are checked against cuda-python in test_gpu_api)."""
    from maskdepth.runtime.runners.cuda import _CudaPython

    class Runtime:
        class cudaError_t:  # noqa: N801 (cuda-python's name)
            cudaSuccess = 0

        def __init__(self) -> None:
            self.device = 0

        def cudaGetDevice(self):  # noqa: N802
            return (0, self.device)

        def cudaSetDevice(self, device):  # noqa: N802
            self.device = device
            return (0,)

        def cudaStreamCreate(self):  # noqa: N802
            return (0, 7)

    runtime = Runtime()
    memory = _CudaPython(runtime, 1)
    assert runtime.device == 0
    with memory.current():
        assert runtime.device == 1
    assert runtime.device == 0


def test_tensorrt_10_makes_fp16_from_an_fp32_file_with_its_flag(tmp_path, monkeypatch):
    """``--from FP32.onnx --precision fp16`` on tensorrt 10.x (its module injected as far as the
    build's precision choice reads it): the precision reaches the build settings and the FP16
    flag; TensorRT-RTX, which builds the precision its graph holds, refuses in one line."""
    from maskdepth.export import engine
    from maskdepth.export.options import ExportOptions
    from maskdepth.export.tensorrt_build import Flavour, plan_precision
    from maskdepth.train.models.configs import default_config

    class TensorRT10:
        __version__ = "10.9.0"

        class BuilderFlag:
            FP16, TF32 = 1, 2

    class TensorRTForRTX:
        __version__ = "1.7.1"

        class BuilderFlag:  # no FP16 flag: precision lives in the graph
            TF32 = 2

    a100 = GpuInfo(0, "NVIDIA A100", "8.0")
    tensorrt, rtx = Flavour("tensorrt", TensorRT10, a100), Flavour("tensorrt_rtx", TensorRTForRTX)
    assert plan_precision("fp32", "fp16", tensorrt, "m.onnx") == ("fp16", True)
    assert plan_precision("fp32", None, tensorrt, "m.onnx") == ("fp32", False)
    with pytest.raises(MaskDepthError, match="m.onnx holds an fp32 graph"):
        plan_precision("fp32", "fp16", rtx, "m.onnx")
    built = []
    monkeypatch.setattr(engine, "read_onnx_info", lambda path: default_config("u2netp-md"))
    monkeypatch.setattr(engine, "build_engine", lambda *args: built.append(args[2]))
    monkeypatch.setattr(engine, "move", lambda *args: None)
    monkeypatch.setattr(engine, "write_report", lambda *args, **kwargs: None)
    options = ExportOptions(format="engine", precision="fp16", from_onnx=str(tmp_path / "m.onnx"))
    engine.export_engine(
        tmp_path / "m.onnx", tmp_path / "m.engine", options, tensorrt, None, {}, None
    )
    assert [settings.precision for settings in built] == ["fp16"]
