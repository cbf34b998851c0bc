"""The type checker over every package, GPU modules included: the defence for code no test here
can run (a CUDA-only branch, a TensorRT call). mypy, configured in pyproject.toml; it reaches
runtime/, train/, export/ and benchmarks/ through the symlinks under maskdepth/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("mypy", reason="the type checker comes with the [dev] extra")


@pytest.mark.slow
def test_every_package_type_checks():
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, f"mypy found errors:\n{done.stdout}\n{done.stderr}"
    assert "no issues found in" in done.stdout
