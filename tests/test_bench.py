"""`maskdepth bench`: one row per model x backend x batch plus the PyTorch reference, files
people read, and a broken model that fails its own rows only."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from maskdepth.cli import main
from maskdepth.export.pipeline import ExportOptions, export
from maskdepth.runtime.image import read_image

pytest.importorskip("onnxruntime")
COLUMNS = ["model", "format", "precision", "backend", "provider", "device", "MB", "batch",
           "mean ms", "p50", "p90", "p99", "images/s", "GFLOP", "x floor", "IoU", "dIoU", "RMSE",
           "dRMSE",
           "max abs diff", "status"]  # fmt: skip


@pytest.fixture(scope="module")
def models(tiny_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    fp32, int8 = out / "m.fp32.onnx", out / "m.int8.onnx"
    fast = dict(parity_count=16, calib_count=16)
    export(tiny_checkpoint, fp32, ExportOptions(format="onnx", **fast))
    export(tiny_checkpoint, int8, ExportOptions(format="onnx-int8", tolerance={"*": 1}, **fast))
    broken = out / "broken.onnx"
    broken.write_bytes(b"not a model")
    return fp32, int8, broken


def test_bench_rows_files_and_a_broken_model(models, tiny_checkpoint, tmp_path, capsys):
    fp32, int8, broken = models
    out = tmp_path / "bench"
    args = ["bench", str(fp32), str(int8), str(broken), "--reference", str(tiny_checkpoint),
            "--out", str(out), "--batch", "1,4", "--count", "12", "--iters", "4",
            "--warmup", "1"]  # fmt: skip
    assert main(args) == 1  # the broken file fails, the others still run
    printed = capsys.readouterr().out
    assert "| model | format |" in printed
    report = json.loads((out / "bench.json").read_text())
    rows = report["rows"]
    assert [(r["format"], r["batch"]) for r in rows] == [
        ("pytorch", 1), ("pytorch", 4), ("onnx", 1), ("onnx", 4), ("onnx", 1), ("onnx", 4),
        ("onnx", 1), ("onnx", 4),
    ]  # fmt: skip
    reference, fp32_rows, int8_rows, broken_rows = rows[:2], rows[2:4], rows[4:6], rows[6:]
    assert all(r["status"] == "reference" and r["d_iou"] == 0 for r in reference)
    for row in fp32_rows:
        assert row["status"] == "ok" and row["provider"] == "CPUExecutionProvider"
        assert row["max_abs"] <= 1e-4 and row["iou"] == pytest.approx(reference[0]["iou"])
        assert len(row["latency_ms"]) == 4 and row["latency"]["p50_ms"] > 0
        assert row["latency"]["images_per_s"] == pytest.approx(
            1000 * row["batch"] / row["latency"]["mean_ms"]
        )
    # The floor: the file's work (counted from its graph; u2netp-md at 32x32 is 0.68 GFLOP per
    # image) at the sgemm peak measured in the same run.
    peak = max(report["machine"]["sgemm_gflops"].values())
    for row in fp32_rows + int8_rows:
        assert row["gflop"] == pytest.approx(0.6832 * row["batch"], rel=1e-3)
        assert row["floor_ms"] == pytest.approx(1e3 * row["gflop"] / peak)
        assert row["latency"]["x_floor"] == pytest.approx(
            row["latency"]["mean_ms"] / row["floor_ms"]
        )
    assert all(r["gflop"] is None for r in reference + broken_rows)
    assert all(r["precision"] == "int8" and r["max_abs"] > 1e-4 for r in int8_rows)
    assert all(r["status"].startswith("failed:") and "broken.onnx" in r["status"]
               for r in broken_rows)  # fmt: skip
    assert report["machine"]["cores"] >= 1 and "onnxruntime" in report["machine"]["versions"]
    (samples,) = report["samples"]  # one pre-processing: one set, said where it came from
    assert samples.startswith("12 ") and "scenes" in samples
    lines = (out / "bench.md").read_text().splitlines()
    assert f"Held-out samples: {samples}." in lines
    header = next(line for line in lines if line.startswith("| model |"))
    assert [c.strip() for c in header.strip("|").split("|")] == COLUMNS
    picture = read_image(out / "bench.png")
    assert picture.shape[0] > 300 and picture.shape[1] > 500


def test_bench_without_reference_scores_against_ground_truth(models, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", str(models[0]), "--out", str(out), "--batch", "2", "--count", "8",
            "--iters", "2"]  # fmt: skip
    assert main(args) == 0
    (row,) = json.loads((out / "bench.json").read_text())["rows"]
    assert row["status"] == "ok" and 0 <= row["iou"] <= 1 and row["d_iou"] is None


def test_two_files_of_one_size_each_get_their_own_normalisation(models, tmp_path):
    """Samples are made per pre-processing, not per size: a file of the same size that says
    another mean/std is fed inputs normalised its way."""
    import onnx

    from maskdepth.export.samples import held_out_samples
    from maskdepth.runtime.compare import score
    from maskdepth.runtime.model_info import read_onnx_info
    from maskdepth.runtime.predictor import open_runner

    fp32 = models[0]
    pre = read_onnx_info(fp32).preprocessing
    other = replace(pre, mean=(0.5,) * 6, std=tuple(2 * v for v in pre.std))
    graph = onnx.load(str(fp32))
    for prop in graph.metadata_props:
        if prop.key == "maskdepth.preprocessing":
            prop.value = json.dumps(other.to_dict())
    renormalised = tmp_path / "renormalised.onnx"
    onnx.save(graph, str(renormalised))
    assert read_onnx_info(renormalised).preprocessing == other

    out = tmp_path / "bench"
    args = ["bench", str(fp32), str(renormalised), "--out", str(out), "--batch", "2",
            "--count", "8", "--iters", "1", "--warmup", "0"]  # fmt: skip
    assert main(args) == 0
    rows = json.loads((out / "bench.json").read_text())["rows"]
    for row, expected in zip(rows, (pre, other), strict=True):
        assert row["status"] == "ok"
        runner, _ = open_runner(Path(row["model"]), "onnxruntime", "cpu", None)
        alone = score(runner, held_out_samples({}, expected, 8))  # this file benched alone
        runner.deactivate()
        assert (row["iou"], row["rmse"]) == pytest.approx((alone["iou"], alone["rmse"]))
    assert rows[0]["rmse"] != pytest.approx(rows[1]["rmse"])  # the inputs really differ


def test_bench_bad_input_is_one_line(tmp_path, capsys):
    assert main(["bench", str(tmp_path / "missing.onnx"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.onnx" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit):
        main(["bench", "m.onnx", "--out", str(tmp_path), "--batch", "0,x"])


def test_machine_describes_a_gpu_it_is_given():
    from maskdepth.benchmarks.measure import machine
    from maskdepth.runtime.runners.cuda import GpuInfo

    described = machine(GpuInfo(0, "NVIDIA H200", "9.0"))
    assert described["gpu"] == "NVIDIA H200 (compute capability 9.0)"
    assert machine(None)["gpu"] == "none" and described["cores"] >= 1


def test_export_graph_compares_the_two_upsampling_exports(tmp_path):
    from maskdepth.benchmarks.scripts import export_graph

    args = ["--out", str(tmp_path), "--size", "32", "--repeats", "1", "--int8-target"]  # none
    assert export_graph.main(args) == 0
    report = json.loads((tmp_path / "export_graph.json").read_text())
    rows = {row["file"]: row for row in report["rows"]}
    before, now = rows["fp32, sizes (before)"], rows["fp32, scales (now)"]
    assert before["by_type"]["Shape"] == before["by_type"]["Resize"] == 61
    assert "Shape" not in now["by_type"] and now["nodes"] == before["nodes"] - 183
    assert report["gflop"] == pytest.approx(0.6832, rel=1e-3) and now["x_floor"] > 0
    assert list(rows) == ["fp32, sizes (before)", "fp32, scales (now)"]  # no INT8 asked for
    assert "| fp32, scales (now) |" in (tmp_path / "export_graph.md").read_text()


def test_session_settings_table_covers_levels_batches_and_threads(tmp_path):
    from maskdepth.benchmarks.scripts import session_settings

    assert session_settings.main(["--out", str(tmp_path), "--size", "32", "--repeats", "1"]) == 0
    report = json.loads((tmp_path / "session_settings.json").read_text())
    settings = {(r["file"], r["setting"]) for r in report["levels"]}
    assert len(settings) == 3 * 5 and ("fp32", "saved optimised model") in settings
    cells = {(r["file"], r["threads"], r["batch"]) for r in report["batches"]}
    assert cells == {(f, t, b) for f in ("fp32", "int8 tensorrt", "int8 cpu")
                     for t in (1, 2) for b in (1, 8, 32)}  # fmt: skip
    assert all(r["images_per_s"] > 0 for r in report["batches"])
