"""The type checker over every package, GPU modules included: the defence for code no test here
can run (a CUDA-only branch, a TensorRT call). mypy, configured in pyproject.toml."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# pyproject's package-dir: the import name maskdepth.X lives in the top-level folder X.
SUBPACKAGES = ("runtime", "train", "export", "benchmarks")

pytest.importorskip("mypy", reason="the type checker comes with the [dev] extra")


def _package_tree(where: Path) -> Path:
    """``where/maskdepth`` laid out as Python imports it (maskdepth/runtime, ...), made of links
    to this checkout: mypy cannot follow setuptools' package-dir mapping."""
    package = where / "maskdepth"
    shutil.rmtree(package, ignore_errors=True)
    package.mkdir(parents=True)
    for source in (ROOT / "maskdepth").glob("*.py"):
        (package / source.name).symlink_to(source)
    for name in SUBPACKAGES:
        (package / name).symlink_to(ROOT / name, target_is_directory=True)
    return package


def run_mypy(where: Path) -> subprocess.CompletedProcess:
    _package_tree(where)
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")]
    command += ["--cache-dir", str(ROOT / ".mypy_cache"), "-p", "maskdepth"]
    env = {**os.environ, "MYPYPATH": ""}
    return subprocess.run(command, cwd=where, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_every_package_type_checks():
    done = run_mypy(ROOT / ".mypy_cache" / "tree")
    report = done.stdout.replace("maskdepth/", "")  # maskdepth/runtime/x.py -> runtime/x.py
    assert done.returncode == 0, f"mypy found errors:\n{report}\n{done.stderr}"
