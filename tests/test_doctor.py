"""`maskdepth doctor`: rows from injected facts (machines this one is not), and the real probe
of this machine through `python -m maskdepth.doctor`."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys

import pytest

from maskdepth.doctor import (
    CPU,
    CUDA,
    NO_GPU,
    TENSORRT,
    Check,
    Facts,
    TorchCuda,
    add_arguments,
    as_json,
    collect,
    format_lines,
    probe,
)
from maskdepth.export import targets
from maskdepth.runtime import engine_sidecar
from maskdepth.runtime.engine_sidecar import (
    RTX_COMPUTE_CAPABILITIES,
    RTX_DEFAULT_COMPUTE_CAPABILITIES,
    target_problem,
)
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.runners.cuda import GpuInfo

RTX, RTX_DEFAULT = RTX_COMPUTE_CAPABILITIES, RTX_DEFAULT_COMPUTE_CAPABILITIES
ROWS = [
    "maskdepth", "cpu", "gpu", "nvidia driver", "torch", "onnx", "onnxruntime", "tensorrt",
    "tensorrt_rtx", "cuda memory", "build onnx", "run onnx cpu", "run onnx cuda",
    "run onnx tensorrt-ep", "build engine tensorrt", "build engine tensorrt_rtx",
    "run engine tensorrt", "run engine tensorrt_rtx",
]  # fmt: skip
A100 = GpuInfo(0, "NVIDIA A100-SXM4-80GB", "8.0")
H200 = GpuInfo(0, "NVIDIA H200", "9.0")


def _facts(**changes) -> Facts:
    """A CPU-only machine with torch, onnx and the CPU onnxruntime; ``changes`` on top."""
    base = Facts(
        maskdepth="0.1.0",
        python="3.11.7",
        system="Linux",
        cpu="Test CPU",
        cores=8,
        torch="2.5.1",
        onnx="1.17.0",
        onnxruntime="1.20.1",
        onnxruntime_wheels=("onnxruntime",),
        providers=(CPU,),
    )
    return dataclasses.replace(base, **changes)


def _gpu_machine(gpu: GpuInfo, **changes) -> Facts:
    """``gpu`` behind a working driver, with cuda-python for engine memory."""
    gpu_facts = dict(
        gpu=gpu,
        gpu_count=1,
        gpu_memory=80 * 2**30,
        driver="550.54.15",
        driver_cuda="12.4",
        cuda_memory="cuda-python 12.6.0",
    )
    return _facts(**{**gpu_facts, **changes})


def _rows(facts: Facts) -> dict[str, Check]:
    return {check.name: check for check in collect(facts)}


def test_a100_with_tensorrt_rtx_and_the_cuda_provider_builds_and_runs():
    rows = _rows(
        _gpu_machine(
            A100,
            onnxruntime_wheels=("onnxruntime-gpu",),
            providers=(TENSORRT, CUDA, CPU),
            tensorrt={"tensorrt_rtx": "1.7.1.116"},
        )
    )
    assert [*rows] == ROWS
    assert rows["gpu"].ok and "A100" in rows["gpu"].value and "8.0" in rows["gpu"].value
    assert "80.0 GiB" in rows["gpu"].value
    assert rows["nvidia driver"].value == "550.54.15, supports CUDA 12.4"
    for name in ("run onnx cpu", "run onnx cuda", "build engine tensorrt_rtx"):
        assert rows[name].ok, rows[name]
    run = rows["run engine tensorrt_rtx"]
    assert run.ok and "1.7.1.116" in run.value and "8.0" in run.value
    assert "not for this GPU" not in rows["build engine tensorrt_rtx"].reason
    assert "the default of --format engine" in rows["build engine tensorrt_rtx"].reason
    # Only TensorRT-RTX here: full TensorRT neither builds nor backs the TensorRT provider.
    build = rows["build engine tensorrt"]
    assert not build.ok and "building engines needs tensorrt, not installed" in build.reason
    for name in ("run engine tensorrt", "run onnx tensorrt-ep"):
        assert not rows[name].ok and "tensorrt is not installed" in rows[name].reason


def test_h200_with_tensorrt_rtx_only_cannot_target_compute_capability_9_0():
    rows = _rows(_gpu_machine(H200, tensorrt={"tensorrt_rtx": "1.7.1.116"}))
    assert "9.0" not in RTX
    run = rows["run engine tensorrt_rtx"]
    assert not run.ok
    assert "no tensorrt_rtx plan can target this GPU (--compute-capability 9.0" in run.reason
    assert ", ".join(RTX) in run.reason and "use tensorrt" in run.reason
    build = rows["build engine tensorrt_rtx"]  # still builds, for other GPUs
    assert build.ok and "not for this GPU (NVIDIA H200, 9.0)" in build.reason
    assert not rows["run onnx cuda"].ok  # the CPU wheel of onnxruntime
    assert "pip uninstall onnxruntime" in rows["run onnx cuda"].reason
    assert NO_GPU not in rows["run onnx cuda"].reason


def test_full_tensorrt_builds_and_runs_for_the_gpu_it_is_on():
    rows = _rows(_gpu_machine(H200, tensorrt={"tensorrt": "10.7.0"}))
    assert (
        rows["build engine tensorrt"].ok
        and "NVIDIA H200, 9.0" in rows["build engine tensorrt"].value
    )
    assert rows["run engine tensorrt"].ok
    assert not rows["build engine tensorrt_rtx"].ok


def test_turing_is_a_target_only_when_asked():
    assert "7.5" in RTX and "7.5" not in RTX_DEFAULT
    turing = GpuInfo(0, "NVIDIA T4", "7.5")
    rows = _rows(_gpu_machine(turing, tensorrt={"tensorrt_rtx": "1.7.1.116"}))
    assert rows["run engine tensorrt_rtx"].ok
    assert "--compute-capability 7.5" in rows["build engine tensorrt_rtx"].reason


GPUS = [None] + [GpuInfo(0, f"GPU {cc}", cc) for cc in ("7.0", "8.6", "9.0", "12.0")]
INSTALLED = [{}, {"tensorrt": "10.7.0"}, {"tensorrt_rtx": "1.7.1.116"},
             {"tensorrt": "10.7.0", "tensorrt_rtx": "1.7.1.116"}]  # fmt: skip


def _answer(rule, *args) -> str | None:
    """None when the real rule accepts, else its one-line refusal."""
    try:
        rule(*args)
    except (MaskDepthError, MissingDependencyError) as exc:
        return str(exc)
    return None


def _engine_facts(gpu: GpuInfo | None, installed: dict) -> Facts:
    return _gpu_machine(gpu, tensorrt=installed) if gpu else _facts(tensorrt=installed)


@pytest.mark.parametrize("installed", INSTALLED, ids=lambda d: "+".join(d) or "none")
@pytest.mark.parametrize("gpu", GPUS, ids=lambda g: g.compute_capability if g else "no-gpu")
def test_engine_rows_are_what_the_builder_and_the_runner_answer(gpu, installed):
    rows = _rows(_engine_facts(gpu, installed))
    for flavour in ("tensorrt", "tensorrt_rtx"):
        build, run = rows[f"build engine {flavour}"], rows[f"run engine {flavour}"]
        refused = _answer(targets.choose_flavour, flavour, installed, gpu)
        assert build.ok == (refused is None), (flavour, build)
        assert refused is None or refused in build.reason
        if build.ok:
            target = targets.plan_target(flavour, gpu)
            shown = target.get("compute_capabilities") or [target["compute_capability"]]
            assert ", ".join(shown) in build.value or ", ".join(RTX) in build.value
        # A plan built for this GPU (its compute capability asked for), then the runner's check.
        if gpu is None:
            assert not run.ok and NO_GPU in run.reason
            continue
        ccs = [gpu.compute_capability] if flavour == "tensorrt_rtx" else None
        unbuildable = _answer(targets.plan_target, flavour, gpu, ccs)
        problem = unbuildable or target_problem(
            flavour, targets.plan_target(flavour, gpu, ccs), gpu.compute_capability, gpu.name
        )
        assert run.ok == (flavour in installed and problem is None), (flavour, run)
        assert problem is None or problem in run.reason
    auto = _answer(targets.choose_flavour, "auto", installed, gpu)
    defaults = [n for n in rows if "the default of --format engine" in rows[n].reason]
    picked = None if auto else targets.choose_flavour("auto", installed, gpu)
    assert defaults == ([f"build engine {picked}"] if picked else [])


def test_the_doctor_follows_the_real_rules_when_they_change(monkeypatch):
    """No copy of a rule in the doctor: change the builder's targets or the runner's check and
    its rows change with them."""
    facts = _gpu_machine(H200, tensorrt={"tensorrt_rtx": "1.7.1.116", "tensorrt": "10.7.0"})
    before = _rows(facts)
    assert not before["run engine tensorrt_rtx"].ok
    monkeypatch.setattr(targets, "RTX_COMPUTE_CAPABILITIES", (*RTX, "9.0"))
    after = _rows(facts)
    build = after["build engine tensorrt_rtx"]
    assert after["run engine tensorrt_rtx"].ok and "9.0" in build.value
    assert "not a default target: --compute-capability 9.0" in build.reason

    def refuse(sidecar, gpu_cc, gpu_name):
        return f"{sidecar['flavour']} plans never run on {gpu_cc} (a changed rule)"

    monkeypatch.setattr(engine_sidecar, "_target_problem", refuse)
    rows = _rows(facts)
    for flavour in ("tensorrt", "tensorrt_rtx"):
        run = rows[f"run engine {flavour}"]
        assert not run.ok and f"{flavour} plans never run on 9.0 (a changed rule)" in run.reason


def test_without_a_gpu_gpu_rows_say_why_and_onnx_runs_on_the_cpu():
    rows = _rows(_facts(tensorrt={"tensorrt": "10.7.0", "tensorrt_rtx": "1.7.1.116"}))
    assert not rows["gpu"].ok and "libcuda" in rows["gpu"].reason
    assert not rows["nvidia driver"].ok and rows["nvidia driver"].reason
    assert rows["run onnx cpu"].ok and CPU in rows["run onnx cpu"].value
    for name in ("run onnx cuda", "run onnx tensorrt-ep", "run engine tensorrt"):
        assert not rows[name].ok and NO_GPU in rows[name].reason
    assert not rows["build engine tensorrt"].ok
    assert "builds engines on the GPU they are for" in rows["build engine tensorrt"].reason
    build = rows["build engine tensorrt_rtx"]
    assert build.ok and "without a GPU" in build.value and ", ".join(RTX) in build.value
    assert "pycuda" in rows["run engine tensorrt_rtx"].reason


def test_a_driver_that_sees_no_gpu_names_cuda_visible_devices():
    rows = _rows(_facts(driver_cuda="12.4", visible_devices=""))
    assert rows["nvidia driver"].ok
    assert (
        "sees no CUDA GPU" in rows["gpu"].reason and "CUDA_VISIBLE_DEVICES=''" in rows["gpu"].reason
    )


def test_onnxruntime_missing_or_broken():
    rows = _rows(_facts(onnxruntime=None, onnxruntime_wheels=(), providers=()))
    assert not rows["onnxruntime"].ok and "maskdepth[cpu]" in rows["onnxruntime"].reason
    for name in ("run onnx cpu", "run onnx cuda", "run onnx tensorrt-ep"):
        assert not rows[name].ok and rows[name].reason == "onnxruntime is not installed"
    assert rows["build onnx"].ok and "int8 needs onnxruntime" in rows["build onnx"].reason

    broken = {"onnxruntime": "libonnxruntime.so: cannot open shared object file"}
    rows = _rows(_facts(onnxruntime=None, providers=(), broken=broken))
    assert "does not import: libonnxruntime.so" in rows["onnxruntime"].reason
    assert rows["run onnx cpu"].reason == "onnxruntime does not import"


def test_both_onnxruntime_wheels_are_flagged():
    rows = _rows(_facts(onnxruntime_wheels=("onnxruntime", "onnxruntime-gpu")))
    assert rows["onnxruntime"].ok and "overwrite each other" in rows["onnxruntime"].reason


def test_torch_is_asked_about_cuda_only_when_probed():
    rows = _rows(_facts())
    assert "torch cuda" not in rows and "--torch" in rows["torch"].reason
    rows = _rows(_facts(torch_cuda=TorchCuda(False, None, 0)))
    assert not rows["torch cuda"].ok and "CPU-only" in rows["torch cuda"].reason
    rows = _rows(_gpu_machine(A100, torch_cuda=TorchCuda(True, "12.4", 1)))
    assert rows["torch cuda"].ok and rows["torch cuda"].value == "CUDA 12.4, 1 GPU(s)"
    assert [*rows].index("torch cuda") == [*rows].index("torch") + 1


def test_export_needs_torch_and_onnx():
    rows = _rows(_facts(torch=None, tensorrt={"tensorrt_rtx": "1.7.1.116"}))
    assert not rows["torch"].ok and "maskdepth[train]" in rows["torch"].reason
    for name in ("build onnx", "build engine tensorrt_rtx"):
        assert not rows[name].ok and "torch is not installed" in rows[name].reason


def test_format_lines_aligns_the_marks_and_puts_reasons_last():
    text = format_lines(collect(_facts()))
    lines = text.splitlines()
    column = len("build engine tensorrt_rtx") + 2
    assert len(lines) == len(ROWS)
    assert all(line[column : column + 4] in ("ok  ", "no  ") for line in lines)
    gpu = next(line for line in lines if line.startswith("gpu "))
    assert gpu[column:].startswith("no  no CUDA GPU")
    torch = next(line for line in lines if line.startswith("torch "))
    assert torch.endswith(
        "2.5.1 -- run with --torch to ask it about CUDA (importing torch takes seconds)"
    )


def test_json_holds_checks_and_facts():
    facts = _gpu_machine(A100)
    data = json.loads(as_json(facts, collect(facts)))
    assert set(data) == {"checks", "facts"}
    assert [row["name"] for row in data["checks"]] == ROWS
    assert all(set(row) == {"name", "ok", "value", "reason"} for row in data["checks"])
    assert data["facts"]["gpu"] == {"index": 0, "name": A100.name, "compute_capability": "8.0"}
    assert set(data["facts"]) == {f.name for f in dataclasses.fields(Facts)}


def test_arguments():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert vars(parser.parse_args([])) == {"json": False, "torch": False}
    assert vars(parser.parse_args(["--json", "--torch"])) == {"json": True, "torch": True}


def test_provider_names_are_those_of_the_onnxruntime_runner():
    pytest.importorskip("onnxruntime")
    from maskdepth.runtime.runners import ort

    assert (CPU, CUDA, TENSORRT) == (ort.CPU, ort.CUDA, ort.TENSORRT)


def test_this_machine_as_json_without_loading_the_heavy_libraries():
    """Fast by construction (its time is a benchmark's business): neither torch nor onnx nor our
    builder is imported without --torch (only the builder's plain rules, export.targets)."""
    code = (
        "import sys; from maskdepth.doctor import main; main(['--json']); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'onnx'}), "
        "'maskdepth.export.tensorrt_build' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "[] False"
    data = json.loads(done.stdout)
    assert [row["name"] for row in data["checks"]] == ROWS  # torch is not imported
    facts = data["facts"]
    assert facts["torch_cuda"] is None and facts["cores"] >= 1 and facts["cpu"]
    rows = {row["name"]: row for row in data["checks"]}
    assert rows["cpu"]["ok"] and rows["gpu"]["ok"] == (facts["gpu"] is not None)
    assert all(row["ok"] or row["reason"] for row in data["checks"])


@pytest.mark.gpu
def test_probe_reads_the_gpu_through_the_driver():
    facts = probe(torch=True)
    assert facts.gpu is not None and facts.gpu_count >= 1
    assert facts.gpu_memory and facts.gpu_memory > 2**30
    assert facts.driver_cuda and facts.driver
    assert facts.torch_cuda is not None and facts.torch_cuda.available
    assert _rows(facts)["torch cuda"].ok
