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
