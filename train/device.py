"""Where and in what precision training runs: the device, the autocast dtype, and batches
moved there in channels_last memory format (also on CPU, where oneDNN's 3x3 convolutions are
several times faster in it)."""

from __future__ import annotations

import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.runners.cuda import parse_device

from .distributed import Dist

CHANNELS_LAST = torch.channels_last


def pick_device(choice: str, job: Dist, gpus: int | None = None) -> torch.device:
    """``--device``: "auto" (CUDA when torch sees a GPU), "cuda" (this rank's GPU: LOCAL_RANK
    under torchrun), "cuda:N" (GPU N; one process only) or "cpu". ``gpus``: how many GPUs torch
    sees (None asks it)."""
    kind, index = parse_device(choice)
    gpus = (torch.cuda.device_count() if torch.cuda.is_available() else 0) if gpus is None else gpus
    if kind == "auto":
        kind = "cuda" if gpus else "cpu"
    if kind == "cpu":
        return torch.device("cpu")
    if not gpus:
        raise MaskDepthError(
            f"--device {choice}: torch {torch.__version__} sees no CUDA GPU; use --device cpu"
        )
    if ":" not in choice:
        return torch.device("cuda", job.local_rank % gpus)
    if job.active:
        raise MaskDepthError(
            f"--device {choice}: under torchrun each process takes its LOCAL_RANK's GPU; "
            "use --device cuda and CUDA_VISIBLE_DEVICES to choose the GPUs"
        )
    if index >= gpus:
        raise MaskDepthError(f"--device {choice}: torch sees {gpus} CUDA GPU(s), 0 to {gpus - 1}")
    return torch.device("cuda", index)


NATIVE_BF16 = (8, 0)  # Ampere: bf16 tensor cores; Volta (7.0) and Turing (7.5) only emulate it


def amp_on(amp: bool | None, device: torch.device) -> bool:
    """``--amp``: True or False as forced (``--amp`` / ``--no-amp``); None ("auto", the
    default) is on for CUDA, off for the CPU (README, Training: bf16 there is fast only on some
    CPUs and its accuracy is not measured yet)."""
    return device.type == "cuda" if amp is None else amp


def amp_dtype(
    amp: bool | None, device: torch.device, capability: tuple[int, int] | None = None
) -> torch.dtype | None:
    """bf16 where the device has it (no loss scaling needed), else fp16 with a GradScaler.

    ``amp``: see :func:`amp_on`. A CUDA device has bf16 from compute capability 8.0
    (``capability``; None asks torch): ``torch.cuda.is_bf16_supported()`` also counts the slow
    emulation of older GPUs, where fp16 with a GradScaler is the fast choice. Other devices
    autocast in bf16 (the CPU's autocast dtype).
    """
    if not amp_on(amp, device):
        return None
    if device.type == "cuda":
        if capability is None:
            capability = torch.cuda.get_device_capability(device)
        if tuple(capability) < NATIVE_BF16:
            return torch.float16
    return torch.bfloat16


def scales_loss(dtype: torch.dtype | None) -> bool:
    """Whether training in autocast ``dtype`` needs a GradScaler: only fp16, whose narrow range
    lets small gradients underflow (bf16 has float32's range)."""
    return dtype == torch.float16


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Autocast in ``dtype`` on ``device``; off when ``dtype`` is None (full precision)."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def to_device(batch: dict, device: torch.device) -> tuple[torch.Tensor, ...]:
    """(inputs in channels_last, mask, depth) of a loader batch, on ``device``."""
    move = {"device": device, "non_blocking": True}
    inputs = batch["input"].to(**move).contiguous(memory_format=CHANNELS_LAST)
    return inputs, batch["mask"].to(**move), batch["depth"].to(**move)
