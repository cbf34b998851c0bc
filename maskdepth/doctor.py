# long file: probe, checks and printing of one command; the tests inject Facts between them.
"""`maskdepth doctor`: what this machine can do with maskdepth, one line per capability, with
the reason when it cannot (like ``yolo checks`` or ``nvidia-smi``).

:func:`probe` asks the machine and returns :class:`Facts`; :func:`collect` turns any Facts into
:class:`Check` rows without touching the machine (the tests inject Facts); :func:`format_lines`
prints them. Only GPU 0 (after CUDA_VISIBLE_DEVICES) is reported, the GPU the runners default to.

Speed, and why torch is opt-in: ``python -c "import torch"`` took 1.8-2.6 s on the 2-core
development machine (torch 2.13.0+cpu), more than the whole doctor may take (< 2 s). So torch's
presence and version come from importlib metadata, and torch is imported to ask it about CUDA
only with ``--torch``. The libraries whose import is the check itself
(onnxruntime, tensorrt, tensorrt_rtx, pycuda / cuda-python) are imported: a wheel whose shared
libraries do not load is installed but unusable, and only the import tells.

Row names, in order (``torch cuda`` only with ``--torch``): maskdepth, cpu, gpu, nvidia driver,
torch, torch cuda, onnx, onnxruntime, tensorrt, tensorrt_rtx, cuda memory, build onnx,
run onnx cpu, run onnx cuda, run onnx tensorrt-ep, build engine tensorrt,
build engine tensorrt_rtx, run engine tensorrt, run engine tensorrt_rtx.

``--json`` prints one object::

    checks   [{"name": str, "ok": bool, "value": str, "reason": str}, ...]  the rows above;
             reason: why not (ok false), or a note (ok true); "" when none
    facts    what was probed, the fields of :class:`Facts` (gpu: {"index", "name",
             "compute_capability"} or null; gpu_memory in bytes; torch_cuda: {"available",
             "cuda", "devices"} or null when not asked; tensorrt: {flavour: version};
             broken: {module: why its import failed})
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from maskdepth import __version__
from maskdepth.options import add_options, option, options_from
from maskdepth.runtime.engine_sidecar import (
    FLAVOURS,
    INSTALL,
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
)
from maskdepth.runtime.runners.cuda import GpuInfo, _driver, gpu_info

# onnxruntime's provider names, as in maskdepth.runtime.runners.ort, which cannot be imported
# without onnxruntime (tests/test_doctor.py checks that they agree).
CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
ORT_WHEELS = ("onnxruntime", "onnxruntime-gpu")
EXPORT_NEEDS = ("torch", "onnx")  # maskdepth export, engines from --from X.onnx included
NO_GPU = "no CUDA GPU here"


@dataclass(frozen=True)
class TorchCuda:
    available: bool  # torch.cuda.is_available()
    cuda: str | None  # torch.version.cuda; None: a CPU-only build
    devices: int


@dataclass(frozen=True)
class Facts:
    """What :func:`probe` found. Versions are None when not installed (or not loadable: then
    ``broken`` says why)."""

    maskdepth: str
    python: str
    system: str
    cpu: str
    cores: int  # usable by this process
    rtx_compute_capabilities: tuple[str, ...]  # export.tensorrt_build's, all TensorRT-RTX builds
    rtx_default_compute_capabilities: tuple[str, ...]
    cpu_count: int | None = None  # in the machine
    driver: str | None = None  # NVIDIA driver release (NVML), e.g. "550.54.15"
    driver_cuda: str | None = None  # CUDA version the driver supports; None: no driver
    gpu: GpuInfo | None = None
    gpu_count: int = 0
    gpu_memory: int | None = None  # bytes
    visible_devices: str | None = None  # $CUDA_VISIBLE_DEVICES
    torch: str | None = None
    torch_cuda: TorchCuda | None = None  # None: not asked (no --torch)
    onnx: str | None = None
    onnxruntime: str | None = None
    onnxruntime_wheels: tuple[str, ...] = ()  # distributions that install the module
    providers: tuple[str, ...] = ()  # onnxruntime.get_available_providers()
    tensorrt: dict[str, str] = field(default_factory=dict)  # flavour -> __version__
    cuda_memory: str | None = None  # what TensorRT engines get GPU memory with
    broken: dict[str, str] = field(default_factory=dict)  # module -> why it does not import


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    value: str = ""
    reason: str = ""  # why not; on an ok row, a note


# ---------------------------------------------------------------------------------- collect


def collect(facts: Facts) -> list[Check]:
    """Every row, from ``facts`` alone."""
    return [
        Check("maskdepth", True, f"{facts.maskdepth}, Python {facts.python}, {facts.system}"),
        _cpu(facts),
        _gpu(facts),
        _driver_row(facts),
        *_torch(facts),
        _module(facts, "onnx", facts.onnx, "pip install 'maskdepth[export]'"),
        _onnxruntime(facts),
        *(_flavour(facts, name) for name in FLAVOURS),
        _cuda_memory(facts),
        _build_onnx(facts),
        *_run_onnx(facts),
        *(_build_engine(facts, name) for name in FLAVOURS),
        *(_run_engine(facts, name) for name in FLAVOURS),
    ]


def _cpu(facts: Facts) -> Check:
    cores = f"{facts.cores} cores"
    if facts.cpu_count not in (None, facts.cores):
        cores = f"{facts.cores} of {facts.cpu_count} cores usable"
    return Check("cpu", True, f"{facts.cpu}, {cores}")


def _gpu(facts: Facts) -> Check:
    if facts.gpu is None:
        return Check("gpu", False, reason=_no_gpu(facts))
    gpu = facts.gpu
    parts = [gpu.name, f"compute capability {gpu.compute_capability}"]
    if facts.gpu_memory:
        parts.append(f"{facts.gpu_memory / 2**30:.1f} GiB")
    if facts.gpu_count > 1:
        parts.append(f"GPU {gpu.index} of {facts.gpu_count}")
    return Check("gpu", True, ", ".join(parts))


def _no_gpu(facts: Facts) -> str:
    if facts.driver_cuda is None:
        return "no CUDA GPU: the NVIDIA driver library (libcuda) does not load"
    hidden = facts.visible_devices is not None
    where = f" (CUDA_VISIBLE_DEVICES={facts.visible_devices!r})" if hidden else ""
    return f"the NVIDIA driver loads, but it sees no CUDA GPU{where}"


def _driver_row(facts: Facts) -> Check:
    if facts.driver_cuda is None:
        return Check("nvidia driver", False, reason="not installed (libcuda does not load)")
    release = facts.driver or "release unknown (no NVML)"
    return Check("nvidia driver", True, f"{release}, supports CUDA {facts.driver_cuda}")


def _torch(facts: Facts) -> list[Check]:
    if facts.torch is None:
        return [_module(facts, "torch", None, "pip install 'maskdepth[train]'")]
    if "torch" in facts.broken:
        return [Check("torch", False, facts.torch, f"does not import: {facts.broken['torch']}")]
    if facts.torch_cuda is None:
        note = "run with --torch to ask it about CUDA (importing torch takes seconds)"
        return [Check("torch", True, facts.torch, note)]
    cuda = facts.torch_cuda
    if cuda.available:
        row = Check("torch cuda", True, f"CUDA {cuda.cuda}, {cuda.devices} GPU(s)")
    elif cuda.cuda is None:
        row = Check("torch cuda", False, reason="this torch is a CPU-only build")
    elif facts.gpu is None:
        row = Check("torch cuda", False, reason=f"built for CUDA {cuda.cuda}; {_no_gpu(facts)}")
    else:
        why = f"built for CUDA {cuda.cuda}, and it cannot use this GPU with this driver"
        row = Check("torch cuda", False, reason=f"{why} (CUDA {facts.driver_cuda})")
    return [Check("torch", True, facts.torch), row]


def _module(facts: Facts, name: str, version: str | None, install: str) -> Check:
    if version is not None:
        return Check(name, True, version)
    if name in facts.broken:
        return Check(name, False, reason=f"installed but does not import: {facts.broken[name]}")
    return Check(name, False, reason=f"not installed: {install}")


def _onnxruntime(facts: Facts) -> Check:
    install = "pip install 'maskdepth[cpu]' or 'maskdepth[gpu]'"
    row = _module(facts, "onnxruntime", facts.onnxruntime, install)
    if not row.ok:
        return row
    wheels = ", ".join(facts.onnxruntime_wheels) or "unknown wheel"
    value = f"{facts.onnxruntime} ({wheels}): {', '.join(facts.providers)}"
    note = ""
    if len(facts.onnxruntime_wheels) > 1:
        note = f"{' and '.join(facts.onnxruntime_wheels)} overwrite each other: keep one"
    return Check("onnxruntime", True, value, note)


def _flavour(facts: Facts, name: str) -> Check:
    return _module(facts, name, facts.tensorrt.get(name), f"pip install {INSTALL[name]}")


def _cuda_memory(facts: Facts) -> Check:
    if facts.cuda_memory:
        return Check("cuda memory", True, facts.cuda_memory)
    why = "; ".join(f"{m}: {e}" for m, e in facts.broken.items() if m in ("pycuda", "cuda-python"))
    reason = "neither pycuda nor cuda-python (engines need one): pip install cuda-python"
    return Check("cuda memory", False, reason=f"{reason}{f' ({why})' if why else ''}")


def _absent(facts: Facts, name: str) -> str:
    """The short reason for a derived row; the module's own row has the install command."""
    return f"{name} does not import" if name in facts.broken else f"{name} is not installed"


