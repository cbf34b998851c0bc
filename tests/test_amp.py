"""Mixed precision: which autocast dtype a device gets and when the loss is scaled (the CUDA
rules with the device's bf16 support given, so they run without a GPU), and a real bf16 run on
the CPU, whose autocast executes the same training code as a GPU's."""

from __future__ import annotations

import argparse
import math

import pytest
import torch
from test_train import TINY as TRAIN_TINY

from maskdepth.train import state as state_module
from maskdepth.train.checkpoint import load_checkpoint
from maskdepth.train.config import TrainConfig, add_train_arguments, config_from_args
from maskdepth.train.trainer import amp_dtype, scales_loss, train

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)
TINY = {k: v for k, v in TRAIN_TINY.items() if k not in ("ema_decay", "progress")}
TINY |= {"device": "cpu"}


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


V100, T4, A100, H200 = (7, 0), (7, 5), (8, 0), (9, 0)  # compute capabilities


@pytest.mark.parametrize("device", [CPU, CUDA])
@pytest.mark.parametrize("capability", [V100, A100])
def test_amp_off_is_full_precision(device, capability):
    assert amp_dtype(False, device, capability=capability) is None
    assert not scales_loss(None)


@pytest.mark.parametrize("capability", [None, V100, H200])
def test_the_cpu_autocasts_in_bf16_without_a_scaler(capability):
    assert amp_dtype(True, CPU, capability=capability) == torch.bfloat16
    assert not scales_loss(torch.bfloat16)


@pytest.mark.parametrize("capability", [A100, (8, 6), (8, 9), H200, (12, 0)])
def test_a_gpu_with_bf16_autocasts_in_bf16_without_a_scaler(capability):
    dtype = amp_dtype(True, CUDA, capability=capability)
    assert dtype == torch.bfloat16
    assert not scales_loss(dtype)


@pytest.mark.parametrize("capability", [(6, 1), V100, T4])
def test_a_gpu_without_bf16_autocasts_in_fp16_with_a_scaler(capability):
    dtype = amp_dtype(True, CUDA, capability=capability)
    assert dtype == torch.float16
    assert scales_loss(dtype)


def test_emulated_bf16_counts_as_none(monkeypatch):
    """torch says a V100 or T4 "supports" bf16 (it emulates it, slowly): the device's own
    capability decides, asked of torch when not given."""
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    for capability, expected in (
        (V100, torch.float16),
        (T4, torch.float16),
        (A100, torch.bfloat16),
    ):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda _=None, c=capability: c)
        assert amp_dtype(True, CUDA) == expected, capability


@pytest.mark.parametrize("capability", [T4, H200])
def test_amp_auto_is_on_for_cuda_and_off_for_the_cpu(capability):
    assert amp_dtype(None, CPU) is None
    assert amp_dtype(None, CUDA, capability=capability) in (torch.float16, torch.bfloat16)
    assert amp_dtype(False, CUDA, capability=capability) is None
    assert amp_dtype(True, CPU) == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="asks torch about a CUDA device")
def test_a_gpu_asks_torch_when_not_told():
    native = torch.cuda.get_device_capability(CUDA) >= (8, 0)
    assert amp_dtype(True, CUDA) == (torch.bfloat16 if native else torch.float16)


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


@pytest.mark.parametrize("before, after", [(False, True), (True, False)])
def test_resume_may_turn_fp16_amp_on_or_off(tmp_path, monkeypatch, before, after):
    """A GPU without bf16 (its fp16 autocast and GradScaler, run on the CPU): a checkpoint
    saved with --amp off holds an empty GradScaler state, one saved with it on a loss scale;
    --resume with the other setting continues the run in the new precision."""
    fp16 = lambda amp, device: torch.float16 if amp else None  # noqa: E731
    monkeypatch.setattr(state_module, "amp_dtype", fp16)
    config = TrainConfig(**TINY, amp=before, max_minutes=1e-6, out=str(tmp_path / "run"))
    assert train(config)["stopped"] == "time budget"
    cut = load_checkpoint(tmp_path / "run" / "last.pt")
    assert cut["step"] == 1 and bool(cut["scaler"]) == before

    config.amp, config.max_minutes, config.resume = after, None, True
    resumed = train(config)
    assert resumed["stopped"] == "done" and resumed["step"] == 6
    ckpt = load_checkpoint(resumed["last_path"])
    assert ckpt["train"]["amp"] is after and bool(ckpt["scaler"]) == after
    if after:
        assert ckpt["scaler"]["scale"] > 0 and math.isfinite(ckpt["scaler"]["scale"])
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values())


def test_amp_defaults_to_auto_and_the_flags_force_it():
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)

    def amp(*flags: str) -> bool | None:
        args = parser.parse_args(["--data", "synth", "--out", "run", *flags])
        return config_from_args(args).amp

    assert (amp(), amp("--amp"), amp("--no-amp")) == (None, True, False)
    assert amp_dtype(amp(), CPU) is None  # off on the CPU unless asked for (README, Training)
    assert amp_dtype(amp(), CUDA, capability=H200) == torch.bfloat16
    assert amp_dtype(amp(), CUDA, capability=T4) == torch.float16
    assert amp_dtype(amp("--no-amp"), CUDA, capability=H200) is None
    assert amp_dtype(amp("--amp"), CPU) == torch.bfloat16


def test_cuda_n_picks_gpu_n_and_torchrun_keeps_its_local_rank():
    from maskdepth.runtime.errors import MaskDepthError
    from maskdepth.train.distributed import Dist
    from maskdepth.train.trainer import pick_device

    alone, rank3 = Dist(), Dist(rank=3, world=4, local_rank=3)
    assert pick_device("cuda:1", alone, gpus=2) == torch.device("cuda", 1)
    assert pick_device("cuda", rank3, gpus=2) == torch.device("cuda", 1)  # LOCAL_RANK 3 of 2
    assert pick_device("auto", alone, gpus=0) == CPU
    with pytest.raises(MaskDepthError, match=r"--device cuda:2: torch sees 2 CUDA GPU\(s\)"):
        pick_device("cuda:2", alone, gpus=2)
    with pytest.raises(MaskDepthError, match="under torchrun"):
        pick_device("cuda:1", rank3, gpus=2)
    with pytest.raises(MaskDepthError, match="sees no CUDA GPU"):
        pick_device("cuda:0", alone, gpus=0)
    assert TrainConfig(device="cuda:1", **{k: v for k, v in TINY.items() if k != "device"})
    with pytest.raises(MaskDepthError, match=r"--device 'gpu1': expected one of auto, cpu, cuda"):
        TrainConfig(device="gpu1", **{k: v for k, v in TINY.items() if k != "device"})
