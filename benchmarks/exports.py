"""ONNX files of an untrained u2netp-md (fixed seed), for the benchmarks that time graphs rather
than accuracy: fp32 and INT8 per target, traced the way the export traces now (``scales``) and
the way it did before (``sizes``: the upsampling size read from the skip tensor)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from unittest import mock

import numpy as np


def _size_traced(x, like):
    """The upsampling as the export traced it before: the size read from ``like``."""
    import torch.nn.functional as F

    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


FORMS = ("sizes (before)", "scales (now)")


def export_files(
    folder: Path, size: int, targets: list[str], forms: tuple[str, ...] = FORMS
) -> dict[str, Path]:
    """fp32 and INT8 per target of each of ``forms``, named ``"fp32, FORM"``, ``"int8 T, FORM"``."""
    import onnx
    import torch

    from maskdepth.export.onnx_fp32 import trace_graph
    from maskdepth.export.onnx_int8 import to_int8
    from maskdepth.runtime.model_info import ModelInfo
    from maskdepth.runtime.preprocess import Preprocessing
    from maskdepth.train.models import create_model

    torch.manual_seed(0)
    model = create_model("u2netp-md").eval()
    info = ModelInfo("u2netp-md", Preprocessing(size=(size, size)))
    rng = np.random.default_rng(0)
    feeds = [{n: rng.random((1, 3, size, size), dtype=np.float32) for n in ("bg", "scene")}
             for _ in range(8)]  # fmt: skip
    files: dict[str, Path] = {}
    for form in forms:
        patch = "maskdepth.train.models.u2net._upsample_like"
        before = form.startswith("sizes")
        with mock.patch(patch, _size_traced) if before else contextlib.nullcontext():
            graph = trace_graph(model, info, 17)  # not the cache: the code differs, not the weights
        files[f"fp32, {form}"] = _save(onnx, graph, folder / f"{len(files)}.onnx")
        for target in targets:
            int8 = to_int8(graph, info, feeds, len(feeds), "minmax", target)
            files[f"int8 {target}, {form}"] = _save(onnx, int8, folder / f"{len(files)}.onnx")
    return files


def _save(onnx, graph, path: Path) -> Path:
    onnx.save(graph, str(path))
    return path