def _missing_for_export(facts: Facts) -> list[str]:
    versions = {"torch": facts.torch, "onnx": facts.onnx}
    return [_absent(facts, name) for name in EXPORT_NEEDS if versions[name] is None]


def _build_onnx(facts: Facts) -> Check:
    missing = _missing_for_export(facts)
    if missing:
        extras = "pip install 'maskdepth[train,export]'"
        return Check("build onnx", False, reason=f"{'; '.join(missing)} ({extras})")
    if facts.onnxruntime is None:
        return Check("build onnx", True, "fp32, fp16", "int8 needs onnxruntime (quantization)")
    return Check("build onnx", True, "fp32, fp16, int8")


def _run_onnx(facts: Facts) -> list[Check]:
    if facts.onnxruntime is None:
        reason = _absent(facts, "onnxruntime")
        names = ("run onnx cpu", "run onnx cuda", "run onnx tensorrt-ep")
        return [Check(name, False, reason=reason) for name in names]
    if CPU in facts.providers:
        cpu = Check("run onnx cpu", True, f"{CPU} (device 'cpu', or 'auto' without a GPU)")
    else:
        cpu = Check("run onnx cpu", False, reason=f"this onnxruntime has no {CPU}")
    return [cpu, _run_onnx_gpu(facts, CUDA), _run_onnx_gpu(facts, TENSORRT)]


