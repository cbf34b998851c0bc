"""onnx_profile: onnxruntime's profiler over the exported graphs, by operator and by block."""

from __future__ import annotations

import json


def test_onnx_profile_accounts_for_every_kernel_by_operator_and_block(tmp_path):
    from maskdepth.benchmarks.scripts import onnx_profile

    args = ["--out", str(tmp_path), "--size", "32", "--calls", "2", "--int8-target"]  # fp32
    assert onnx_profile.main(args) == 0
    report = json.loads((tmp_path / "onnx_profile.json").read_text())
    fp32 = report["files"]["fp32, scales (now)"]
    # onnxruntime keeps every convolution a node of its own (fused with its ReLU)
    assert fp32["ops"]["Conv"]["nodes"] == 178
    totals = [sum(row["ms"] for row in fp32[kind].values()) for kind in ("ops", "blocks")]
    assert abs(totals[0] - totals[1]) < 1e-6 * max(totals) and totals[0] > 0
    blocks = fp32["blocks"]
    assert blocks["fusion head (Concat of the sides + 1x1 conv)"]["nodes"] >= 2
    assert {"encoder stages.0", "decoders.1 stages.4", "decoders.0 sides"} <= set(blocks)
    assert list(report["files"]) == ["fp32, scales (now)"]
