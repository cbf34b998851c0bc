"""One comparison of a candidate model's outputs with a reference's (Polygraphy's shape), used by
the export gate, ``bench``, the demo and the parity tests.

``compare(reference, candidate, samples, tolerance)`` runs both on the same batches (anything with
``infer(feed) -> outputs``: the runtime's runners, ``maskdepth.train.torch_runner.TorchRunner``,
a :class:`Recorded` reference) and returns a :class:`Comparison`: absolute differences per output,
the change in IoU and RMSE against the ground truth, truthy when within tolerance, and the
smallest tolerance that would have passed.

Tolerances are a flat mapping: ``max_abs`` / ``mean_abs`` bound every output (the default),
``mask.max_abs`` / ``depth.mean_abs`` one output (overriding the default for it); ``iou`` bounds
|dIoU| (the mask's) and ``rmse`` |dRMSE| (the depth's); ``*`` sets every bound of the defaults.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .errors import MaskDepthError
from .metrics import MetricAccumulator
from .runners.base import batch_limits

OUTPUTS = ("mask", "depth")
PER_OUTPUT = ("max_abs", "mean_abs")  # bounds that apply to each output
DELTAS = {"iou": "mask", "rmse": "depth"}  # |d metric| against ground truth, and its output
# Per precision: the largest allowed max abs diff (fp32), or |dIoU| and |dRMSE| (fp16, int8).
DEFAULT_TOLERANCES = {
    "fp32": {"max_abs": 1e-4},
    "fp16": {"iou": 0.002, "rmse": 0.002},
    "int8": {"iou": 0.01, "rmse": 0.005},
}
BATCH = 8  # samples per batch; a runner whose profile takes fewer gets them in smaller calls
_LABELS = {
    "max_abs": "max abs diff",
    "mean_abs": "mean abs diff",
    "iou": "|dIoU|",
    "rmse": "|dRMSE|",
}

Outputs = dict[str, np.ndarray]


class Inferrer(Protocol):
    """Anything with a runner's ``infer``: named float32 inputs in, named outputs out."""

    def infer(self, feed: dict[str, np.ndarray]) -> Outputs: ...


class Batch(Protocol):
    feed: dict[str, np.ndarray]  # "bg", "scene": float32 (N, 3, H, W), normalised
    mask: np.ndarray  # ground truth, float32 (N, 1, H, W)
    depth: np.ndarray


class Samples(Protocol):
    """Held-out samples (e.g. ``maskdepth.export.samples.HeldOut``)."""

    def __len__(self) -> int: ...

    def batches(self, size: int) -> Iterator[Batch]: ...


Progress = Callable[[Iterable[Batch], int], Iterable[Batch]]  # (batches, how many) -> batches


def resolve_tolerance(precision: str, override: dict | None = None) -> dict[str, float]:
    """The default tolerances of ``precision`` with ``override``'s keys replaced."""
    tolerance = dict(DEFAULT_TOLERANCES[precision])
    known = {*PER_OUTPUT, *DELTAS, *(f"{o}.{q}" for o in OUTPUTS for q in PER_OUTPUT)}
    for key, value in (override or {}).items():
        if key == "*":
            tolerance = dict.fromkeys(tolerance, value)
        elif key in known:
            tolerance[key] = value
        else:
            raise MaskDepthError(
                f"--tolerance {key}: expected max_abs, mean_abs, iou or rmse, or OUTPUT.max_abs "
                f"/ OUTPUT.mean_abs for an output in {', '.join(OUTPUTS)}"
            )
    return tolerance


