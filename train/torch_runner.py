"""The PyTorch model behind the runtime's runner interface: ``infer({"bg", "scene"}) -> {"mask",
"depth"}`` like the onnxruntime and TensorRT runners, so that the export gate, ``bench``, the demo
and the tests compare it with them through one ``compare()`` (``maskdepth.runtime.compare``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from torch import nn

from maskdepth.runtime.runners.base import Runner

from .device import pick_device
from .distributed import Dist
from .models.u2net import InferenceModel

INPUTS = ("bg", "scene")


def torch_device(choice: str) -> torch.device:
    """``choice`` (auto, cpu, cuda or cuda:N: every ``--device``) as a torch device, by the
    trainer's rule (:func:`~maskdepth.train.device.pick_device`); auto takes the GPU when torch
    sees one."""
    return pick_device(choice, Dist())


class TorchRunner(Runner):
    """A registered model (raw logits, e.g. a U2NetMD) run as the exported graph runs: normalised
    float32 ``bg`` and ``scene`` (N, 3, H, W) in, ``mask`` and ``depth`` probabilities
    (N, 1, H, W) float32 out, as numpy arrays.

    ``model``: the module, or a callable that returns it (loaded at :meth:`activate`).
    ``device``: where it runs ("cpu", "cuda", "auto" or a torch device; the caller chooses);
    :meth:`activate` moves the model there in place, as ``nn.Module.to`` does.
    ``autocast``: a reduced precision (torch.float16 / bfloat16) to run under autocast, or None.
    """

    name = "pytorch"
    provider = "eager"

    def __init__(
        self,
        model: nn.Module | Callable[[], nn.Module],
        device: str | torch.device = "cpu",
        autocast: torch.dtype | None = None,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        self._load = model if not isinstance(model, nn.Module) else (lambda: model)
        self.torch_device = device if isinstance(device, torch.device) else torch_device(device)
        self.device = self.torch_device.type
        self.autocast = autocast
        self.threads = threads
        self.wrapped: InferenceModel | None = None

    def activate_impl(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        model = self._load()
        self.wrapped = InferenceModel(model).to(self.torch_device).eval()

    def deactivate_impl(self) -> None:
        self.wrapped = None

    def get_input_metadata_impl(self) -> dict[str, tuple[np.dtype, tuple]]:
        shape = ("batch", 3, "height", "width")
        return {name: (np.dtype(np.float32), shape) for name in INPUTS}

    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.wrapped is not None  # infer() checks activation first
        tensors = [torch.as_tensor(np.asarray(feed[k], np.float32)) for k in INPUTS]
        tensors = [t.to(self.torch_device) for t in tensors]
        autocast = (
            torch.autocast(self.torch_device.type, dtype=self.autocast)
            if self.autocast is not None
            else nullcontext()
        )
        with torch.inference_mode(), autocast:
            mask, depth = self.wrapped(*tensors)
        return {
            "mask": mask.float().cpu().numpy(),
            "depth": depth.float().cpu().numpy(),
        }
