"""The sidecar ``X.engine.json`` beside a TensorRT plan ``X.engine``: everything the runtime
checks before deserialising the plan, so that a plan made for another TensorRT version or GPU
gives "rebuild with: ..." instead of a deserialisation error, and everything the Predictor needs
(pre-processing, output meaning) without a config file.

Keys::

    format, format_version   "maskdepth-engine", 2
    flavour                  "tensorrt" | "tensorrt_rtx"
    flavour_version          the builder's __version__; plans run only on the same version
    target                   tensorrt: {"gpu": name, "compute_capability": "8.6"};
                             tensorrt_rtx: {"compute_capabilities": ["8.0", "8.6", ...]}
    profile                  {input: {"min": shape, "opt": shape, "max": shape}}
    onnx                     {"path": the ONNX file built from, "sha256": its hash}
    plan                     {"sha256": the plan's hash, "bytes": its size}
    checkpoint               the checkpoint the ONNX file came from, when known
    model                    the model config, ModelInfo.to_dict() (the ONNX metadata), its
                             "precision" the plan's ("fp32" | "fp16" | "int8"): the one place
                             the sidecar says it

No torch and no TensorRT here: the runner imports the flavour the sidecar names.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import warnings
from pathlib import Path

from .errors import MaskDepthError
from .image import write_bytes_atomic
from .model_info import ModelInfo

FORMAT = "maskdepth-engine"
FORMAT_VERSION = 2  # 2: the precision only in the model config (1 held it twice)
FLAVOURS = ("tensorrt", "tensorrt_rtx")
INSTALL = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt-rtx-cu12"}  # pip package names
# What TensorRT for RTX 1.7 builds for (ahead of time, without a GPU), and its default set (7.5
# left out of the default: few edge devices, and every target lengthens the build).
RTX_COMPUTE_CAPABILITIES = ("7.5", "8.0", "8.6", "8.9", "12.0", "12.1")
RTX_DEFAULT_COMPUTE_CAPABILITIES = ("8.0", "8.6", "8.9", "12.0", "12.1")


def sidecar_path(engine_path: str | os.PathLike) -> Path:
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def sha256_of(data: bytes | str | os.PathLike) -> str:
    """sha256 of bytes, or of a file read in chunks."""
    if isinstance(data, bytes | bytearray | memoryview):
        return hashlib.sha256(data).hexdigest()
    digest = hashlib.sha256()
    with open(data, "rb") as file:
        for chunk in iter(lambda: file.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_sidecar(
    *,
    flavour: str,
    flavour_version: str,
    target: dict,
    profile: dict,
    precision: str,
    onnx_path: str | os.PathLike,
    plan: bytes,
    info: ModelInfo,
    checkpoint: str | os.PathLike | None = None,
) -> dict:
    """The sidecar's content for ``plan``, built by ``flavour`` from ``onnx_path``."""
    if flavour not in FLAVOURS:
        raise MaskDepthError(f"flavour {flavour!r}: expected one of {', '.join(FLAVOURS)}")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "flavour": flavour,
        "flavour_version": flavour_version,
        "target": target,
        "profile": {
            name: {k: list(v) for k, v in shapes.items()} for name, shapes in profile.items()
        },
        "onnx": {"path": str(Path(onnx_path).resolve()), "sha256": sha256_of(onnx_path)},
        "plan": {"sha256": sha256_of(plan), "bytes": len(plan)},
        "checkpoint": str(checkpoint) if checkpoint else None,
        "model": info.with_precision(precision).to_dict(),
    }


def write_sidecar(engine_path: str | os.PathLike, sidecar: dict) -> Path:
    """Write ``sidecar`` beside ``engine_path`` atomically; returns its path."""
    path = sidecar_path(engine_path)
    write_bytes_atomic(path, (json.dumps(sidecar, indent=2) + "\n").encode())
    return path


def read_sidecar(engine_path: str | os.PathLike) -> dict:
    """The sidecar of ``engine_path``; missing or damaged: one line saying so."""
    path = sidecar_path(engine_path)
    try:
        sidecar = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaskDepthError(
            f"{engine_path}: no sidecar {path.name} beside it; the runtime needs it to check and "
            "run the plan: build it with 'maskdepth export ... --format engine'"
        ) from None
    except (OSError, ValueError) as exc:
        raise MaskDepthError(f"{path}: damaged engine sidecar ({exc})") from None
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT:
        raise MaskDepthError(f"{path}: not a maskdepth engine sidecar (no format {FORMAT!r})")
    version = int(sidecar.get("format_version", 0))
    if version != FORMAT_VERSION:
        newer = "newer than this maskdepth; upgrade it" if version > FORMAT_VERSION else (
            "from an older maskdepth; build the engine again with 'maskdepth export ... "
            "--format engine'"
        )  # fmt: skip
        raise MaskDepthError(f"{path}: sidecar format {version} is {newer}")
    missing = [
        k for k in ("flavour", "flavour_version", "target", "profile", "model") if k not in sidecar
    ]
    if missing or sidecar["flavour"] not in FLAVOURS:
        raise MaskDepthError(
            f"{path}: damaged engine sidecar (missing or bad: {missing or 'flavour'})"
        )
    return sidecar


