"""One comparison of a candidate model's outputs with a reference's, used by the export gate,
the benchmarks and the parity tests: absolute differences per output, the change in IoU and
RMSE against ground truth, and a verdict that says the smallest tolerance that would pass."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .metrics import MetricAccumulator

OUTPUTS = ("mask", "depth")
# Per precision: the largest allowed max abs diff (fp32), or |dIoU| and |dRMSE| (fp16, int8).
DEFAULT_TOLERANCES = {
    "fp32": {"max_abs": 1e-4},
    "fp16": {"iou": 0.002, "rmse": 0.002},
    "int8": {"iou": 0.01, "rmse": 0.005},
}


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
        truth = (np.asarray(mask_true, np.float32), np.asarray(depth_true, np.float32))
        self.reference.update(
            np.asarray(reference["mask"], np.float32).reshape(truth[0].shape),
            truth[0],
            np.asarray(reference["depth"], np.float32).reshape(truth[1].shape),
            truth[1],
        )
        self.candidate.update(
            np.asarray(candidate["mask"], np.float32).reshape(truth[0].shape),
            truth[0],
            np.asarray(candidate["depth"], np.float32).reshape(truth[1].shape),
            truth[1],
        )

    def result(self, precision: str, tolerance: dict | None = None) -> Comparison:
        ref, cand = self.reference.compute(), self.candidate.compute()
        return Comparison(
            precision=precision,
            count=ref["count"],
            max_abs=dict(self.max_abs),
            mean_abs={k: self.abs_sum[k] / max(self.values[k], 1) for k in OUTPUTS},
            reference={"iou": ref["iou"], "rmse": ref["rmse"]},
            candidate={"iou": cand["iou"], "rmse": cand["rmse"]},
            tolerance=dict(tolerance or DEFAULT_TOLERANCES[precision]),
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
        """The measured value of each quantity a tolerance can bound (the smallest that passes)."""
        return {
            "max_abs": max(self.max_abs.values()),
            "iou": abs(self.d_iou),
            "rmse": abs(self.d_rmse),
        }

    def failures(self) -> list[str]:
        """One phrase per tolerance exceeded: what, by how much."""
        measured = self.measured()
        out = []
        for key, limit in self.tolerance.items():
            value = measured[key]
            if not (value <= limit):  # NaN fails
                label = {"max_abs": "max abs diff", "iou": "|dIoU|", "rmse": "|dRMSE|"}[key]
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
        lines.append("parity: ok" if not failures else "parity: FAILED: " + "; ".join(failures))
        return "\n".join(lines)


def _signed(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:+.4f}"
