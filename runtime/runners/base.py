"""The runner interface every backend implements: activate, infer(feed) -> outputs, deactivate."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

import numpy as np

from maskdepth.runtime.errors import MaskDepthError


class Runner(ABC):
    """One loaded model on one device. Subclasses implement only the ``*_impl`` methods."""

    name = "runner"

    def __init__(self) -> None:
        self.is_active = False
        self.last_inference_time: float | None = None

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc) -> None:
        self.deactivate()

    def activate(self) -> None:
        if not self.is_active:
            self.activate_impl()
            self.is_active = True

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    @property
    def input_metadata(self) -> dict[str, tuple[np.dtype, tuple]]:
        """Input name -> (dtype, shape); a dimension that is not fixed is a string or None."""
        self._check_active()
        return self.get_input_metadata_impl()

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs and return the named outputs."""
        self._check_active()
        expected = self.get_input_metadata_impl()
        missing = sorted(set(expected) - set(feed))
        extra = sorted(set(feed) - set(expected))
        if missing or extra:
            raise MaskDepthError(
                f"{self.name}: inputs {sorted(feed)} do not match the model's {sorted(expected)}"
            )
        start = time.perf_counter()
        outputs = self.infer_impl(feed)
        self.last_inference_time = time.perf_counter() - start
        return outputs

    def _check_active(self) -> None:
        if not self.is_active:
            raise MaskDepthError(f"{self.name}: call activate() (or use 'with') before inference")

    @abstractmethod
    def activate_impl(self) -> None: ...

    @abstractmethod
    def get_input_metadata_impl(self) -> dict[str, tuple[np.dtype, tuple]]: ...

    @abstractmethod
    def infer_impl(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def deactivate_impl(self) -> None:
        """Release what activate_impl took; nothing by default."""


def batch_limits(runner: object) -> tuple[int | None, int | None]:
    """(smallest, largest) batch an active runner takes: an engine's optimisation profile, a
    fixed batch dimension of an ONNX model; None where it is free (or the runner does not say)."""
    profile = (getattr(runner, "sidecar", None) or {}).get("profile", {}).get("scene")
    if profile:
        return int(profile["min"][0]), int(profile["max"][0])
    metadata = getattr(runner, "input_metadata", None)
    shape = (metadata or {}).get("scene", (None, ()))[1]
    batch = shape[0] if shape else None
    fixed = batch if isinstance(batch, int) and batch > 0 else None
    return fixed, fixed
