"""`maskdepth demo`: every stage runs on a tiny budget and the report shows them."""

import json

import pytest

from maskdepth.benchmarks.demo import DemoPlan, run_demo
from maskdepth.cli import main
from maskdepth.runtime.image import read_image

pytest.importorskip("onnxruntime")


def test_demo_runs_the_whole_story_and_reports_it(tmp_path, capsys):
    out = tmp_path / "demo"
    plan = DemoPlan(minutes=0.4, count=40, size=32, batch=8, bench_seconds=0.1)
    plan.tolerance = {"*": 1.0}  # 4 validation scenes of an untrained net: INT8 is far off
    assert run_demo(out, plan) == 0
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    report = (out / "report.md").read_text()
    stages = json.loads((out / "stages.json").read_text())
    names = [s["stage"] for s in stages]
    assert names[:2] == ["synthesise a dataset", "train u2netp-md"]
    assert {"export ONNX fp32", "export ONNX fp16", "export ONNX int8"} <= set(names)
    assert "benchmark against PyTorch" in names and "draw predictions" in names
    assert all(s["ok"] is not False for s in stages), stages
    for needle in ["## Export parity", "## Latency and parity", "![predictions](predictions.png)",
                   "maskdepth export", "maskdepth bench", "| model.fp32.onnx |"]:  # fmt: skip
        assert needle in report, needle
    assert (out / "models" / "model.int8.onnx").is_file()
    picture = read_image(out / "predictions.png")
    assert picture.shape[1] > 6 * 160 and picture.shape[0] > 160  # 6 columns, readable cells
    assert (out / "bench" / "bench.png").is_file() and (out / "run" / "best.pt").is_file()


def test_a_failed_stage_is_reported_and_later_stages_still_run(
    tmp_path, monkeypatch, tiny_checkpoint
):
    import shutil

    import maskdepth.benchmarks.demo as demo
    import maskdepth.export.pipeline as pipeline

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    def trained(paths, *args) -> str:  # the session's tiny run: the stages after training count
        paths.run.mkdir(parents=True, exist_ok=True)
        shutil.copy(tiny_checkpoint, paths.checkpoint)
        return "the session's tiny run"

    monkeypatch.setattr(pipeline, "export", broken)
    monkeypatch.setattr(demo, "_train", trained)
    out = tmp_path / "demo"
    plan = DemoPlan(minutes=0.3, count=40, size=32, batch=8, bench_seconds=0.1)
    assert run_demo(out, plan) == 1
    stages = {s["stage"]: s for s in json.loads((out / "stages.json").read_text())}
    assert stages["export ONNX fp32"]["ok"] is False
    assert "exporter exploded" in stages["export ONNX fp32"]["detail"]
    assert stages["draw predictions"]["ok"]  # falls back to the PyTorch model
    assert stages["benchmark against PyTorch"]["ok"] is None  # nothing to benchmark
    report = (out / "report.md").read_text()
    assert "## export ONNX fp32 failed" in report and "exporter exploded" in report


def test_demo_refuses_a_budget_that_is_not_positive(capsys):
    assert main(["demo", "--minutes", "0"]) == 2
    assert "--minutes 0" in capsys.readouterr().err
