"""The model registry: builders by name, one factory, and a clear error for unknown names."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from maskdepth.runtime.errors import MaskDepthError

from .configs import CONFIGS

_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
FAMILIES = (".u2net",)  # the modules whose import registers their builders


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a builder under ``name``; a second builder with the same name, or one whose
    variant has no default config in ``configs.CONFIGS``, is an error."""

    def add(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        if name not in CONFIGS:
            raise ValueError(f"model {name!r} has no default config in configs.CONFIGS")
        _BUILDERS[name] = builder
        return builder

    return add


def _load_families() -> None:
    for module in FAMILIES:
        importlib.import_module(module, __package__)


def list_models() -> list[str]:
    """Names :func:`create_model` accepts."""
    _load_families()
    return sorted(_BUILDERS)


def create_model(name: str, refine: str | None = None, **options) -> nn.Module:
    """Build a registered model; unknown names and options fail with the ones that exist.

    ``refine``: None (the network alone, exactly as before), or a refiner kind ("guided",
    "conv"): a :class:`~maskdepth.train.models.refiner.RefinedModel` around the network.

    The model keeps ``name`` and ``options`` (every builder option, defaults included, and
    ``refine`` when set): what a checkpoint records so that :func:`create_model` rebuilds the
    same model from it.
    """
    _load_families()
    if name not in _BUILDERS:
        raise MaskDepthError(f"unknown model {name!r}; expected one of {', '.join(list_models())}")
    builder = _BUILDERS[name]
    signature = inspect.signature(builder)
    known = [p for p in signature.parameters if p != "kwargs"]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MaskDepthError(
            f"model {name}: unknown option(s) {', '.join(unknown)}; "
            f"expected {', '.join(known) or 'none'}"
        )
    bound = signature.bind(**options)
    bound.apply_defaults()
    model = builder(**options)
    recorded = dict(bound.arguments)
    if refine is not None:
        from .refiner import REFINERS, RefinedModel

        if refine not in REFINERS:
            raise MaskDepthError(
                f"model {name}: unknown refine {refine!r}; expected one of {', '.join(REFINERS)}"
            )
        model = RefinedModel(model, refine)
        recorded["refine"] = refine
    # plain attributes beside the module's own (nn.Module.__setattr__ keeps them as such)
    object.__setattr__(model, "name", name)
    object.__setattr__(model, "options", recorded)
    return model