def _run_onnx_gpu(facts: Facts, provider: str) -> Check:
    name = "run onnx cuda" if provider == CUDA else "run onnx tensorrt-ep"
    reasons = []
    if provider not in facts.providers:
        reasons.append(f"this onnxruntime has no {provider} ({_gpu_wheel_hint(facts)})")
    gpu = facts.gpu
    if gpu is None:
        reasons.append(NO_GPU)
    if provider == TENSORRT and "tensorrt" not in facts.tensorrt:
        reasons.append(f"{_absent(facts, 'tensorrt')} (the provider loads its libraries)")
    if reasons or gpu is None:
        return Check(name, False, reason="; ".join(reasons))
    device = "'cuda' or 'auto'" if provider == CUDA else "'cuda' with tensorrt=True"
    return Check(name, True, f"{provider} on GPU {gpu.index} (device {device})")


def _gpu_wheel_hint(facts: Facts) -> str:
    install = "pip install 'maskdepth[gpu]'"
    if facts.onnxruntime_wheels == ("onnxruntime",):
        return f"it is the CPU wheel: pip uninstall onnxruntime, then {install}"
    return install


def _rtx_targets(facts: Facts) -> str:
    return ", ".join(facts.rtx_compute_capabilities)


def _build_engine(facts: Facts, flavour: str) -> Check:
    name = f"build engine {flavour}"
    reasons = _missing_for_export(facts)
    if flavour not in facts.tensorrt:
        reasons.append(_absent(facts, flavour))
    gpu = facts.gpu
    if flavour == "tensorrt" and gpu is None:
        reasons.append(f"it builds on the GPU it is for: {NO_GPU} (tensorrt_rtx needs none)")
    if reasons:
        return Check(name, False, reason="; ".join(reasons))
    if flavour == "tensorrt" and gpu is not None:  # None was a reason above
        return Check(name, True, f"for this GPU ({gpu.name}, {gpu.compute_capability})")
    value = f"for compute capabilities {_rtx_targets(facts)}, without a GPU"
    return Check(name, True, value, _rtx_note(facts))


