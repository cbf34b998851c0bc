"""The statistics of one training epoch on this rank: loss and its parts, metrics, images and
seconds, kept as device sums (no host synchronisation per step) until the epoch's row of
``metrics.csv`` adds them over ranks."""

from __future__ import annotations

import torch

from . import distributed
from .distributed import Dist
from .losses import LossConfig
from .metrics import TorchMetricAccumulator


def part_names(loss_config: LossConfig) -> list[str]:
    """The loss parts logged beside the loss: per task, then per task and term."""
    names = ["mask", "depth"]
    for task in ("mask", "depth"):
        names += [f"{task}/{term}" for term in loss_config.terms(task)]
    return names


class EpochStats:
    """The epoch's sums: ``parts`` (loss, then :func:`part_names`, each times the images),
    ``metrics`` (a :class:`TorchMetricAccumulator` sums vector), ``images``, ``seconds`` of
    training and ``wait`` (seconds spent waiting for data). :attr:`sums` is what a checkpoint
    keeps as ``progress.epoch_sums``."""

    def __init__(
        self, loss_config: LossConfig, device: torch.device, sums: dict | None = None
    ) -> None:
        self.loss_config, self.device = loss_config, device
        self.names = ["loss", *part_names(loss_config)]
        self.sums = self._zeros() if sums is None else self._moved(sums)

    def _zeros(self) -> dict:
        def zeros(n: int) -> torch.Tensor:
            return torch.zeros(n, dtype=torch.float64, device=self.device)

        return {
            "parts": zeros(len(self.names)),
            "metrics": TorchMetricAccumulator(self.device).sums,
            "images": zeros(1),
            "seconds": 0.0,
            "wait": 0.0,
        }

    def _moved(self, sums: dict) -> dict:
        """A checkpoint's sums, their tensors on this run's device."""
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in sums.items()}

    def reset(self) -> None:
        self.sums = self._zeros()

    def add_seconds(self, key: str, seconds: float) -> None:
        """Count ``seconds`` of training (``"seconds"``) or of waiting for data (``"wait"``)."""
        self.sums[key] += seconds

    @property
    def seconds(self) -> float:
        return self.sums["seconds"]

    @torch.no_grad()
    def add(
        self,
        loss: torch.Tensor,
        parts: dict,
        outputs: dict,
        mask: torch.Tensor,
        depth: torch.Tensor,
    ) -> None:
        """Add one batch: its loss, loss parts and metrics (the network's logits)."""
        values = [loss.detach()] + [parts[name] for name in self.names[1:]]
        self.sums["parts"] += torch.stack([v.double() for v in values]) * len(mask)
        metrics = TorchMetricAccumulator(self.device)
        metrics.update(
            outputs["mask"][0], mask, outputs["depth"][0], depth, logits=True, boundary=False
        )
        self.sums["metrics"] += metrics.sums
        self.sums["images"] += len(mask)

    def _accumulator(self) -> TorchMetricAccumulator:
        accumulator = TorchMetricAccumulator(self.device)
        accumulator.sums = self.sums["metrics"].clone()
        return accumulator

    def running(self) -> dict:
        """This rank's running loss, IoU and RMSE of the epoch, for the progress bar."""
        images = float(self.sums["images"])
        metrics = self._accumulator().compute()
        loss = float(self.sums["parts"][0]) / max(images, 1)
        return {
            "loss": f"{loss:.4f}",
            "iou": f"{metrics['iou']:.3f}",
            "rmse": f"{metrics['rmse']:.4f}",
        }

    def row(self, job: Dist) -> dict:
        """The epoch's training columns of ``metrics.csv``, summed over ranks."""
        parts = distributed.all_sum(self.sums["parts"].clone(), job)
        images = float(distributed.all_sum(self.sums["images"].clone(), job))
        accumulator = self._accumulator()
        if job.active:
            accumulator.all_reduce()
        metrics = accumulator.compute()
        images = max(images, 1.0)
        names = (n.replace("/", "_") for n in self.names)
        row = {f"train_{n}": float(v) / images for n, v in zip(names, parts)}
        row |= {"train_iou": metrics["iou"], "train_rmse": metrics["rmse"]}
        seconds = self.sums["seconds"]
        row["images_per_s"] = images / seconds if seconds > 0 else float("nan")
        row["data_wait"] = self.sums["wait"] / seconds if seconds > 0 else float("nan")
        return row
