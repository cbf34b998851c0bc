"""Backends behind one small interface (Polygraphy's runner shape), each importing its library
only when used."""

from .base import Runner

__all__ = ["Runner"]