def compare(
    reference: Inferrer,
    candidate: Inferrer,
    samples: Samples,
    tolerance: dict | None = None,
    *,
    precision: str = "fp32",
    batch: int = BATCH,
    progress: Progress | None = None,
) -> Comparison:
    """Run ``reference`` and ``candidate`` on the same batches of ``samples`` and compare their
    outputs with each other and with the ground truth. ``tolerance``: None for the defaults of
    ``precision``, else a mapping as in the module's docstring (used as given). Runners must be
    active (``with runner:``); each is fed batches its profile takes (:func:`infer_within`)."""
    diffs = DiffAccumulator()
    batches: Iterable[Batch] = samples.batches(batch)
    if progress is not None:
        batches = progress(batches, -(-len(samples) // batch))
    limits = (batch_limits(reference), batch_limits(candidate))
    for item in batches:
        diffs.update(
            infer_within(reference, item.feed, *limits[0]),
            infer_within(candidate, item.feed, *limits[1]),
            item.mask,
            item.depth,
        )
    return diffs.result(precision, tolerance)


def score(runner: Inferrer, samples: Samples, batch: int = BATCH) -> dict:
    """``runner``'s metrics (IoU, RMSE, ...) against the ground truth of ``samples``."""
    scores = MetricAccumulator()
    limits = batch_limits(runner)
    for item in samples.batches(batch):
        out = infer_within(runner, item.feed, *limits)
        scores.update(out["mask"], item.mask, out["depth"], item.depth)
    return scores.compute()


def infer_within(
    runner: Inferrer, feed: dict[str, np.ndarray], low: int | None, high: int | None
) -> Outputs:
    """``runner.infer(feed)`` in calls of ``low`` to ``high`` samples (:func:`batch_limits`: an
    engine's profile, a fixed batch of an ONNX file): the batch is cut into calls of at most
    ``high``, a short one padded with copies of its first sample up to ``low`` (as the Predictor
    does), and the outputs joined back, the padding dropped."""
    count = len(next(iter(feed.values())))
    if (high is None or count <= high) and (low is None or count >= low):
        return runner.infer(feed)
    step = high or count
    parts: list[Outputs] = []
    for start in range(0, count, step):
        chunk = {name: values[start : start + step] for name, values in feed.items()}
        size = len(next(iter(chunk.values())))
        if low is not None and size < low:
            chunk = {
                name: np.concatenate([v, np.repeat(v[:1], low - size, 0)])
                for name, v in chunk.items()
            }
        parts.append({name: out[:size] for name, out in runner.infer(chunk).items()})
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


class Recorded:
    """``runner``'s outputs remembered by the content of the feed: a reference run once, however
    many candidates are compared with it, and never paired with a candidate by position."""

    def __init__(self, runner: Inferrer) -> None:
        self.runner = runner
        self._outputs: dict[bytes, Outputs] = {}

    def infer(self, feed: dict[str, np.ndarray]) -> Outputs:
        key = _digest(feed)
        if key not in self._outputs:
            activate = getattr(self.runner, "activate", None)
            if activate is not None:
                activate()  # idempotent on a Runner
            self._outputs[key] = self.runner.infer(feed)
        return self._outputs[key]

    def record(self, samples: Samples, batch: int = BATCH, progress: Progress | None = None):
        """Run the reference on every batch of ``samples`` now; returns self."""
        batches: Iterable[Batch] = samples.batches(batch)
        if progress is not None:
            batches = progress(batches, -(-len(samples) // batch))
        for item in batches:
            self.infer(item.feed)
        return self


def _digest(feed: dict[str, np.ndarray]) -> bytes:
    digest = hashlib.blake2b(digest_size=16)
    for name in sorted(feed):
        array = np.ascontiguousarray(feed[name])
        digest.update(f"{name}{array.dtype}{array.shape}".encode())
        digest.update(array.data)
    return digest.digest()


class DiffAccumulator:
    """Streams reference/candidate output pairs and ground truth; constant memory."""

    def __init__(self) -> None:
        self.max_abs = dict.fromkeys(OUTPUTS, 0.0)
        self.abs_sum = dict.fromkeys(OUTPUTS, 0.0)
        self.values = dict.fromkeys(OUTPUTS, 0)
        self.reference = MetricAccumulator()
        self.candidate = MetricAccumulator()

    def update(self, reference: dict, candidate: dict, mask_true, depth_true) -> None:
        """Add a batch: ``reference``/``candidate`` map "mask"/"depth" to (N, 1, H, W) arrays."""
        for name in OUTPUTS:
            ref = np.asarray(reference[name], np.float32)
            diff = np.abs(np.asarray(candidate[name], np.float32) - ref)
            self.max_abs[name] = max(self.max_abs[name], float(diff.max(initial=0.0)))
            self.abs_sum[name] += float(diff.sum(dtype=np.float64))
            self.values[name] += diff.size
        truth = {
            "mask": np.asarray(mask_true, np.float32),
            "depth": np.asarray(depth_true, np.float32),
        }
        for accumulator, outputs in ((self.reference, reference), (self.candidate, candidate)):
            mask, depth = (
                np.asarray(outputs[k], np.float32).reshape(truth[k].shape) for k in OUTPUTS
            )
            accumulator.update(mask, truth["mask"], depth, truth["depth"])

    def result(self, precision: str, tolerance: dict | None = None) -> Comparison:
        ref, cand = self.reference.compute(), self.candidate.compute()
        return Comparison(
            precision=precision,
            count=ref["count"],
            max_abs=dict(self.max_abs),
            mean_abs={k: self.abs_sum[k] / max(self.values[k], 1) for k in OUTPUTS},
            reference={"iou": ref["iou"], "rmse": ref["rmse"]},
            candidate={"iou": cand["iou"], "rmse": cand["rmse"]},
            tolerance=dict(DEFAULT_TOLERANCES[precision] if tolerance is None else tolerance),
        )


@dataclass
class Comparison:
    """A candidate against the reference on the same samples; truthy when within tolerance."""

    precision: str
    count: int
    max_abs: dict[str, float]
    mean_abs: dict[str, float]
    reference: dict[str, float]  # iou, rmse of the reference against ground truth
    candidate: dict[str, float]
    tolerance: dict[str, float] = field(default_factory=dict)

    @property
    def d_iou(self) -> float:
        return self.candidate["iou"] - self.reference["iou"]

    @property
    def d_rmse(self) -> float:
        return self.candidate["rmse"] - self.reference["rmse"]

    def measured(self) -> dict[str, float]:
        """The measured value of every quantity a tolerance can bound: a default key holds the
        largest over the outputs, ``OUTPUT.KEY`` each output's own."""
        values = {"max_abs": max(self.max_abs.values()), "mean_abs": max(self.mean_abs.values())}
        values |= {"iou": abs(self.d_iou), "rmse": abs(self.d_rmse)}
        for name in OUTPUTS:
            values[f"{name}.max_abs"] = self.max_abs[name]
            values[f"{name}.mean_abs"] = self.mean_abs[name]
        return values

    def bounds(self) -> dict[str, float]:
        """The tolerance per output: each default of ``PER_OUTPUT`` spread over the outputs that
        have no bound of their own; ``iou`` and ``rmse`` as given."""
        bounds = {k: v for k, v in self.tolerance.items() if k not in PER_OUTPUT}
        for key in PER_OUTPUT:
            if key in self.tolerance:
                for name in OUTPUTS:
                    bounds.setdefault(f"{name}.{key}", self.tolerance[key])
        return bounds

    def smallest_tolerance(self) -> dict[str, float]:
        """The smallest bounds (same keys as :meth:`bounds`) that would have passed."""
        measured = self.measured()
        return {key: measured[key] for key in self.bounds()}

    def failures(self) -> list[str]:
        """One phrase per tolerance exceeded: what, by how much."""
        measured = self.measured()
        out = []
        for key, limit in self.bounds().items():
            value = measured[key]
            if not (value <= limit):  # NaN fails
                output, _, quantity = key.rpartition(".")
                label = f"{output} {_LABELS[quantity]}".strip()
                out.append(f"{label} {value:.3g} > {limit:g} (over by {value - limit:.3g})")
        return out

    def __bool__(self) -> bool:
        return not self.failures()

    def to_dict(self) -> dict:
        return {
            "precision": self.precision,
            "count": self.count,
            "max_abs": self.max_abs,
            "mean_abs": self.mean_abs,
            "reference": self.reference,
            "candidate": self.candidate,
            "d_iou": self.d_iou,
            "d_rmse": self.d_rmse,
            "tolerance": self.tolerance,
            "measured": self.measured(),
            "smallest_tolerance": self.smallest_tolerance(),
            "passed": bool(self),
            "failures": self.failures(),
        }

    def table(self, title: str = "") -> str:
        """A plain-text table, one row per output, then the verdict."""
        lines = [title] if title else []
        lines.append(f"{'output':<8}{'max abs diff':>14}{'mean abs diff':>15}")
        for name in OUTPUTS:
            lines.append(f"{name:<8}{self.max_abs[name]:>14.3g}{self.mean_abs[name]:>15.3g}")
        lines.append(
            f"IoU  {self.reference['iou']:.4f} -> {self.candidate['iou']:.4f} "
            f"(dIoU {_signed(self.d_iou)})   RMSE {self.reference['rmse']:.4f} -> "
            f"{self.candidate['rmse']:.4f} (dRMSE {_signed(self.d_rmse)})   on {self.count} samples"
        )
        failures = self.failures()
        if not failures:
            lines.append("parity: ok")
        else:
            smallest = ",".join(f"{k}={v:.3g}" for k, v in self.smallest_tolerance().items())
            lines.append(f"parity: FAILED: {'; '.join(failures)} (passes with {smallest})")
        return "\n".join(lines)


def _signed(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.4f}"
