"""Where and in what precision training runs: the device, the autocast dtype, and batches
moved there in channels_last memory format (also on CPU, where oneDNN's 3x3 convolutions are
several times faster in it)."""

from __future__ import annotations

import torch

from maskdepth.runtime.errors import MaskDepthError

from .distributed import Dist

CHANNELS_LAST = torch.channels_last


def pick_device(choice: str, job: Dist) -> torch.device:
    """``--device``: "auto" (CUDA when torch sees a GPU), "cuda" (this rank's GPU) or "cpu"."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise MaskDepthError(
                f"--device cuda: torch {torch.__version__} sees no CUDA GPU; use --device cpu"
            )
        return torch.device("cuda", job.local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def amp_dtype(amp: bool, device: torch.device, bf16: bool | None = None) -> torch.dtype | None:
    """bf16 where the device has it (no loss scaling needed), else fp16 with a GradScaler.

    ``bf16`` says whether a CUDA device has bf16; None asks torch. Other devices autocast in
    bf16 (the CPU's autocast dtype).
    """
    if not amp:
        return None
    if device.type == "cuda":
        if bf16 is None:
            bf16 = torch.cuda.is_bf16_supported()
        if not bf16:
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
