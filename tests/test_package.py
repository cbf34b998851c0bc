"""The distribution: what the wheel holds, a plain install, and the lean runtime import."""

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "runtime": "maskdepth/runtime",
    "train": "maskdepth/train",
    "export": "maskdepth/export",
}
PACKAGES |= {"benchmarks": "maskdepth/benchmarks", "maskdepth": "maskdepth"}


def _run(*cmd, cwd=None):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Build from a copy, so the checkout gets no build/ folder and stale files cannot leak in.
    source = tmp_path_factory.mktemp("source") / "maskdepth"
    junk = shutil.ignore_patterns(".*", "build", "*.egg-info", "runs", "__pycache__", "venv")
    shutil.copytree(ROOT, source, ignore=junk)
    done = _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        str(source),
        "--no-deps",
        "--no-build-isolation",
        "-w",
        str(out),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return next(out.glob("maskdepth-*.whl"))


def test_wheel_holds_every_module_of_the_four_packages(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in PACKAGES.items():
        for source in (ROOT / folder).rglob("*.py"):
            inside = f"{package}/{source.relative_to(ROOT / folder).as_posix()}"
            assert inside in names, f"{inside} missing from the wheel"
    assert any(n.endswith("entry_points.txt") for n in names)


@pytest.mark.slow
def test_plain_install_into_a_fresh_venv(wheel, tmp_path):
    venv = tmp_path / "venv"
    assert _run(sys.executable, "-m", "venv", str(venv)).returncode == 0
    python, cli = venv / "bin" / "python", venv / "bin" / "maskdepth"
    _see_these_dependencies(python)
    done = _run(
        str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", str(wheel)
    )
    assert done.returncode == 0, done.stderr[-2000:]
    code = (
        "import maskdepth, maskdepth.runtime, maskdepth.train.data.seed_layout, "
        "maskdepth.export, maskdepth.benchmarks; print(maskdepth.__file__)"
    )
    done = _run(str(python), "-c", code, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(venv) in done.stdout  # the installed copy, not this checkout
    done = _run(str(cli), "--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("maskdepth ")


def _see_these_dependencies(python: Path) -> None:
    """Let the venv at ``python`` import this interpreter's packages (numpy, cv2, ...) without
    installing them: ``--system-site-packages`` would give the base interpreter's, which lack
    them when the tests run inside a venv. Paths added by a .pth come after the venv's own
    site-packages, and their own .pth files (this checkout's editable install) are not read."""
    ours = [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    done = _run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    assert done.returncode == 0, done.stderr
    (Path(done.stdout.strip()) / "outer_environment.pth").write_text("\n".join(ours) + "\n")


def test_runtime_imports_without_torch():
    code = (
        "import sys, maskdepth.runtime, maskdepth.runtime.image, maskdepth.runtime.preprocess, "
        "maskdepth.runtime.visualize, maskdepth.runtime.runners.ort\n"
        "from maskdepth.runtime import OnnxRuntimeRunner\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))"
    )
    done = _run(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_runtime_without_onnxruntime_names_the_extra():
    code = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "import maskdepth.runtime\n"  # the package itself still imports
        "try:\n"
        "    from maskdepth.runtime import OnnxRuntimeRunner\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, '|', exc)\n"
    )
    done = _run(sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert "\n" not in line
    assert line.startswith("MissingDependencyError | ")
    assert "pip install 'maskdepth[cpu]'" in line
