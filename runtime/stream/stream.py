"""``stream(model, sources, bg=..., **options)``: the live loop as one call.

    with stream("model.onnx", {"door": "rtsp://cam/1"}, out="live", save="video") as results:
        for r in results:                  # StreamResult: source, index, timestamp, frame,
            print(r.source, r.objects)     # prediction, objects, events, background
    print(results.summary["sources"]["door"]["fps"])

Every source and background is opened before the call returns, so a source that cannot be
opened fails here, naming it, before any work.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Generator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.predictor import ImageInput, Predictor, load_rgb
from maskdepth.runtime.stream.background import BackgroundModel
from maskdepth.runtime.stream.config import StreamConfig, StreamResult
from maskdepth.runtime.stream.loop import Run, Source
from maskdepth.runtime.stream.sources import Reader, SourceSpec, parse_sources, source_kind

Sources = str | os.PathLike | int | Sequence[str | os.PathLike | int] | Mapping[str, Any]
Backgrounds = ImageInput | Mapping[str, ImageInput] | None


class Stream:
    """The results of a run, in the order they are processed; a context manager whose exit
    (or :meth:`close`) stops the sources, finishes the files and writes the summary."""

    def __init__(self, run: Run, owned: Predictor | None) -> None:
        self._run, self._owned = run, owned
        self._results: Generator[StreamResult, None, None] = run.results()
        self.sources = [s.name for s in run.sources]
        self.learning = [s.name for s in run.sources if not s.bg.ready]

    def __iter__(self) -> Iterator[StreamResult]:
        return self

    def __next__(self) -> StreamResult:
        return next(self._results)

    @property
    def summary(self) -> dict | None:
        """``summary.json``'s content once the run has ended or been closed."""
        return self._run.summary

    def close(self) -> None:
        try:
            self._results.close()
            if self._run.summary is None:  # closed before the first frame: summary all the same
                for source in self._run.sources:
                    source.reader.close()
                self._run.finish(0.0, True)
        finally:
            if self._owned is not None:
                self._owned.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream(
    model: str | os.PathLike | Predictor, sources: Sources, bg: Backgrounds = None, **options
) -> Stream:
    """Run ``model`` on live ``sources`` (see :class:`StreamConfig` for ``options``: ``out``,
    ``save``, ``batch``, ``drop``, ``bg_update``, ...). ``sources``: one or a list of files,
    folders, camera indices, URLs, GStreamer pipelines (``"name=..."`` names one), or a dict
    name -> source. ``bg``: one empty scene, or a dict name -> empty scene; a source without
    one learns it from its first ``bg_learn`` frames."""
    config = _config(options)
    specs = _specs(sources)
    backgrounds = _backgrounds(specs, bg)
    owned = None
    if not isinstance(model, Predictor):
        model = owned = Predictor(model, config.device, config.threads, config.backend)
    readers: list[Reader] = []
    try:
        for spec in specs:
            readers.append(Reader(spec, config.fps))
        run_sources = [
            Source(reader, _model(backgrounds[reader.spec.name], config), config)
            for reader in readers
        ]
        return Stream(Run(model, run_sources, config), owned)
    except BaseException:
        for reader in readers:
            reader.close()
        if owned is not None:
            owned.close()
        raise


def _config(options: dict) -> StreamConfig:
    known = tuple(f.name for f in dataclasses.fields(StreamConfig))
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise MaskDepthError(
            f"stream(): unknown option(s) {', '.join(unknown)}; expected {', '.join(known)}"
        )
    config = StreamConfig(**options)
    config.check()
    return config


def _specs(sources: Sources) -> list[SourceSpec]:
    """A dict's names are taken as they are (a file stem with a space or an ``=`` in it too);
    texts are parsed, ``"name=..."`` naming one."""
    if isinstance(sources, Mapping):
        targets = {name: _text(target) for name, target in sources.items()}
        if not targets:
            raise MaskDepthError("no --source given")
        return [SourceSpec(n, t, source_kind(t)) for n, t in targets.items()]
    if isinstance(sources, (str, os.PathLike, int)):
        return parse_sources([_text(sources)])
    return parse_sources([_text(s) for s in sources])


def _text(source: str | os.PathLike | int) -> str:
    return str(source) if isinstance(source, int) else os.fspath(source)


def _backgrounds(specs: list[SourceSpec], bg: Backgrounds) -> dict[str, np.ndarray | None]:
    """Each source's empty scene, read now (a missing file fails before any work)."""
    if bg is None or not isinstance(bg, Mapping):
        image = None if bg is None else load_rgb(bg, "bg")
        return {spec.name: image for spec in specs}
    names = {spec.name for spec in specs}
    stray = sorted(set(bg) - names)
    if stray:
        raise MaskDepthError(
            f"--bg {stray[0]}=...: no source of that name (sources: {', '.join(sorted(names))})"
        )
    return {
        s.name: None if s.name not in bg else load_rgb(bg[s.name], f"bg {s.name}") for s in specs
    }


def _model(bg: np.ndarray | None, config: StreamConfig) -> BackgroundModel:
    return BackgroundModel(
        bg, config.bg_update, config.bg_rate, config.bg_relearn, config.bg_learn,
        align=config.bg_align,
    )  # fmt: skip
