"""The public Python API: three calls for the jobs of the command line, and the Predictor.

    import maskdepth

    run = maskdepth.fit("data/mine", out="runs/mine", sizes=[96], max_minutes=30)
    scores = maskdepth.evaluate(run["best_path"], "data/mine")
    onnx = maskdepth.convert(run["best_path"], "models/mine.onnx")
    result = maskdepth.Predictor(onnx.path).predict("scene.jpg", bg="empty.jpg")
    with maskdepth.stream(onnx.path, "rtsp://cam/1", bg="empty.jpg", out="live") as live:
        for frame in live: ...

Each call takes the options of its command as keywords (``maskdepth train --max-minutes 30``
is ``max_minutes=30``); an unknown keyword fails at once and names the known ones.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from maskdepth.runtime.errors import MaskDepthError

if TYPE_CHECKING:
    from maskdepth.export.pipeline import ExportResult
    from maskdepth.runtime.stream import Stream


def fit(data: str | Path = "synth", out: str | Path = "runs/u2netp-md", **options: Any) -> dict:
    """Train as ``maskdepth train`` does; returns the final metrics and the checkpoints'
    paths (``best_path``, ``last_path``). ``data``: a folder in the seed's layout or
    ``"synth"``; ``options``: :class:`~maskdepth.train.config.TrainConfig`'s fields."""
    from maskdepth.train.config import TrainConfig
    from maskdepth.train.stages import train_stages

    config = _options(TrainConfig, "fit", options, data=str(data), out=str(out))
    return train_stages(config)


def evaluate(checkpoint: str | Path, data: str | Path | None = None, **options: Any) -> dict:
    """Score a checkpoint as ``maskdepth eval`` does (default: on its own validation split of
    the data it was trained on); returns IoU, RMSE and the other metrics by name."""
    from maskdepth.train.evaluate import evaluate as score

    _known("evaluate", options, ("split", "batch", "workers", "device", "skip_bad", "use_ema"))
    return score(checkpoint, None if data is None else str(data), progress=False, **options)


def convert(checkpoint: str | Path, out: str | Path, **options: Any) -> ExportResult:
    """Export as ``maskdepth export`` does (``format="onnx"`` by default; ``"onnx-fp16"``,
    ``"onnx-int8"``, ``"engine"``), through the parity gate: ``result.passed`` is False and
    ``result.path`` is ``NAME.parity-failed.EXT`` when the file is over tolerance."""
    from maskdepth.export.pipeline import ExportOptions, export

    return export(checkpoint, out, _options(ExportOptions, "convert", options))


def stream(model: Any, sources: Any, bg: Any = None, **options: Any) -> Stream:
    """Run a model on live cameras, streams or files as ``maskdepth stream`` does; iterate
    the result for each frame's :class:`~maskdepth.runtime.stream.StreamResult`. ``options``:
    :class:`~maskdepth.runtime.stream.StreamConfig`'s fields (``out``, ``save``, ``drop``,
    ``bg_update``, ...)."""
    from maskdepth.runtime.stream import stream as run

    return run(model, sources, bg, **options)


def _options(cls: type, call: str, options: dict, **given: Any) -> Any:
    _known(call, options, tuple(f.name for f in dataclasses.fields(cls)))
    return cls(**{**options, **given})


def _known(call: str, options: dict, known: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MaskDepthError(
            f"{call}(): unknown option(s) {', '.join(unknown)}; expected {', '.join(known)}"
        )