def _rtx_note(facts: Facts) -> str:
    defaults = facts.rtx_default_compute_capabilities
    opt_in = [cc for cc in facts.rtx_compute_capabilities if cc not in defaults]
    note = f"{', '.join(opt_in)} only when asked (--compute-capability)" if opt_in else ""
    gpu = facts.gpu
    cc = gpu.compute_capability if gpu else None
    if gpu and cc and cc not in facts.rtx_compute_capabilities:
        return f"not for this GPU ({gpu.name}, {cc}); {note}".rstrip("; ")
    if cc in opt_in:
        return f"this GPU is {cc}, not a default target: --compute-capability {cc}"
    return note


def _run_engine(facts: Facts, flavour: str) -> Check:
    name = f"run engine {flavour}"
    reasons = [] if flavour in facts.tensorrt else [_absent(facts, flavour)]
    cc = facts.gpu.compute_capability if facts.gpu else None
    if cc is None:
        reasons.append(f"{NO_GPU} (engines run on a GPU; on the CPU, run the ONNX file)")
    elif flavour == "tensorrt_rtx" and cc not in facts.rtx_compute_capabilities:
        reasons.append(
            f"TensorRT-RTX cannot build for this GPU's compute capability {cc} (it builds for "
            f"{_rtx_targets(facts)}): use tensorrt"
        )
    if not facts.cuda_memory:
        reasons.append("no pycuda or cuda-python for GPU memory")
    if reasons:
        return Check(name, False, reason="; ".join(reasons))
    version = facts.tensorrt[flavour]
    return Check(name, True, f"plans built by {flavour} {version} for compute capability {cc}")


# ----------------------------------------------------------------------------------- output


def format_lines(checks: Sequence[Check]) -> str:
    """One aligned line per check: name, ok/no, the value, then the reason or note."""
    width = max((len(check.name) for check in checks), default=0)
    lines = []
    for check in checks:
        detail = " -- ".join(part for part in (check.value, check.reason) if part)
        lines.append(f"{check.name:<{width}}  {'ok' if check.ok else 'no'}  {detail}".rstrip())
    return "\n".join(lines)


def as_json(facts: Facts, checks: Sequence[Check]) -> str:
    return json.dumps({"checks": [asdict(c) for c in checks], "facts": asdict(facts)}, indent=2)


# ------------------------------------------------------------------------------------ probe


def probe(torch: bool = False) -> Facts:
    """Ask this machine. ``torch``: import torch to ask it about CUDA (seconds)."""
    from maskdepth.benchmarks.measure import cpu_name
    from maskdepth.train.data.parallel import default_workers

    broken: dict[str, str] = {}
    onnxruntime = _import("onnxruntime", broken)
    driver_cuda, gpu_count, memory = _driver_facts(0)
    rtx, rtx_default = RTX_COMPUTE_CAPABILITIES, RTX_DEFAULT_COMPUTE_CAPABILITIES
    tensorrt = {name: _import(name, broken) for name in FLAVOURS}
    return Facts(
        maskdepth=__version__,
        python=platform.python_version(),
        system=platform.platform(terse=True),
        cpu=cpu_name(),
        cores=default_workers(),
        cpu_count=os.cpu_count(),
        rtx_compute_capabilities=rtx,
        rtx_default_compute_capabilities=rtx_default,
        driver=_driver_release() if driver_cuda else None,
        driver_cuda=driver_cuda,
        gpu=gpu_info(0),
        gpu_count=gpu_count,
        gpu_memory=memory,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        torch=_installed_version("torch", "torch"),
        torch_cuda=_torch_cuda(broken) if torch else None,
        onnx=_installed_version("onnx", "onnx"),
        onnxruntime=onnxruntime.__version__ if onnxruntime else None,
        onnxruntime_wheels=tuple(w for w in ORT_WHEELS if _version(w)),
        providers=tuple(onnxruntime.get_available_providers()) if onnxruntime else (),
        tensorrt={name: module.__version__ for name, module in tensorrt.items() if module},
        cuda_memory=_cuda_memory_library(broken),
        broken=broken,
    )


