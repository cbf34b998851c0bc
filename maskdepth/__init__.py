"""maskdepth: mask and dense depth of what is new in a fixed camera's scene, from one network.

``fit``, ``evaluate`` and ``convert`` train, score and export (:mod:`maskdepth.api`);
``Predictor`` runs an exported model without PyTorch; ``stream`` runs it on live cameras.
They load on first use, so that ``import maskdepth`` stays light.
"""

__version__ = "0.1.0"

__all__ = ["MaskDepthError", "Predictor", "__version__", "convert", "evaluate", "fit", "stream"]

_LAZY = {
    "fit": "maskdepth.api",
    "evaluate": "maskdepth.api",
    "convert": "maskdepth.api",
    "stream": "maskdepth.api",
    "Predictor": "maskdepth.runtime.predictor",
    "MaskDepthError": "maskdepth.runtime.errors",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
