"""Training side of maskdepth: data, model zoo, losses and the loop (PyTorch).

``create_model`` and ``list_models`` (the model zoo, the training side's first call) are
importable from here; they load PyTorch on first use, so ``maskdepth.train.data`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import create_model, list_models

__all__ = ["create_model", "list_models"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
