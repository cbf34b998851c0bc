"""The model registry: builders by name, one factory, and a clear error for unknown names."""

from __future__ import annotations

import inspect
from collections.abc import Callable

from torch import nn

from maskdepth.runtime.errors import MaskDepthError

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under ``name``; a second builder with the same name is an error."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return add


def list_models() -> list[str]:
    """Names :func:`create_model` accepts."""
    return sorted(_BUILDERS)


def create_model(name: str, **options) -> nn.Module:
    """Build a registered model; unknown names and options fail with the ones that exist."""
    if name not in _BUILDERS:
        raise MaskDepthError(f"unknown model {name!r}; expected one of {', '.join(list_models())}")
    builder = _BUILDERS[name]
    known = [p for p in inspect.signature(builder).parameters if p != "kwargs"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MaskDepthError(
            f"model {name}: unknown option(s) {', '.join(unknown)}; "
            f"expected {', '.join(known) or 'none'}"
        )
    return builder(**options)
