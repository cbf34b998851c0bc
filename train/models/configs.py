"""Each model variant's default config (timm's pretrained cfg): input size, mean/std, stride,
outputs and their meaning, as a :class:`~maskdepth.runtime.model_info.ModelInfo`.

Plain data and no torch, so that ``TrainConfig`` refuses a size the model cannot export without
loading PyTorch. The registry refuses a builder whose variant has no config here, so every
builder in ``u2net.py`` has its config beside it in this table. Training replaces the mean/std
and depth scale with its data's (``maskdepth.train.datasets.training_config``).
"""

from __future__ import annotations

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.model_info import STRIDE, ModelInfo
from maskdepth.runtime.preprocess import Preprocessing

TASKS = ("mask", "depth")  # every model's outputs, in this order
SEED_SIZE = (224, 224)  # the seed's final training size, and the default export size


def _u2net(name: str) -> ModelInfo:
    """The U2-Net family: five 2x poolings (stride 32), the seed's mean/std, no depth scale."""
    return ModelInfo(name, Preprocessing(size=SEED_SIZE), stride=STRIDE)


CONFIGS: dict[str, ModelInfo] = {
    "u2netp-md": _u2net("u2netp-md"),
    "u2net-md": _u2net("u2net-md"),
    "u2netp-lite": _u2net("u2netp-lite"),
}


def default_config(name: str) -> ModelInfo:
    """The default config of variant ``name``; an unknown name says which exist."""
    if name not in CONFIGS:
        known = ", ".join(sorted(CONFIGS))
        raise MaskDepthError(f"unknown model {name!r}; expected one of {known}")
    return CONFIGS[name]
