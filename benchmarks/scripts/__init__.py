"""Standalone measurements behind the README's figures, each run as
``python -m maskdepth.benchmarks.scripts.<name>``. They share ``maskdepth.benchmarks.measure`` and
``maskdepth.benchmarks.floor``, never each other."""
