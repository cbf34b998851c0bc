"""The issue-12 measurement scripts run end to end on tiny inputs and report what they claim."""

from __future__ import annotations

import json


def test_onnx_profile_accounts_for_every_kernel_by_operator_and_block(tmp_path):
    from maskdepth.benchmarks.scripts import onnx_profile

    args = ["--out", str(tmp_path), "--size", "32", "--calls", "2", "--int8-target", "cpu"]
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
    assert "QLinearConv" in report["files"]["int8 cpu, scales (now)"]["ops"]


def test_int8_sensitivity_sweeps_calibrations_and_blocks_with_latency(tmp_path, tiny_checkpoint):
    from maskdepth.benchmarks.scripts import int8_sensitivity

    args = [str(tiny_checkpoint), "--count", "4", "--blocks", "first", "--calib-methods",
            "minmax", "percentile", "--time", "--repeats", "1", "--out", str(tmp_path)]  # fmt: skip
    assert int8_sensitivity.main(args) == 0
    rows = json.loads((tmp_path / "int8_sensitivity.json").read_text())["rows"]
    assert [(r["calibration"], r["float"]) for r in rows] == [
        ("minmax", "(none: full INT8)"), ("minmax", "first"),
        ("percentile", "(none: full INT8)"), ("percentile", "first"),
    ]  # fmt: skip
    assert all(r["p50_ms"] > 0 for r in rows)
    assert [r["x_full_int8"] for r in rows][::2] == [1.0, 1.0]
    assert all(abs(r["d_iou"]) <= 1 and r["max_abs"] >= 0 for r in rows)
