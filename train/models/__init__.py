"""The model zoo: ``create_model(name, **options)``, ``list_models()`` and each variant's
``default_config(name)``.

``default_config`` is plain data; the rest loads PyTorch on first use, so that the training
options (``maskdepth.train.config``) check a size against a model's config without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .configs import default_config

if TYPE_CHECKING:
    from .registry import create_model, list_models, register_model
    from .u2net import TASKS, InferenceModel, U2NetMD

__all__ = [
    "TASKS",
    "InferenceModel",
    "U2NetMD",
    "create_model",
    "default_config",
    "list_models",
    "register_model",
]
_LAZY = {"create_model", "list_models", "register_model", "TASKS", "InferenceModel", "U2NetMD"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        u2net = importlib.import_module(".u2net", __name__)  # registers the U2-Net family
        registry = importlib.import_module(".registry", __name__)
        return getattr(registry if hasattr(registry, name) else u2net, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
