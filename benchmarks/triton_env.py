"""The serving environment: a virtual environment that runs a real Triton Inference Server here.

The ``nvidia-pytriton`` 0.7.0 wheel bundles a ``tritonserver`` binary (Triton 2.51) with the
python backend, its stubs for Python 3.8-3.13 and the ensemble scheduler. Its python backend
stub needs ``numpy<2`` (with numpy 2 every response fails with "output tensor shape does not
match size of output"), so it gets an environment of its own, never the project's: numpy<2,
onnxruntime, OpenCV, the server wheel without its Python API's dependencies, and maskdepth
itself, installed editable without its dependencies (so the server always runs the checkout's
code).

The environment is built once into ``CACHE/<hash of its recipe>/`` and reused; every pip call is
bounded in time, and a build that fails (no package index, a wheel missing for this Python)
raises :class:`TritonEnvError` with the reason, which the tests turn into a skip.

    python -m maskdepth.benchmarks.triton_env [--cache DIR]   # build it, print where it is
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = ("numpy>=1.24,<2", "onnxruntime>=1.18", "opencv-python-headless>=4.8")
# Installed without its dependencies: only its bundled server, backends and stubs are used here
# (its own Python API would add tritonclient, grpcio, gevent, aiohttp, pydantic, ... to every
# build; the clients run in the project's environment).
SERVER_WHEEL = "nvidia-pytriton==0.7.0"
PIP_TIMEOUT_S = 600  # one pip call, whole; the mirror on these machines takes about 20 s
PROJECT = Path(__file__).resolve().parents[1]  # the checkout (benchmarks/ is a top-level folder)
CACHE_ENV = "MASKDEPTH_TRITON_ENV"
READY = "env.json"


class TritonEnvError(RuntimeError):
    """The serving environment cannot be built or used here; the message says why."""


@dataclass(frozen=True)
class TritonEnv:
    """A built serving environment: its interpreter, the server binary and its backends."""

    root: Path
    libdir: Path  # the libdir of the venv's interpreter: its libpython, first for the stub
    python_version: str
    tritonserver: Path  # the wheel's binary, run in place (it finds its libraries beside it)
    libs: Path  # the wheel's own libraries, which the copied stub no longer finds by rpath

    @property
    def bin(self) -> Path:
        return self.root / "venv" / "bin"

    @property
    def python(self) -> Path:
        return self.bin / "python"

    @property
    def backends(self) -> Path:
        """A copy of the wheel's ``backends/`` with the stub for the venv's Python."""
        return self.root / "backends"

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """The server's environment: the venv's ``bin`` first on PATH (the python backend stub
        takes its environment from the first ``python`` there) and the interpreter's libdir
        first on LD_LIBRARY_PATH (another Python's libpython breaks the stub), then the wheel's
        libraries; no PYTHONPATH,
        so the stub imports the venv's packages, not the caller's."""
        env = dict(os.environ if base is None else base)
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
        env["PATH"] = os.pathsep.join([str(self.bin), env.get("PATH", "")])
        libs = [str(self.libdir), str(self.libs)] + [
            p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p
        ]
        env["LD_LIBRARY_PATH"] = ":".join(libs)
        return env


def recipe_key(python: str, project: Path = PROJECT) -> str:
    """Hash of everything the environment is made from: requirements, interpreter, checkout."""
    facts = [*REQUIREMENTS, SERVER_WHEEL, os.path.realpath(python)]
    facts += [str(project.resolve()), sys.platform]
    return hashlib.sha256("\n".join(facts).encode()).hexdigest()[:16]


def default_cache() -> Path:
    return Path(os.environ.get(CACHE_ENV) or PROJECT / ".triton-env")


def ensure_env(
    cache: Path | None = None, python: str = sys.executable, project: Path = PROJECT
) -> TritonEnv:
    """The serving environment for ``python``, built into ``cache`` the first time.

    A venv records its own path (pyvenv.cfg, the scripts' shebangs), so it is built where it
    lives, under a lock (two test runs never build into one folder), and marked ready last: a
    build that was killed half-way is started again."""
    cache = Path(cache or default_cache())
    folder = cache / recipe_key(python, project)
    if (folder / READY).is_file():
        return _load(folder)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{folder.name}.lock", "w") as lock:
        _lock(lock, time.monotonic() + 3 * PIP_TIMEOUT_S)  # another build: at most its pips
        if not (folder / READY).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            _build(folder, python, project)
    return _load(folder)


def _lock(file, deadline: float) -> None:
    """An exclusive lock on ``file``, waiting for another build until ``deadline``."""
    while True:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise TritonEnvError(
                    f"{file.name}: another build holds it; remove it if none runs"
                ) from None
            time.sleep(1.0)


def _load(folder: Path) -> TritonEnv:
    facts = json.loads((folder / READY).read_text())
    return TritonEnv(
        folder,
        Path(facts["libdir"]),
        facts["python_version"],
        Path(facts["tritonserver"]),
        Path(facts["libs"]),
    )


def _build(folder: Path, python: str, project: Path) -> None:
    venv = folder / "venv"
    _run([python, "-m", "venv", str(venv)], "creating the virtual environment", 120)
    vpython = str(venv / "bin" / "python")
    pip = [vpython, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    _run([*pip, *REQUIREMENTS], "installing the serving requirements", PIP_TIMEOUT_S)
    _run([*pip, "--no-deps", SERVER_WHEEL], "installing the server", PIP_TIMEOUT_S)
    _run([*pip, "--no-deps", "-e", str(project)], "installing maskdepth", PIP_TIMEOUT_S)
    probe = (  # where the wheel is, without importing its Python API (its deps are not here)
        "import json, sys, sysconfig, importlib.util as u; print(json.dumps({'libdir': "
        "sysconfig.get_config_var('LIBDIR'), 'python_version': '%d.%d' % sys.version_info[:2], "
        "'pytriton': u.find_spec('pytriton').origin}))"
    )
    facts = json.loads(_run([vpython, "-c", probe], "inspecting the environment", 60))
    dist = Path(facts.pop("pytriton")).parent / "tritonserver"
    stub = dist / "python_backend_stubs" / facts["python_version"] / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonEnvError(f"nvidia-pytriton has no python backend stub for {stub.parent.name}")
    facts["tritonserver"] = str(dist / "bin" / "tritonserver")
    facts["libs"] = str(dist.parent.parent / "nvidia_pytriton.libs")  # the stub's, by rpath
    shutil.copytree(dist / "backends", folder / "backends")
    shutil.copy2(stub, folder / "backends" / "python" / "triton_python_backend_stub")
    (folder / READY).write_text(json.dumps(facts))


def _run(command: list[str], what: str, timeout_s: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise TritonEnvError(f"{what} took over {timeout_s:.0f} s") from None
    except OSError as exc:
        raise TritonEnvError(f"{what}: {exc}") from None
    if done.returncode:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        last = next((line for line in reversed(lines) if "ERROR" in line), lines[-1])
        raise TritonEnvError(f"{what} failed: {last.strip()}")
    return done.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=None, help="default: .triton-env/")
    args = parser.parse_args(argv)
    env = ensure_env(args.cache)
    print(f"{env.root}: python {env.python_version}, {env.tritonserver}")


if __name__ == "__main__":
    main()