def _spec_exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package is missing
        return False


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _installed_version(module: str, distribution: str) -> str | None:
    """The version of an importable module without importing it."""
    return _version(distribution) if _spec_exists(module) else None


def _import(module: str, broken: dict[str, str], label: str | None = None):
    """The module, or None: not installed, or installed and failing (``broken`` says why)."""
    if not _spec_exists(module.partition(".")[0]):
        return None
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):  # it, or a part of it, is not there
            return None
        error: Exception = exc
    except (ImportError, OSError) as exc:  # OSError: the wheel's shared libraries do not load
        error = exc
    broken[label or module] = (str(error).strip() or type(error).__name__).splitlines()[0]
    return None


def _driver_facts(index: int) -> tuple[str | None, int, int | None]:
    """(CUDA version the driver supports, GPU count, GPU ``index``'s memory in bytes), through
    the driver library that :func:`gpu_info` uses."""
    driver = _driver()
    version = ctypes.c_int(0)
    if driver is None or driver.cuDriverGetVersion(ctypes.byref(version)) != 0:
        return None, 0, None
    cuda = f"{version.value // 1000}.{version.value % 1000 // 10}"
    count, device, memory = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_size_t(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return cuda, 0, None
    if not 0 <= index < count.value or driver.cuDeviceGet(ctypes.byref(device), index) != 0:
        return cuda, count.value, None
    if driver.cuDeviceTotalMem_v2(ctypes.byref(memory), device) != 0:
        return cuda, count.value, None
    return cuda, count.value, memory.value


def _driver_release() -> str | None:
    """The driver's release ("550.54.15", what nvidia-smi shows), through NVML."""
    try:
        nvml = ctypes.CDLL("nvml.dll" if sys.platform == "win32" else "libnvidia-ml.so.1")
    except OSError:
        return None
    if nvml.nvmlInit_v2() != 0:
        return None
    try:
        text = ctypes.create_string_buffer(96)
        if nvml.nvmlSystemGetDriverVersion(text, ctypes.c_uint(len(text))) != 0:
            return None
        return text.value.decode(errors="replace")
    finally:
        nvml.nvmlShutdown()


def _torch_cuda(broken: dict[str, str]) -> TorchCuda | None:
    torch = _import("torch", broken)
    if torch is None:
        return None
    return TorchCuda(torch.cuda.is_available(), torch.version.cuda, torch.cuda.device_count())


def _cuda_memory_library(broken: dict[str, str]) -> str | None:
    """What runtime.runners.cuda.open_cuda_memory would pick: pycuda, else cuda-python."""
    if _import("pycuda.driver", broken, "pycuda"):
        return f"pycuda {_version('pycuda') or ''}".strip()
    if _import("cuda.bindings.runtime", broken, "cuda-python") or _import(
        "cuda.cudart", broken, "cuda-python"
    ):
        version = _version("cuda-python") or _version("cuda-bindings") or ""
        return f"cuda-python {version}".strip()
    return None


# -------------------------------------------------------------------------------------- CLI


@dataclass
class DoctorOptions:
    json: bool = option(False, action="store_true", help="print one JSON object")
    torch: bool = option(
        False, action="store_true", help="import torch to ask it about CUDA (seconds)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, DoctorOptions)


def run(options: DoctorOptions) -> int:
    facts = probe(torch=options.torch)
    checks = collect(facts)
    print(as_json(facts, checks) if options.json else format_lines(checks))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="maskdepth doctor", description="What this machine can do with maskdepth."
    )
    add_arguments(parser)
    return run(options_from(DoctorOptions, parser.parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
