"""The TensorRT and CUDA names our GPU-only code uses exist in the real libraries.

The engine builder (export/tensorrt_build.py), the engine runner (runtime/runners/tensorrt.py)
and GPU memory and GPU info (runtime/runners/cuda.py, maskdepth/doctor.py) only run with a GPU,
never in CI, so a misspelt method there would first fail on a user's machine. These tests read
those files with ``ast`` (tests/api_usage.py: how a value is known to be a TensorRT or CUDA object
without a hand-kept list of names) and look every collected name up in what imports here without
a GPU:

* TensorRT: ``tensorrt_rtx`` (the flavour CI installs); the names that exist only in full
  ``tensorrt`` are in :data:`FULL_TENSORRT_ONLY`, each with its reason;
* the CUDA runtime calls of the cuda-python memory backend: ``cuda.bindings.runtime`` (also the
  arguments each ``_call("cudaX", ...)`` passes, against the binding's signature);
* the CUDA driver and NVML calls made through ctypes: ``cuda.bindings.driver`` for the API name,
  and the C prototypes cuda-python itself binds (its .pxd files) for the exact exported symbol
  (``cuDeviceTotalMem_v2``, not the 32-bit ``cuDeviceTotalMem``) and the number of arguments;
* pycuda (which needs the CUDA toolkit to install and a driver to import): checked only where it
  imports; elsewhere the collected names are in the skip reason.

``python tests/api_usage.py`` prints every collected name with its file:line.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from functools import cache
from pathlib import Path

import pytest
from api_usage import Use, collect, walk

ROOT = Path(__file__).resolve().parents[1]
TENSORRT_FILES = {
    "export/tensorrt_build.py": "maskdepth.export.tensorrt_build",
    "runtime/runners/tensorrt.py": "maskdepth.runtime.runners.tensorrt",
}
CUDA_FILES = {  # in this order: doctor.py uses the libcuda handle cuda.py's _driver() returns
    "runtime/runners/cuda.py": "maskdepth.runtime.runners.cuda",
    "maskdepth/doctor.py": "maskdepth.doctor",
}
# The TensorRT files import their flavour by name (importlib), so the module comes in typed
# ``ModuleType``; in those two files that annotation means the TensorRT module.
TENSORRT_ANNOTATIONS = {"ModuleType": "tensorrt"}
# pycuda does not import here, so the one return type the collector follows through it is here.
PYCUDA_RETURNS = {("pycuda", ("Device", "retain_primary_context")): ("Context",)}

# Used by our source, absent from tensorrt_rtx, present in full tensorrt: name -> why that is fine.
FULL_TENSORRT_ONLY = {
    "BuilderFlag.FP16": (
        "full TensorRT 10.x's weakly typed FP16 builder flag (weak typing deprecated in 10.12, "
        "the flag removed in 11.0); TensorRT for RTX builds strongly typed networks only and "
        "has no precision flags. The builder reads it only after hasattr(trt.BuilderFlag, "
        "'FP16') said yes (plan_precision), so neither RTX nor TensorRT 11 reaches it"
    ),
}
# A hand list on purpose: not where the names come from, but the canary that the type inference
# still reaches every TensorRT object the builder and runner hold (a refactor that hides one,
# e.g. behind a helper whose result is not followed, would otherwise drop its names silently).
TENSORRT_OBJECTS = {
    "Builder",
    "INetworkDefinition",
    "OnnxParser",
    "ParserError",
    "ITensor",
    "IBuilderConfig",
    "IOptimizationProfile",
    "IHostMemory",
    "ITimingCache",
    "Runtime",
    "ICudaEngine",
    "IExecutionContext",
}


def _sources(files: dict[str, str]) -> list[tuple[str, str, str]]:
    return [(path, module, (ROOT / path).read_text()) for path, module in files.items()]


def _import(name: str):
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, or OSError/RuntimeError from a wheel's shared libraries
        return None


def _trt():
    trt = _import("tensorrt_rtx")
    if trt is None:
        pytest.skip("tensorrt_rtx does not import here: pip install tensorrt-rtx-cu12")
    return trt


def _cudart():
    runtime = _import("cuda.bindings.runtime") or _import("cuda.cudart")  # < 12.6: cuda.cudart
    if runtime is None:
        pytest.skip("cuda-python does not import here: pip install cuda-python")
    return runtime


def _cuda_driver():
    driver = _import("cuda.bindings.driver") or _import("cuda.cuda")
    if driver is None:
        pytest.skip("cuda-python does not import here: pip install cuda-python")
    return driver


@cache
def tensorrt_usage():
    return collect(
        _sources(TENSORRT_FILES),
        annotations=TENSORRT_ANNOTATIONS,
        libraries={"tensorrt": _import("tensorrt_rtx")},
    )


@cache
def cuda_usage():
    return collect(_sources(CUDA_FILES), returns=PYCUDA_RETURNS)


def all_uses() -> dict[str, list[Use]]:
    uses = tensorrt_usage().uses | cuda_usage().uses
    return {lib: sorted(u for u in uses if u.lib == lib) for lib in sorted({u.lib for u in uses})}


def _absent(root, chain) -> bool:
    for part in chain:
        if not hasattr(root, part):
            return True
        root = getattr(root, part)
    return False


def _report(what: str, uses) -> str:
    lines = sorted({str(use) for use in uses})
    return f"{what} ({len(lines)}):\n  " + "\n  ".join(lines)


# ------------------------------------------------------------------------------------ TensorRT


def test_tensorrt_names_exist_in_tensorrt_rtx():
    trt = _trt()
    uses = tensorrt_usage().of("tensorrt")
    missing = [u for u in uses if _absent(trt, u.chain) and u.name not in FULL_TENSORRT_ONLY]
    assert not missing, _report(
        f"used on TensorRT objects, absent from tensorrt_rtx {trt.__version__} (a misspelling, "
        "or a full-TensorRT-only name: guard it and add it to FULL_TENSORRT_ONLY with the reason)",
        missing,
    )


def test_full_tensorrt_allow_list_is_current():
    trt = _trt()
    used = {u.name: u for u in tensorrt_usage().of("tensorrt")}
    stale = {name for name in FULL_TENSORRT_ONLY if name not in used}
    assert not stale, f"FULL_TENSORRT_ONLY names no longer used by the source: {sorted(stale)}"
    present = {name for name in FULL_TENSORRT_ONLY if not _absent(trt, used[name].chain)}
    assert not present, f"FULL_TENSORRT_ONLY names that tensorrt_rtx has now: {sorted(present)}"


def test_collector_follows_every_tensorrt_object():
    _trt()
    usage = tensorrt_usage()
    assert not usage.conflicts, "a name holds two TensorRT types:\n" + "\n".join(usage.conflicts)
    owners = {u.chain[0] for u in usage.of("tensorrt") if len(u.chain) > 1}
    lost = TENSORRT_OBJECTS - owners
    assert not lost, f"the collector no longer follows these TensorRT objects: {sorted(lost)}"
    for file in TENSORRT_FILES:
        assert any(u.file == file for u in usage.uses), f"no TensorRT names found in {file}"


def test_tensorrt_subclasses_implement_every_callback():
    trt = _trt()
    subclasses = [s for s in tensorrt_usage().subclasses if s.lib == "tensorrt"]
    assert {s.base for s in subclasses} >= {("ILogger",), ("IProgressMonitor",)}
    problems = [problem for sub in subclasses for problem in _unimplemented(trt, sub)]
    assert not problems, "\n".join(problems)


def _unimplemented(trt, sub) -> list[str]:
    """The callbacks (the base class's public methods) that ``sub`` does not define."""
    base = walk(trt, sub.base)
    wanted = {n for n in dir(base) if not n.startswith("_") and inspect.isroutine(getattr(base, n))}
    return [
        f"{sub.file}:{sub.line}: {sub.name} derives from trt.{'.'.join(sub.base)} and does not "
        f"define {name} (TensorRT calls it; a misspelt override is never called)"
        for name in sorted(wanted - sub.methods)
    ]


def test_computed_tensorrt_names():
    """The one getattr with a computed name: trt.ComputeCapability.SM<cc> for each target."""
    trt = _trt()
    dynamic = tensorrt_usage().dynamic
    unchecked = [(where, text) for where, text in dynamic if "trt.ComputeCapability" not in text]
    assert not unchecked, (
        f"getattr with a computed name on a TensorRT object, unchecked: {unchecked}"
    )
    from maskdepth.export.tensorrt_build import RTX_COMPUTE_CAPABILITIES

    missing = [
        cc
        for cc in RTX_COMPUTE_CAPABILITIES
        if not hasattr(trt.ComputeCapability, "SM" + cc.replace(".", ""))
    ]
    assert not missing, f"trt.ComputeCapability has no SM member for {missing}"


NEGATIVE_TENSORRT = """
from types import ModuleType


def build(trt: ModuleType, logger):
    builder = trt.Builder(logger)
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP61)
    config.set_flagg(trt.BuilderFlag.DEBUG)
    _limit(config, trt)
    plan = builder.build_serialized_network(builder.create_network(0), config)
    return plan.nbyte


def _limit(config, trt):
    config.set_memory_pool_limt(trt.MemoryPoolType.WORKSPACE, 1 << 20)


def monitor(trt: ModuleType):
    class Monitor(trt.IProgressMonitor):
        def phase_start(self, phase, parent, steps):
            pass

        def step_completed(self, phase, step):
            return True

        def phase_finish(self, phase):
            pass

    return Monitor()
"""


def test_misspelt_tensorrt_names_are_reported():
    trt = _trt()
    usage = collect(
        [("negative.py", "negative", NEGATIVE_TENSORRT)],
        annotations=TENSORRT_ANNOTATIONS,
        libraries={"tensorrt": trt},
    )
    missing = {str(u) for u in usage.of("tensorrt") if _absent(trt, u.chain)}
    assert missing == {
        "negative.py:8: BuilderFlag.FP61",
        "negative.py:9: IBuilderConfig.set_flagg",
        "negative.py:12: IHostMemory.nbyte",
        "negative.py:16: IBuilderConfig.set_memory_pool_limt",
    }
    found = {str(u) for u in usage.of("tensorrt")}
    assert {"negative.py:8: IBuilderConfig.set_flag", "negative.py:9: BuilderFlag.DEBUG"} <= found
    [monitor] = usage.subclasses
    assert _unimplemented(trt, monitor) == [
        "negative.py:20: Monitor derives from trt.IProgressMonitor and does not define "
        "step_complete (TensorRT calls it; a misspelt override is never called)"
    ]


# ---------------------------------------------------------------------------------------- CUDA


def test_cudart_names_exist_in_cuda_python():
    runtime = _cudart()
    uses = cuda_usage().of("cudart")
    assert uses, "no CUDA runtime names found in runtime/runners/cuda.py"
    missing = [u for u in uses if _absent(runtime, u.chain)]
    assert not missing, _report("CUDA runtime names absent from cuda-python", missing)


def _call_sites(path: str) -> list[tuple[int, str, int]]:
    """``self._call("cudaName", *args)`` in ``path``: (line, name, number of args after it)."""
    sites = []
    for node in ast.walk(ast.parse((ROOT / path).read_text())):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else None
        first = node.args[0]
        if name == "_call" and isinstance(first, ast.Constant) and isinstance(first.value, str):
            sites.append((node.lineno, first.value, len(node.args) - 1))
    return sites


def test_cudart_calls_match_their_signatures():
    runtime = _cudart()
    sites = _call_sites("runtime/runners/cuda.py")
    collected = {u.name for u in cuda_usage().of("cudart")}
    assert sites and {name for _, name, _ in sites} <= collected
    wrong = []
    for line, name, count in sites:
        try:
            signature = inspect.signature(getattr(runtime, name))
        except (AttributeError, ValueError, TypeError):
            continue  # absent: the test above says so; no signature: nothing to compare
        try:
            signature.bind(*range(count))
        except TypeError as error:
            wrong.append(
                f"runtime/runners/cuda.py:{line}: {name}{signature} given {count}: {error}"
            )
    assert not wrong, "CUDA runtime calls with the wrong arguments:\n  " + "\n  ".join(wrong)


def _prototypes(module, relative: str) -> dict[str, int] | None:
    """C function name -> number of parameters, from a .pxd file cuda-python ships."""
    path = Path(module.__file__).parent / relative
    if not path.is_file():
        return None
    pattern = r"^cdef\s+[\w ]+?\s+_?(\w+)\(([^)]*)\)"
    prototypes = {}
    for name, params in re.findall(pattern, path.read_text(), flags=re.M):
        params = params.strip()
        prototypes[name] = 0 if params in ("", "void") else params.count(",") + 1
    return prototypes


def test_libcuda_names_exist_in_cuda_python():
    """Through ctypes the versioned symbol is called (cuDeviceTotalMem_v2); cuda.bindings.driver
    names the API without the version (cuDeviceTotalMem)."""
    driver = _cuda_driver()
    uses = [u for u in cuda_usage().of("libcuda") if len(u.chain) == 1]
    assert {u.file for u in uses} == set(CUDA_FILES), "libcuda calls no longer found"
    missing = [u for u in uses if not hasattr(driver, re.sub(r"_v\d+$", "", u.chain[0]))]
    assert not missing, _report("libcuda functions absent from cuda.bindings.driver", missing)


def test_ctypes_calls_match_the_c_prototypes():
    """The exact exported symbol and the argument count, from the prototypes cuda-python binds
    (its loader's list: the versioned names libcuda exports, ``_cuDeviceTotalMem_v2(size_t*
    bytes, CUdevice dev)``), for the CUDA driver and NVML."""
    bindings = _import("cuda.bindings")
    if bindings is None:
        pytest.skip("cuda-python (cuda.bindings) does not import here: pip install cuda-python")
    headers = {"libcuda": "_internal/driver.pxd", "nvml": "cynvml.pxd"}
    wrong, checked = [], 0
    for lib, relative in headers.items():
        prototypes = _prototypes(bindings, relative)
        if prototypes is None:
            continue
        for use in cuda_usage().of(lib):
            symbol = use.chain[0]
            if symbol not in prototypes:
                versions = sorted(p for p in prototypes if re.sub(r"_v\d+$", "", p) == symbol)
                hint = f" (cuda-python binds {versions})" if versions else ""
                wrong.append(f"{use}: not a {lib} symbol cuda-python binds{hint}")
            elif use.nargs is not None and use.nargs != prototypes[symbol]:
                wrong.append(
                    f"{use}: {use.nargs} arguments, the C function takes {prototypes[symbol]}"
                )
            checked += 1
    if not checked:
        pytest.skip(
            f"this cuda-python {bindings.__version__} ships none of {list(headers.values())}"
        )
    assert not wrong, "ctypes calls that do not match the C API:\n  " + "\n  ".join(wrong)


def test_device_attribute_constants():
    """Every constant passed to cuDeviceGetAttribute is the CUdevice_attribute it stands for."""
    driver = _cuda_driver()
    from maskdepth.runtime.runners import cuda

    meaning = {  # what each constant is for, by its name in cuda.py
        "_CC_MAJOR": "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR",
        "_CC_MINOR": "CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR",
    }
    used = set()
    for node in ast.walk(ast.parse((ROOT / "runtime/runners/cuda.py").read_text())):
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith(".cuDeviceGetAttribute"):
            assert isinstance(node.args[1], ast.Name), ast.unparse(node)
            used.add(node.args[1].id)
    assert used == set(meaning), f"cuDeviceGetAttribute constants: {sorted(used)}"
    for constant, name in meaning.items():
        value = getattr(cuda, constant)
        assert value == int(getattr(driver.CUdevice_attribute, name)), (constant, value, name)


NEGATIVE_CUDA = """
import ctypes

from cuda.bindings import runtime as cudart


class Memory:
    def __init__(self, rt):
        self.rt = rt

    def _call(self, function, *args):
        return getattr(self.rt, function)(*args)

    def copy(self):
        self._call("cudaMallocc", 16)
        return getattr(self.rt.cudaMemcpyKind, "cudaMemcpyHostToDevise")


def info():
    driver = ctypes.CDLL("libcuda.so.1")
    driver.cuDeviceGetNmae(None, 0, 0)
    driver.cuDeviceTotalMem(None, 0)
    driver.cuInit()


Memory(cudart).copy()
"""


def test_misspelt_cuda_names_are_reported():
    runtime, driver = _cudart(), _cuda_driver()
    usage = collect([("negative.py", "negative", NEGATIVE_CUDA)])
    assert {str(u) for u in usage.of("cudart") if _absent(runtime, u.chain)} == {
        "negative.py:15: cudaMallocc",
        "negative.py:16: cudaMemcpyKind.cudaMemcpyHostToDevise",
    }
    assert {str(u) for u in usage.of("libcuda") if not hasattr(driver, u.chain[0])} == {
        "negative.py:21: cuDeviceGetNmae"
    }
    prototypes = _prototypes(importlib.import_module("cuda.bindings"), "_internal/driver.pxd")
    if prototypes is not None:
        assert "cuDeviceTotalMem" not in prototypes and "cuDeviceTotalMem_v2" in prototypes
        assert {(u.name, u.nargs) for u in usage.of("libcuda")} >= {("cuInit", 0)}
        assert prototypes["cuInit"] == 1


def test_pycuda_names():
    uses = cuda_usage().of("pycuda")
    assert uses, "no pycuda names found in runtime/runners/cuda.py"
    pycuda = _import("pycuda.driver")
    if pycuda is None:
        names = ", ".join(sorted({u.name for u in uses}))
        pytest.skip(f"pycuda.driver does not import here (no CUDA driver/toolkit); uses: {names}")
    missing = [u for u in uses if _absent(pycuda, u.chain)]
    assert not missing, _report("pycuda names absent from pycuda.driver", missing)
