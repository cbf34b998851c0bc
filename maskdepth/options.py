"""Options dataclasses that are also command lines: one helper, and the shared argument types.

A field declared with :func:`option` carries its flags, help and argparse settings; its default
is the argparse default, so a default is typed once, in the dataclass. :func:`add_options` adds
every such field of a dataclass to a parser, in field order; :func:`options_from` builds the
dataclass back from the parsed namespace. A field declared with :func:`nested` holds another
options dataclass whose fields are added in its place (``maskdepth export``: the checkpoint and
the output, then :class:`maskdepth.export.options.ExportOptions`).

Command-line code, so not in :mod:`maskdepth.runtime` (which holds what an application
imports); still below train (argparse only, no torch) because every layer above the runtime
declares its options with it: ``TrainConfig`` for ``python -m maskdepth.train`` in train,
``ExportOptions`` in export, bench and demo in benchmarks, the commands in
:mod:`maskdepth.commands`. ``tests/test_structure.py`` gives it its own layer between runtime
and train.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.runners.cuda import DEVICE_METAVAR, EXPECTED_DEVICE, parse_device

_KEY = "maskdepth.option"


@dataclasses.dataclass(frozen=True)
class _Spec:
    flags: tuple[str, ...]  # () : --field-name
    settings: dict[str, Any]  # passed to add_argument
    convert: Callable[[Any], Any] | None  # parsed value -> field value
    group: str | None  # an argument group's title
    exclusive: str | None  # a required mutually exclusive group's name
    nested: bool = False
    positional: bool = False


def option(
    default: Any = dataclasses.MISSING,
    /,
    *flags: str,
    convert: Callable[[Any], Any] | None = None,
    group: str | None = None,
    exclusive: str | None = None,
    **settings: Any,
) -> Any:
    """A dataclass field that is also a command-line option. ``flags``: default
    ``--field-name``; ``default``: none makes the field required in Python. ``settings`` go to
    ``add_argument`` (help, type, choices, action, metavar, nargs, required, and ``default``
    where the command line's differs from the field's, e.g. "auto" for None); ``convert``
    turns the parsed value into the field's; ``exclusive`` names a required mutually exclusive
    group; ``group`` an argument group's title."""
    spec = _Spec(tuple(flags), settings, convert, group, exclusive)
    return dataclasses.field(default=default, metadata={_KEY: spec})


def positional(**settings: Any) -> Any:
    """A required positional argument named after the field (``settings`` as in :func:`option`)."""
    spec = _Spec((), settings, None, None, None, positional=True)
    return dataclasses.field(metadata={_KEY: spec})


def nested(options: type) -> Any:
    """A field holding another options dataclass, whose options are added in its place."""
    spec = _Spec((), {}, None, None, None, nested=True)
    return dataclasses.field(default_factory=options, metadata={_KEY: spec})


def device_option(default: str = "auto", help: str | None = None) -> Any:
    """``--device auto|cpu|cuda[:N]``: every command's device choice (N: the GPU's index)."""
    return option(default, type=device_choice, metavar=DEVICE_METAVAR, help=help)


def device_choice(text: str) -> str:
    """argparse type of every ``--device``: auto, cpu, cuda or cuda:N, kept as given."""
    try:
        parse_device(text)
    except MaskDepthError:
        raise argparse.ArgumentTypeError(f"{EXPECTED_DEVICE}, got {text!r}") from None
    return text


def model_source(text: str) -> str | Path:
    """argparse type: an exported model file, or a Triton server's model as a URL
    (``grpc://HOST:8001/maskdepth``, ``http://...``), kept as text (a Path would fold ``//``)."""
    from maskdepth.runtime.predictor import SERVED

    return text if text.startswith(SERVED) else Path(text)


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def parse_size(text: str) -> int | tuple[int, int]:
    """An image size: ``"96"`` -> 96, ``"128x224"`` -> (128, 224) (height x width; a square
    pair is its side)."""
    try:
        parts = tuple(int(part) for part in text.lower().split("x"))
    except ValueError:
        parts = ()
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected pixels, e.g. 96 or 128x224 (HxW)")
    return parts[0] if len(parts) == 1 or parts[0] == parts[1] else (parts[0], parts[1])


def _specs(cls: type) -> list[tuple[dataclasses.Field, _Spec]]:
    fields = dataclasses.fields(cls)
    return [(f, f.metadata[_KEY]) for f in fields if _KEY in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add every :func:`option` field of the dataclass ``cls`` to ``parser``, in field order."""
    groups: dict[str, Any] = {}
    for field, spec in _specs(cls):
        if spec.nested:
            add_options(parser, field.default_factory)  # type: ignore[arg-type]
            continue
        target: Any = parser
        if spec.group is not None:
            target = groups.get(spec.group) or parser.add_argument_group(spec.group)
            groups[spec.group] = target
        elif spec.exclusive is not None:
            target = groups.get(spec.exclusive) or parser.add_mutually_exclusive_group(
                required=True
            )
            groups[spec.exclusive] = target
        settings = dict(spec.settings)
        if spec.positional:
            target.add_argument(field.name, **settings)
            continue
        settings.setdefault("dest", field.name)
        if field.default is not dataclasses.MISSING:
            settings.setdefault("default", field.default)
        target.add_argument(*(spec.flags or (f"--{field.name.replace('_', '-')}",)), **settings)


def options_from(cls: type, args: argparse.Namespace) -> Any:
    """The ``cls`` of parsed :func:`add_options` options (other attributes are ignored)."""
    values = {}
    for field, spec in _specs(cls):
        if spec.nested:
            values[field.name] = options_from(field.default_factory, args)  # type: ignore[arg-type]
            continue
        value = getattr(args, field.name)
        values[field.name] = spec.convert(value) if spec.convert and value is not None else value
    return cls(**values)