def engine_info(engine_path: str | os.PathLike) -> ModelInfo:
    """The :class:`ModelInfo` of a plan, from its sidecar."""
    return ModelInfo.from_dict(read_sidecar(engine_path)["model"], str(sidecar_path(engine_path)))


def check_sidecar(
    sidecar: dict,
    flavour_version: str | None,
    gpu_cc: str | None,
    *,
    gpu_name: str | None = None,
    engine_path: str | os.PathLike = "model.engine",
    device: int = 0,
) -> None:
    """Raise one line naming every mismatch between the plan and this machine, ending with the
    command that rebuilds it. ``flavour_version`` None: the flavour is not installed;
    ``gpu_cc`` None: no GPU to compare with (the caller says so itself)."""
    flavour, built = sidecar["flavour"], sidecar["flavour_version"]
    problems = []
    if flavour_version is None:
        problems.append(
            f"it was built with {flavour} {built}, which is not installed "
            f"(pip install {INSTALL[flavour]}=={built})"
        )
    elif flavour_version != built:
        problems.append(f"it was built with {flavour} {built}, this is {flavour} {flavour_version}")
    cc_problem = _target_problem(sidecar, gpu_cc, gpu_name)
    if cc_problem:
        problems.append(cc_problem)
    if problems:
        command = rebuild_command(sidecar, engine_path, gpu_cc if cc_problem else None, device)
        raise MaskDepthError(f"{engine_path}: {'; '.join(problems)}; rebuild with: {command}")


def target_problem(
    flavour: str, target: dict, gpu_cc: str | None, gpu_name: str | None = None
) -> str | None:
    """Why a plan that ``flavour`` built for ``target`` (the sidecar's) cannot run on a GPU of
    compute capability ``gpu_cc``; None: it can, or ``gpu_cc`` is None (no GPU to compare)."""
    return _target_problem({"flavour": flavour, "target": target}, gpu_cc, gpu_name)


def _target_problem(sidecar: dict, gpu_cc: str | None, gpu_name: str | None) -> str | None:
    target = sidecar["target"]
    if gpu_cc is None:
        return None
    if sidecar["flavour"] == "tensorrt_rtx":
        built = target.get("compute_capabilities") or []
        if gpu_cc not in built:
            return (
                f"it was built for compute capabilities {', '.join(built)} and this GPU "
                f"{gpu_name or ''} is {gpu_cc}".replace("  ", " ")
            )
        return None
    if gpu_cc != target.get("compute_capability"):
        return (
            f"it was built on {target.get('gpu')} (compute capability "
            f"{target.get('compute_capability')}) and this GPU {gpu_name or ''} is {gpu_cc}"
        ).replace("  ", " ")
    if gpu_name and target.get("gpu") and gpu_name != target["gpu"]:
        warnings.warn(
            f"engine built on {target['gpu']}, running on {gpu_name} (same compute capability "
            f"{gpu_cc}): it runs, maybe slower than a plan built here",
            stacklevel=3,
        )
    return None


def rebuild_command(
    sidecar: dict, engine_path: str | os.PathLike, gpu_cc: str | None = None, device: int = 0
) -> str:
    """The ``maskdepth export`` command that builds this plan again (adding ``gpu_cc`` to a
    TensorRT-RTX plan's compute capabilities), on GPU ``device`` (the one it is to run on)."""
    shapes: dict[str, list[int]] = next(iter(sidecar["profile"].values()), {})
    opt, largest = shapes.get("opt", [1, 3, 0, 0]), shapes.get("max", [1, 3, 0, 0])
    info = ModelInfo.from_dict(sidecar["model"])
    dynamic = "height" in info.dynamic
    words = [
        "maskdepth", "export", sidecar.get("checkpoint") or "CHECKPOINT",
        "--format", "engine",
        "--from", sidecar.get("onnx", {}).get("path") or "MODEL.onnx",
        "--precision", info.precision,
        "--size", str(opt[2]), str(opt[3]),
        "--max-batch", str(largest[0]),
    ]  # fmt: skip
    words += ["--dynamic"] if dynamic else []
    words += ["--device", f"cuda:{device}"] if device else []
    if sidecar["flavour"] == "tensorrt_rtx" and gpu_cc and gpu_cc not in RTX_COMPUTE_CAPABILITIES:
        return (
            f"{shlex.join([*words, '--out', str(engine_path)])} (on this machine, with "
            f"{INSTALL['tensorrt']} installed: TensorRT for RTX does not target compute "
            f"capability {gpu_cc})"
        )
    if sidecar["flavour"] == "tensorrt_rtx":
        wanted = list(sidecar["target"].get("compute_capabilities") or [])
        wanted += [gpu_cc] if gpu_cc and gpu_cc not in wanted else []
        words += ["--compute-capability", *wanted] if wanted else []  # nargs="+": one flag
    command = shlex.join([*words, "--out", str(engine_path)])
    return command if sidecar["flavour"] == "tensorrt_rtx" else command + " (on this machine)"
