"""Progressive sizes in one command: ``maskdepth train --size 64,96,224`` trains one stage per size,
each starting from the weights (the EMA) of the stage before, as the seed did by hand.

Stage i lives in ``OUT/stage{i}-{size}/`` (its own ``last.pt``, ``best.pt``, ``metrics.csv`` and
pictures); when the last stage ends, its ``best.pt`` and ``last.pt`` are copied to ``OUT/`` (so
the final checkpoint carries the last size) and ``OUT/stages.json`` sums the stages up.
``--resume`` skips the finished stages and continues the one that stopped, inside it.

A time budget (``--max-minutes``) is split over the stages by :func:`split_budget`; without one,
every stage runs ``--epochs`` epochs.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_bytes_atomic

from .checkpoint import load_checkpoint
from .config import Size, TrainConfig, size_text
from .data.sources import Source
from .device import pick_device
from .distributed import from_environment, joined
from .models.configs import default_config
from .trainer import train

LAST_STAGE_SHARE = 0.5  # of the budget; see split_budget


def split_budget(minutes: float, stages: int, last_share: float = LAST_STAGE_SHARE) -> list[float]:
    """The budget of each stage: the last (the size that is exported) gets ``last_share`` of
    it, the stages before share the rest equally. Chosen by measurement (README, Training)."""
    if stages == 1:
        return [minutes]
    first = minutes * (1 - last_share) / (stages - 1)
    return [first] * (stages - 1) + [minutes * last_share]


def stage_budget(total: float, spent: float, index: int, shares: list[float]) -> float:
    """Stage ``index``'s minutes: its share of what the stages before left of ``total``, so
    that their last validations (which may end past their budgets) come out of the later
    stages and the whole run ends within ``total`` plus one validation."""
    return max(total - spent, 0.01) * shares[index] / sum(shares[index:])


def stage_folder(out: str | Path, index: int, size: Size) -> Path:
    return Path(out) / f"stage{index + 1}-{size_text(size)}"


def _finished(folder: Path) -> dict | None:
    """The stage's result when its plan ran to the end or its budget ran out, else None."""
    ckpt = load_checkpoint(folder / "last.pt")
    budget = ckpt["train"].get("max_minutes")
    out_of_time = budget is not None and ckpt["progress"]["seconds"] >= 60 * budget
    if ckpt["step"] < ckpt["plan"]["total_steps"] and not out_of_time:
        return None
    return {"out": str(folder), "metrics": ckpt["metrics"], "best": ckpt["best"],
            "step": ckpt["step"], "seconds": ckpt["progress"]["seconds"],
            "stopped": "finished before"}  # fmt: skip


def train_stages(
    config: TrainConfig, source: Source | None = None, last_share: float = LAST_STAGE_SHARE
) -> dict:
    """Train ``config`` (one stage per size of ``config.sizes``); returns the last stage's
    result with every stage's under ``"stages"``. ``last_share``: see :func:`split_budget`."""
    sizes = config.sizes
    # The run's size is the one exported (the last stage's); earlier stages may be any size.
    default_config(config.model).check_size(sizes[-1])
    if len(sizes) == 1:
        return train(config, source)
    out = Path(config.out)
    if not config.resume and (out / "last.pt").exists():
        raise MaskDepthError(
            f"{out} already holds a run (last.pt); pass --resume to continue it "
            "or choose another --out"
        )
    first = stage_folder(out, 0, sizes[0]) / "last.pt"
    if config.resume and not first.is_file():
        raise MaskDepthError(f"--resume: no {first} to continue; start without --resume")
    job = from_environment()
    with joined(job, pick_device(config.device, job)):  # one process group for every stage
        results = _train_each(config, sizes, source, last_share)
    return _finish(out, results, sizes)


def _train_each(
    config: TrainConfig, sizes: Sequence[Size], source: Source | None, last_share: float
) -> list[dict]:
    """Each stage's result, in order: trained, continued, or (``--resume``) finished before."""
    out, total = Path(config.out), config.max_minutes
    shares = split_budget(total, len(sizes), last_share) if total else None
    previous, results, spent = config.init, [], 0.0
    for index, size in enumerate(sizes):
        folder = stage_folder(out, index, size)
        stage = replace(
            config,
            sizes=(size,),
            out=str(folder),
            max_minutes=stage_budget(total, spent, index, shares) if total and shares else None,
            init=previous,
            resume=False,
        )
        if (folder / "last.pt").is_file():
            if not config.resume:
                raise MaskDepthError(f"{folder} already holds a stage; pass --resume")
            finished = _finished(folder)
            if finished is not None:
                results.append({"size": size, **finished})
                previous, spent = str(folder / "best.pt"), spent + finished["seconds"] / 60
                continue
            stage = replace(stage, init=None, resume=True)
        results.append({"size": size, **train(stage, source)})
        previous, spent = str(folder / "best.pt"), spent + results[-1]["seconds"] / 60
    return results


def _finish(out: Path, results: list[dict], sizes: Sequence[Size]) -> dict:
    """Copy the last stage's checkpoints to ``out`` and write ``stages.json``."""
    last = stage_folder(out, len(sizes) - 1, sizes[-1])
    for name in ("best.pt", "last.pt") if from_environment().main else ():
        temporary = out / f".{name}.partial"
        shutil.copyfile(last / name, temporary)
        temporary.replace(out / name)
    summary = [
        {k: r.get(k) for k in ("size", "out", "metrics", "best", "step", "seconds", "stopped")}
        for r in results
    ]
    if from_environment().main:
        write_bytes_atomic(out / "stages.json", (json.dumps(summary, indent=2) + "\n").encode())
    final = dict(results[-1])
    final |= {"out": str(out), "best_path": str(out / "best.pt"), "stages": summary}
    final["last_path"] = str(out / "last.pt")
    return final
