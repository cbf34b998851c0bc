"""Checkpoints: one dict of plain types and tensors, written atomically, read with
``torch.load(weights_only=True)`` so that loading a file never runs code from it.

Payload keys (``format_version`` 1)::

    format="maskdepth-checkpoint", format_version, maskdepth_version,
    model={"name", "options"} (create_model's: rebuilds the same model),
    config=ModelInfo.to_dict() (the model config: pre-processing, depth scale, stride, outputs;
    the one place every reader takes the pre-processing from),
    state_dict, ema_state_dict (the EMA model's weights and BatchNorm buffers, or None),
    epoch (epochs completed), step (optimizer steps), epoch_step (batches done in epoch ``epoch``),
    optimizer, plan=Plan.to_dict() (the learning-rate plan), scaler,
    rng={"torch", "numpy", "python", "cuda"},
    loss=LossConfig.to_dict(), data={"spec", "manifest_hash", "binarize_mask", "synth", "split"},
    train=TrainConfig.to_dict(),
    metrics (last validation), best={"epoch", "step", "iou", "rmse", "score"},
    progress={"ema_updates", "epoch_sums", "world", "seconds"} (what --resume needs beyond the
    above; seconds: the run's time so far, which a time budget counts on from)
"""

from __future__ import annotations

import io
import pickle
import random
import zipfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from maskdepth import __version__
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_bytes_atomic
from maskdepth.runtime.model_info import ModelInfo
from maskdepth.runtime.preprocess import Preprocessing

from .models import create_model

FORMAT = "maskdepth-checkpoint"
FORMAT_VERSION = 1
REQUIRED = ("model", "state_dict")


def save_checkpoint(path: str | Path, payload: dict) -> Path:
    """Write ``payload`` (format keys added) to ``path`` atomically: temp file, then rename."""
    path = Path(path)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION} | payload
    payload.setdefault("maskdepth_version", __version__)
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, buffer.getvalue())
    return path


def _read(path: Path, map_location) -> object:
    with path.open("rb") as file:
        is_zip = file.read(4) == b"PK\x03\x04"  # torch.save writes a zip archive
    if not is_zip:
        raise MaskDepthError(f"{path}: not a PyTorch checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise MaskDepthError(
            f"{path}: holds Python objects, not only tensors and plain values; "
            "not a maskdepth checkpoint"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise MaskDepthError(
            f"{path}: truncated or damaged checkpoint ({str(exc).splitlines()[0][:120]})"
        ) from None


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Read a maskdepth checkpoint; every way it can be wrong is one MaskDepthError line."""
    path = Path(path)
    if not path.is_file():
        raise MaskDepthError(f"{path}: no such checkpoint file")
    ckpt = _read(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        what = "a bare state_dict?" if isinstance(ckpt, dict) else type(ckpt).__name__
        raise MaskDepthError(f"{path}: a PyTorch file but not a maskdepth checkpoint ({what})")
    version = ckpt.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise MaskDepthError(
            f"{path}: checkpoint format version {version} is newer than this maskdepth "
            f"{__version__} reads ({FORMAT_VERSION}); upgrade maskdepth"
        )
    missing = [key for key in REQUIRED if key not in ckpt]
    if missing:
        raise MaskDepthError(f"{path}: incomplete maskdepth checkpoint, no {', '.join(missing)}")
    if not ckpt.get("config"):
        raise MaskDepthError(f"{path}: written by an older maskdepth (no model config); retrain")
    return ckpt


def load_weights(model: nn.Module, state_dict: dict, name: str) -> None:
    """``model.load_state_dict`` with a one-line error saying how the weights do not fit."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [
        k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)
    ]
    if missing or unexpected or shapes:
        example = (missing or unexpected or shapes)[0]
        raise MaskDepthError(
            f"checkpoint weights do not fit model {name}: {len(missing)} missing, "
            f"{len(unexpected)} unexpected, {len(shapes)} of another shape (e.g. {example})"
        )
    model.load_state_dict(state_dict)


def model_from_checkpoint(ckpt: dict, use_ema: bool = True) -> tuple[nn.Module, Preprocessing]:
    """The checkpoint's model in eval mode (EMA weights when present and ``use_ema``) and the
    pre-processing it was trained with."""
    name, options = ckpt["model"]["name"], dict(ckpt["model"].get("options") or {})
    model = create_model(name, **options)
    weights = ckpt.get("ema_state_dict") if use_ema else None
    load_weights(model, weights if weights is not None else ckpt["state_dict"], name)
    config = checkpoint_config(ckpt)
    if config.refine is not None:  # a refined model runs its base at the trained base size
        object.__setattr__(model, "base_size", config.refine.base_size)
    return model.eval(), config.preprocessing


def model_record(model: nn.Module) -> dict:
    """The checkpoint's ``model`` entry: the registry name and the options create_model built
    it with (every builder option, defaults included)."""
    name, options = getattr(model, "name", None), getattr(model, "options", {})
    if not isinstance(name, str):
        raise MaskDepthError("the model was not built by create_model: it has no name to record")
    return {"name": name, "options": dict(options)}


def checkpoint_config(ckpt: dict) -> ModelInfo:
    """The model config a checkpoint was trained with (pre-processing, depth scale, stride)."""
    if not ckpt.get("config"):
        raise MaskDepthError("checkpoint written by an older maskdepth (no model config); retrain")
    return ModelInfo.from_dict(ckpt["config"], "checkpoint config")


def rng_state() -> dict:
    """Every global RNG's state as tensors and plain types (weights_only-safe)."""
    state = np.random.get_state(legacy=True)
    if isinstance(state, dict):  # legacy=True gives a dict only for a generator other than MT19937
        raise TypeError("numpy's global generator is not MT19937; its state cannot be saved")
    kind, keys, pos, has_gauss, cached = state
    return {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved (CUDA states only where a GPU is present)."""
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
