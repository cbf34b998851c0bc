"""TensorRT engines: real plans built on the CPU with TensorRT-RTX from the three ONNX forms of a
small model, their sidecars, the errors before any work, and (marked gpu) running them."""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

from maskdepth.runtime.engine_sidecar import (
    check_sidecar,
    engine_info,
    make_sidecar,
    read_sidecar,
    sidecar_path,
    write_sidecar,
)
from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.preprocess import Preprocessing

SIZE = (64, 64)
INFO = ModelInfo("u2netp-lite", Preprocessing(size=SIZE), version="test")


def _feeds(count: int, batch: int = 1, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [
        {name: rng.standard_normal((batch, 3, *SIZE), dtype=np.float32) for name in ("bg", "scene")}
        for _ in range(count)
    ]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict:
    """u2netp-lite at 64x64 as ONNX fp32, fp16, INT8 for TensorRT and INT8 for the CPU."""
    from maskdepth.export.onnx_fp16 import to_fp16
    from maskdepth.export.onnx_fp32 import export_graph, save_model
    from maskdepth.export.onnx_int8 import to_int8
    from maskdepth.train.models import create_model

    root = tmp_path_factory.mktemp("onnx")
    graph = export_graph(create_model("u2netp-lite").eval(), INFO, 17)
    files = {"fp32": save_model(graph, root / "fp32.onnx")}
    files["fp16"] = save_model(to_fp16(graph, INFO), root / "fp16.onnx")
    for target in ("tensorrt", "cpu"):
        quantized = to_int8(graph, INFO, _feeds(2), 2, "minmax", target)
        files[f"int8-{target}"] = save_model(quantized, root / f"int8-{target}.onnx")
    return files


@pytest.fixture(scope="module")
def rtx():
    pytest.importorskip("tensorrt_rtx")
    from maskdepth.export.tensorrt_build import load_flavour

    return load_flavour("tensorrt_rtx")


@pytest.fixture(scope="module")
def engines(rtx, onnx_files, tmp_path_factory) -> dict:
    """fp32 for the default compute capabilities; fp16 and INT8 for 8.6 only."""
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_engine

    root = tmp_path_factory.mktemp("engines")
    profile = Profile.for_export(SIZE, dynamic=False, max_batch=4)
    return {
        precision: build_engine(
            onnx_files["int8-tensorrt" if precision == "int8" else precision],
            root / precision / "model.engine",
            BuildSettings(
                flavour=rtx,
                profile=profile,
                compute_capabilities=None if precision == "fp32" else ["8.6"],
                checkpoint="run/best.pt",
                progress=False,
            ),
        )
        for precision in ("fp32", "fp16", "int8")
    }


# building


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_and_sidecar(rtx, engines, onnx_files, precision):
    from maskdepth.export.tensorrt_build import RTX_DEFAULT_COMPUTE_CAPABILITIES

    engine = engines[precision]
    plan = engine.read_bytes()
    assert len(plan) > 1_000_000  # a real plan with the weights inside
    assert sorted(p.name for p in engine.parent.iterdir()) == ["model.engine", "model.engine.json"]
    sidecar = read_sidecar(engine)
    assert (sidecar["flavour"], sidecar["flavour_version"]) == ("tensorrt_rtx", rtx.version)
    expected_ccs = list(RTX_DEFAULT_COMPUTE_CAPABILITIES) if precision == "fp32" else ["8.6"]
    assert sidecar["target"] == {"compute_capabilities": expected_ccs}
    assert sidecar["profile"]["bg"] == {
        "min": [1, 3, 64, 64],
        "opt": [1, 3, 64, 64],
        "max": [4, 3, 64, 64],
    }
    assert sidecar["profile"]["scene"] == sidecar["profile"]["bg"]
    source = onnx_files["int8-tensorrt" if precision == "int8" else precision]
    assert sidecar["onnx"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert sidecar["plan"] == {"sha256": hashlib.sha256(plan).hexdigest(), "bytes": len(plan)}
    assert "precision" not in sidecar  # once, in the model config
    assert engine_info(engine) == INFO.with_precision(precision)  # all the ONNX metadata


def test_fp16_plan_is_smaller_than_fp32(engines):
    # the fp16 graph's weights are compiled as fp16: measured 5.1 MB against 7.4 MB
    assert engines["fp16"].stat().st_size < 0.8 * engines["fp32"].stat().st_size


def test_rtx_leaves_the_timing_cache_alone(rtx, onnx_files, tmp_path):
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_plan

    cache = tmp_path / "timing.cache"
    with pytest.warns(UserWarning, match="no timing cache"):
        plan = build_plan(
            onnx_files["fp32"],
            BuildSettings(
                flavour=rtx,
                profile=Profile(SIZE, max_batch=2),
                timing_cache=cache,
                compute_capabilities=["8.9"],
                progress=False,
            ),
        )
    assert len(plan) > 1_000_000
    assert not cache.exists()


@pytest.mark.filterwarnings("ignore:tensorrt_rtx. onnxOpImporters")  # "UINT8 zero_point"
def test_int8_graph_for_the_cpu_is_refused_node_by_node(rtx, onnx_files, tmp_path):
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_engine

    engine = tmp_path / "cpu-int8.engine"
    with pytest.raises(MaskDepthError) as caught:
        build_engine(
            onnx_files["int8-cpu"],
            engine,
            BuildSettings(flavour=rtx, profile=Profile(SIZE), progress=False),
        )
    message = str(caught.value)
    assert "\n" not in message
    assert "refused it: node 0 'bg_QuantizeLinear' (QuantizeLinear): " in message
    assert "--int8-target tensorrt" in message
    assert list(tmp_path.iterdir()) == []


def test_unreadable_onnx_leaves_nothing(rtx, tmp_path):
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_engine

    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07not an onnx file at all" * 10)
    with pytest.raises(MaskDepthError, match="broken.onnx: not a readable ONNX file"):
        build_engine(
            broken, tmp_path / "m.engine", BuildSettings(flavour=rtx, profile=Profile(SIZE))
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx"]
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        build_engine(
            tmp_path / "missing.onnx",
            tmp_path / "m.engine",
            BuildSettings(flavour=rtx, profile=Profile(SIZE)),
        )


def test_precision_and_size_mismatches_are_refused_before_building(rtx, onnx_files):
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_plan

    with pytest.raises(MaskDepthError, match="holds an fp32 graph.*--format onnx-int8"):
        build_plan(
            onnx_files["fp32"], BuildSettings(flavour=rtx, profile=Profile(SIZE), precision="int8")
        )
    with pytest.raises(MaskDepthError, match="holds an fp16 graph"):
        build_plan(
            onnx_files["fp16"], BuildSettings(flavour=rtx, profile=Profile(SIZE), precision="fp32")
        )
    with pytest.raises(MaskDepthError, match="fixed height of 64 and the engine profile asks f"):
        build_plan(
            onnx_files["fp32"],
            BuildSettings(flavour=rtx, profile=Profile((96, 96)), progress=False),
        )


def test_load_flavour(rtx):
    from maskdepth.export.tensorrt_build import load_flavour

    assert rtx.name == "tensorrt_rtx" and rtx.version.count(".") >= 2
    with pytest.raises(MaskDepthError, match="flavour 'onnx'"):
        load_flavour("onnx")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(MissingDependencyError, match="needs tensorrt, not installed"):
            load_flavour("tensorrt")
        assert load_flavour("auto").name == "tensorrt_rtx"


def test_compute_capabilities_and_profiles():
    from maskdepth.export.tensorrt_build import Profile, check_compute_capabilities

    assert check_compute_capabilities(["8.6", "sm_120", "89", "SM75", "8.6"]) == (
        "8.6",
        "12.0",
        "8.9",
        "7.5",
    )
    with pytest.raises(MaskDepthError, match="--compute-capability 9.0"):
        check_compute_capabilities(["9.0"])
    shapes = Profile.for_export((96, 128), dynamic=True, max_batch=8).shapes()
    assert shapes["scene"] == {
        "min": (1, 3, 32, 32),
        "opt": (1, 3, 96, 128),
        "max": (8, 3, 192, 256),
    }
    with pytest.raises(MaskDepthError, match="--max-batch 0"):
        Profile.for_export((64, 64), dynamic=False, max_batch=0)


def test_a_crashed_gate_leaves_no_engine_at_the_final_name(rtx, onnx_files, tmp_path):
    """The plan is built under a pending name and named only by the gate. The builder is told
    a GPU is here (the injected fact); the gate's runner then finds none and fails: nothing
    stays at the final name, nor under the pending one."""
    from dataclasses import replace

    from maskdepth.export.engine import export_engine
    from maskdepth.export.gate import Reference
    from maskdepth.export.options import ExportOptions
    from maskdepth.export.parity import reference_runner
    from maskdepth.export.samples import held_out_samples
    from maskdepth.runtime.runners.cuda import GpuInfo, gpu_info
    from maskdepth.train.models import create_model

    if gpu_info(0) is not None:
        pytest.skip("a CUDA GPU is here: the gate would run")
    samples = held_out_samples({}, INFO.preprocessing, 2)
    reference = Reference(samples, reference_runner(create_model("u2netp-lite").eval(), samples))
    flavour = replace(rtx, gpu=GpuInfo(0, "NVIDIA RTX A6000", "8.6"))
    options = ExportOptions(format="engine", max_batch=2, compute_capabilities=("8.6",))
    out = tmp_path / "out" / "model.engine"
    out.parent.mkdir()
    with pytest.raises(MaskDepthError, match="no GPU 0 here"):
        export_engine(onnx_files["fp32"], out, options, flavour, reference, {}, None)
    assert list(out.parent.iterdir()) == []


def test_a_plan_built_for_other_gpus_keeps_its_name_unchecked(rtx, onnx_files, tmp_path):
    """A TensorRT-RTX plan built ahead of time for compute capability 8.9 on a machine whose GPU
    (the injected fact) is an H200 (9.0): no gate can run it here, so it is kept, unchecked, and
    the report says why (a failing gate would have deleted a plan built for another machine)."""
    from dataclasses import replace

    from maskdepth.export.engine import export_engine
    from maskdepth.export.gate import Reference
    from maskdepth.export.options import ExportOptions
    from maskdepth.export.parity import reference_runner
    from maskdepth.export.samples import held_out_samples
    from maskdepth.runtime.runners.cuda import GpuInfo
    from maskdepth.train.models import create_model

    samples = held_out_samples({}, INFO.preprocessing, 2)
    reference = Reference(samples, reference_runner(create_model("u2netp-lite").eval(), samples))
    flavour = replace(rtx, gpu=GpuInfo(0, "NVIDIA H200", "9.0"))
    options = ExportOptions(format="engine", max_batch=2, compute_capabilities=("8.9",))
    out = tmp_path / "model.engine"
    result = export_engine(onnx_files["fp32"], out, options, flavour, reference, {}, None)
    assert out.is_file() and result.passed is None and result.comparison is None
    assert "parity not checked: the plan cannot run on this GPU" in result.note
    assert "built for compute capabilities 8.9" in result.note and "is 9.0" in result.note
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.engine",
        "model.engine.json",
        "model.engine.parity.json",
    ]


# sidecar (no TensorRT needed)


def _sidecar(tmp_path, flavour="tensorrt_rtx", target=None) -> tuple:
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx bytes")
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"plan bytes")
    sidecar = make_sidecar(
        flavour=flavour,
        flavour_version="1.7.1.116",
        target=target or {"compute_capabilities": ["8.6", "8.9"]},
        profile={"bg": {"min": (1, 3, 64, 64), "opt": (2, 3, 64, 64), "max": (8, 3, 64, 64)}},
        precision="fp16",
        onnx_path=onnx_path,
        plan=b"plan bytes",
        info=INFO,
        checkpoint="runs/a b/best.pt",
    )
    write_sidecar(engine, sidecar)
    return engine, read_sidecar(engine)


def test_sidecar_round_trip(tmp_path):
    engine, sidecar = _sidecar(tmp_path)
    assert sidecar_path(engine).name == "m.engine.json"
    assert sidecar["onnx"]["sha256"] == hashlib.sha256(b"onnx bytes").hexdigest()
    assert sidecar["profile"]["bg"]["max"] == [8, 3, 64, 64]
    info = engine_info(engine)
    assert (info.model, info.precision, info.size) == ("u2netp-lite", "fp16", SIZE)
    check_sidecar(sidecar, "1.7.1.116", "8.9", engine_path=engine)  # matches: no error
    check_sidecar(sidecar, "1.7.1.116", None, engine_path=engine)  # no GPU: not compared


def test_sidecar_holds_the_precision_once(tmp_path):
    engine, sidecar = _sidecar(tmp_path)
    assert "precision" not in sidecar and sidecar["model"]["precision"] == "fp16"
    int8 = dict(sidecar, model=INFO.with_precision("int8").to_dict())
    assert engine_info(engine).precision == "fp16"
    with pytest.raises(MaskDepthError) as caught:  # the rebuild reads what the runtime reads
        check_sidecar(int8, "1.8.0.1", None, engine_path=engine)
    assert _parsed_rebuild(str(caught.value)).options.precision == "int8"


def _parsed_rebuild(message: str):
    """The export options of the "rebuild with:" command in ``message``, parsed by the real
    ``maskdepth export`` parser (what a user who pastes it gets)."""
    import shlex

    from maskdepth.cli import build_parser
    from maskdepth.options import options_from

    command = message.split("rebuild with: ", 1)[1].split(" (on this machine", 1)[0]
    words = shlex.split(command)
    assert words[:2] == ["maskdepth", "export"]
    args = build_parser().parse_args(words[1:])
    return options_from(args.handler.options, args)


def test_sidecar_mismatch_says_how_to_rebuild(tmp_path):
    engine, sidecar = _sidecar(tmp_path)
    with pytest.raises(MaskDepthError) as caught:
        check_sidecar(sidecar, "1.8.0.1", "7.5", gpu_name="RTX 2080", engine_path=engine)
    message = str(caught.value)
    assert "built with tensorrt_rtx 1.7.1.116, this is tensorrt_rtx 1.8.0.1" in message
    assert "built for compute capabilities 8.6, 8.9 and this GPU RTX 2080 is 7.5" in message
    command = _parsed_rebuild(message)
    assert (str(command.checkpoint), command.out) == ("runs/a b/best.pt", engine)
    options = command.options
    assert (options.format, options.from_onnx, options.precision) == (
        "engine",
        tmp_path / "m.onnx",
        "fp16",
    )
    assert (options.size, options.max_batch, options.dynamic) == ((64, 64), 8, False)
    # every target the plan had, and this GPU's: argparse keeps only the last of repeated flags
    assert options.compute_capabilities == ("8.6", "8.9", "7.5")
    with pytest.raises(MaskDepthError, match="which is not installed .pip install tensorrt-rtx"):
        check_sidecar(sidecar, None, None, engine_path=engine)
    tensorrt_engine, tensorrt = _sidecar(
        tmp_path, "tensorrt", {"gpu": "NVIDIA A100", "compute_capability": "8.0"}
    )
    with pytest.raises(MaskDepthError) as caught:  # to run on GPU 1: rebuilt on GPU 1
        check_sidecar(tensorrt, "10.9", "8.6", engine_path=tensorrt_engine, device=1)
    assert _parsed_rebuild(str(caught.value)).options.device == "cuda:1"


def test_rebuild_for_a_gpu_tensorrt_rtx_cannot_target_names_full_tensorrt(tmp_path):
    engine, sidecar = _sidecar(tmp_path)
    with pytest.raises(MaskDepthError) as caught:
        check_sidecar(sidecar, "1.7.1.116", "9.0", gpu_name="NVIDIA H200", engine_path=engine)
    message = str(caught.value)
    assert "--compute-capability" not in message  # export would refuse 9.0 for TensorRT-RTX
    assert message.endswith(
        f"--out {engine} (on this machine, with tensorrt installed: TensorRT for RTX does not "
        "target compute capability 9.0)"
    )


def test_sidecar_for_tensorrt_checks_the_gpu(tmp_path):
    target = {"gpu": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}
    engine, sidecar = _sidecar(tmp_path, "tensorrt", target)
    with pytest.raises(
        MaskDepthError,
        match=r"built on NVIDIA A100-SXM4-40GB \(compute "
        r"capability 8.0\) and this GPU NVIDIA H100 is 9.0; rebuild with: "
        r".*\(on this machine\)$",
    ):
        check_sidecar(sidecar, "1.7.1.116", "9.0", gpu_name="NVIDIA H100", engine_path=engine)
    with pytest.warns(UserWarning, match="same compute capability 8.0"):
        check_sidecar(sidecar, "1.7.1.116", "8.0", gpu_name="NVIDIA A100-PCIE", engine_path=engine)


def test_an_engine_whose_flavour_is_missing_names_the_pip_command(tmp_path):
    import importlib.util

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("full TensorRT is installed here")
    from maskdepth.runtime import TensorRTRunner

    target = {"gpu": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0"}
    engine, _ = _sidecar(tmp_path, flavour="tensorrt", target=target)
    runner = TensorRTRunner(engine)
    with pytest.raises(MissingDependencyError) as caught:
        runner.activate()
    assert str(caught.value) == (
        f"{engine}: running this engine needs tensorrt 1.7.1.116, which is not installed: "
        "pip install tensorrt==1.7.1.116"
    )
    assert not runner.is_active


def test_missing_or_damaged_sidecar(tmp_path):
    engine = tmp_path / "m.engine"
    with pytest.raises(MaskDepthError, match="no sidecar m.engine.json beside it"):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{"format": "maskdepth-engine", "flav')
    with pytest.raises(MaskDepthError, match="damaged engine sidecar") as caught:
        read_sidecar(engine)
    assert "\n" not in str(caught.value)
    sidecar_path(engine).write_text(json.dumps({"format": "something else"}))
    with pytest.raises(MaskDepthError, match="not a maskdepth engine sidecar"):
        engine_info(engine)
    _, written = _sidecar(tmp_path)
    for version, says in ((1, "from an older maskdepth; build the engine again"), (3, "newer")):
        sidecar_path(engine).write_text(json.dumps(written | {"format_version": version}))
        with pytest.raises(MaskDepthError, match=f"sidecar format {version} is {says}"):
            read_sidecar(engine)  # 1 held the precision twice: an FP16-flag plan read as fp32


# the runner, up to the GPU (runs without one)


def test_runner_checks_before_deserialising(engines, tmp_path):
    from maskdepth.runtime import TensorRTRunner
    from maskdepth.runtime.runners.cuda import gpu_info

    runner = TensorRTRunner(engines["fp16"])
    assert (runner.device, runner.provider, runner.info.precision) == (
        "cuda",
        "tensorrt_rtx",
        "fp16",
    )
    engine = tmp_path / "copy.engine"
    engine.write_bytes(engines["fp16"].read_bytes())
    gpu = gpu_info(0)
    here = {"compute_capabilities": [gpu.compute_capability if gpu else "8.6"]}
    sidecar = dict(read_sidecar(engines["fp16"]), target=here)  # only the mismatch made here
    write_sidecar(engine, dict(sidecar, flavour_version="0.9.0"))
    with pytest.raises(
        MaskDepthError,
        match="built with tensorrt_rtx 0.9.0.*rebuild with: "
        "maskdepth export run/best.pt --format engine",
    ):
        TensorRTRunner(engine).activate()
    write_sidecar(engine, dict(sidecar, plan={"sha256": "0" * 64, "bytes": 1}))
    with pytest.raises(MaskDepthError, match="does not match its sidecar"):
        TensorRTRunner(engine).activate()
    if gpu is None:
        with pytest.raises(MaskDepthError, match="no GPU 0 here; on the CPU, use the ONNX"):
            runner.activate()
        assert not runner.is_active
    sidecar_path(engine).unlink()
    with pytest.raises(MaskDepthError, match="no sidecar"):
        TensorRTRunner(engine)


def test_gpu_n_is_the_gpu_the_runner_and_the_builder_use(rtx, engines, onnx_files, tmp_path):
    """cuda:N reaches the engine runner (GPU 1: none here) and the tensorrt builder, which
    makes GPU N current before building (the injected fact: a GPU 1; here CUDA refuses it)."""
    from maskdepth.export.tensorrt_build import BuildSettings, Flavour, Profile, build_engine
    from maskdepth.runtime import Predictor
    from maskdepth.runtime.runners.cuda import GpuInfo, gpu_info

    if gpu_info(1) is not None:
        pytest.skip("this machine has a GPU 1")
    with pytest.raises(MaskDepthError, match="there is no GPU 1 here"):
        Predictor(engines["fp16"], device="cuda:1")
    flavour = Flavour("tensorrt", rtx.trt, GpuInfo(1, "NVIDIA A100", "8.0"))  # RTX's API
    with pytest.raises((MaskDepthError, MissingDependencyError), match="GPU 1|cuda-python"):
        build_engine(onnx_files["fp32"], tmp_path / "m.engine",
                     BuildSettings(flavour, Profile(SIZE), progress=False))  # fmt: skip
    assert list(tmp_path.iterdir()) == []


# on a CUDA GPU

MAX_ABS = {"fp32": 5e-3, "fp16": 3e-2, "int8": 8e-2}  # TF32 / fp16 / int8 kernels vs the CPU


@pytest.fixture(scope="module")
def gpu_engines(onnx_files, tmp_path_factory) -> dict:
    from maskdepth.export.tensorrt_build import RTX_COMPUTE_CAPABILITIES, Profile, load_flavour
    from maskdepth.runtime.runners.cuda import gpu_info

    try:
        flavour = load_flavour("auto")
    except MissingDependencyError as exc:
        pytest.skip(str(exc))
    cc = gpu_info(0).compute_capability
    if flavour.name == "tensorrt_rtx" and cc not in RTX_COMPUTE_CAPABILITIES:
        pytest.skip(f"TensorRT-RTX does not build for compute capability {cc}")
    root = tmp_path_factory.mktemp("gpu-engines")
    ccs = [cc] if flavour.name == "tensorrt_rtx" else None
    return {
        p: _build(onnx_files, flavour, p, root, ccs, Profile(SIZE, max_batch=4))
        for p in ("fp32", "fp16", "int8")
    }


def _build(onnx_files, flavour, precision, root, ccs, profile):
    from maskdepth.export.tensorrt_build import BuildSettings, build_engine

    source = onnx_files["int8-tensorrt" if precision == "int8" else precision]
    engine = build_engine(
        source,
        root / f"{precision}.engine",
        BuildSettings(flavour=flavour, profile=profile, compute_capabilities=ccs, progress=False),
    )
    return engine, source


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_matches_onnxruntime(gpu_engines, precision):
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner
    from maskdepth.runtime.runners.tensorrt import TensorRTRunner

    engine, source = gpu_engines[precision]
    with TensorRTRunner(engine) as runner, OnnxRuntimeRunner(source) as reference:
        assert runner.input_metadata["bg"] == (np.dtype(np.float32), ("batch", 3, 64, 64))
        for batch in (3, 1, 4, 2):  # grows the buffers once, then reuses them
            feed = _feeds(1, batch, seed=batch)[0]
            got, want = runner.infer(feed), reference.infer(feed)
            for name in ("mask", "depth"):
                assert got[name].shape == want[name].shape == (batch, 1, 64, 64)
                assert np.abs(got[name] - want[name]).max() <= MAX_ABS[precision], name
        with pytest.raises(MaskDepthError, match="the engine takes"):
            runner.infer(_feeds(1, 5)[0])


@pytest.mark.gpu
def test_tensorrt_timing_cache_is_written_and_reused(onnx_files, tmp_path):
    pytest.importorskip("tensorrt")
    from maskdepth.export.tensorrt_build import BuildSettings, Profile, build_plan, load_flavour

    flavour = load_flavour("tensorrt")
    cache = tmp_path / "timing.cache"
    build_plan(
        onnx_files["fp32"],
        BuildSettings(flavour=flavour, profile=Profile(SIZE), timing_cache=cache),
    )
    first = cache.read_bytes()
    assert len(first) > 1000
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*refused it")
        build_plan(
            onnx_files["fp32"],
            BuildSettings(flavour=flavour, profile=Profile(SIZE), timing_cache=cache),
        )
    assert cache.stat().st_size >= len(first)
