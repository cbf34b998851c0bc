"""The one error type users see, and the one-line message for a missing optional dependency."""

from __future__ import annotations

import importlib
from types import ModuleType


class MaskDepthError(ValueError):
    """A problem the user can fix: the message says what failed, where, and what was expected.

    The CLI prints it as one line and exits with code 2; the Python API raises it as is.
    """


class MissingDependencyError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import an optional dependency or raise a one-line error naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'maskdepth[{extra}]'"
        ) from exc
