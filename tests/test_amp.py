"""Mixed precision: which autocast dtype a device gets and when the loss is scaled (the CUDA
rules with the device's bf16 support given, so they run without a GPU), and a real bf16 run on
the CPU, whose autocast executes the same training code as a GPU's."""

from __future__ import annotations

import math

import pytest
import torch
from test_train import TINY as TRAIN_TINY

from maskdepth.train.checkpoint import load_checkpoint
from maskdepth.train.config import TrainConfig
from maskdepth.train.trainer import amp_dtype, scales_loss, train

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
TINY = {k: v for k, v in TRAIN_TINY.items() if k not in ("ema_decay", "progress")}
TINY |= {"device": "cpu"}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("bf16", [None, True, False])
def test_amp_off_is_full_precision(device, bf16):
    assert amp_dtype(False, device, bf16=bf16) is None
    assert not scales_loss(None)


@pytest.mark.parametrize("bf16", [None, True, False])
def test_the_cpu_autocasts_in_bf16_without_a_scaler(bf16):
    assert amp_dtype(True, CPU, bf16=bf16) == torch.bfloat16
    assert not scales_loss(torch.bfloat16)


def test_a_gpu_with_bf16_autocasts_in_bf16_without_a_scaler():
    dtype = amp_dtype(True, CUDA, bf16=True)
    assert dtype == torch.bfloat16
    assert not scales_loss(dtype)


def test_a_gpu_without_bf16_autocasts_in_fp16_with_a_scaler():
    dtype = amp_dtype(True, CUDA, bf16=False)
    assert dtype == torch.float16
    assert scales_loss(dtype)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="asks torch about a CUDA device")
def test_a_gpu_asks_torch_when_not_told():
    expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    assert amp_dtype(True, CUDA) == expected


def test_a_bf16_run_on_the_cpu_trains_float32_channels_last_weights(tmp_path, capsys):
    out = tmp_path / "amp"
    result = train(TrainConfig(**TINY, amp=True, progress=True, out=str(out)))

    assert "on cpu, amp bfloat16:" in capsys.readouterr().out  # the run's own intro line
    assert result["step"] == 6  # one epoch: 13 training scenes in whole batches of 2
    for name in ("loss", "iou", "rmse"):
        assert math.isfinite(result["metrics"][name]), name
    assert math.isfinite(result["best"]["score"])

    ckpt = load_checkpoint(result["last_path"])
    assert ckpt["train"]["amp"] is True
    assert ckpt["scaler"] == {}  # bf16 needs no loss scaling: the GradScaler stayed off
    weights = {k: v for k, v in ckpt["state_dict"].items() if v.is_floating_point()}
    assert weights and all(v.dtype == torch.float32 for v in weights.values())
    for row in ckpt["metrics"].values():
        assert math.isfinite(row)

    # torch.save keeps strides: the weights were channels_last after training, and Adam's
    # moments (created like each parameter at its first step) show they were during it.
    convs = {k: v for k, v in weights.items() if v.dim() == 4}
    assert convs and all(v.is_contiguous(memory_format=torch.channels_last) for v in convs.values())
    assert any(not v.is_contiguous() for v in convs.values())  # not trivially both layouts
    moments = [state["exp_avg"] for state in ckpt["optimizer"]["state"].values()]
    moments = [m for m in moments if m.dim() == 4]
    assert moments and all(m.dtype == torch.float32 for m in moments)
    assert all(m.is_contiguous(memory_format=torch.channels_last) for m in moments)
    assert any(not m.is_contiguous() for m in moments)
