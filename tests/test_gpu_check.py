"""The GPU check script: a CPU dry run at toy sizes (its verdict does not depend on how fast the
machine is), bad options, and (on a CUDA machine) a short real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from maskdepth.benchmarks.scripts.gpu_check import (
    AMP,
    COMPILED,
    FP32,
    OUT_OF_TIME,
    SECTIONS,
    TRAIN_SHARE,
    main,
)

STATUSES = {"ok", "skipped", OUT_OF_TIME, "failed"}


def _rows(report: dict, key: str) -> list[dict]:
    return report["sections"][key]["rows"]


def _failed(report: dict) -> list[dict]:
    return [r for s in report["sections"].values() for r in s["rows"] if r["status"] == "failed"]


def _by_name(rows: list[dict], start: str) -> list[dict]:
    return [row for row in rows if row["name"].startswith(start)]


PYTEST_FILE = "test_doctor.py"  # one file with a gpu-marked test: section 6 stays fast


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory) -> tuple[int, Path, dict]:
    """One dry run on the CPU (toy sizes, ``pytest -m gpu`` on one test file), shared by the
    tests below. Every row's work has a fixed toy size; --minutes sets the training run's
    --max-minutes (a ceiling its capped steps end well before) and pytest's timeout."""
    out = tmp_path_factory.mktemp("gpu_check") / "check"
    args = ["--out", str(out), "--device", "cpu", "--minutes", "30"]
    code = main([*args, "--pytest-files", PYTEST_FILE])
    return code, out, json.loads((out / "gpu_check.json").read_text())


@pytest.mark.slow
def test_cpu_run_writes_every_section(cpu_run):
    code, out, report = cpu_run
    assert code == 0, _failed(report)
    assert report["finished"]
    assert list(report["sections"]) == list(SECTIONS)
    markdown = (out / "gpu_check.md").read_text()
    for key, (title, _) in SECTIONS.items():
        section = report["sections"][key]
        assert section["status"] == "done" and section["rows"], key
        assert title in markdown
        for row in section["rows"]:
            assert row["status"] in STATUSES
            assert row["status"] == "ok" or row["why"], row  # no row is silent about why
    machine = {row["name"]: row["value"] for row in _rows(report, "machine")}
    assert machine["cores"] >= 1 and machine["doctor: torch"]  # doctor's rows, as it says them
    assert machine["doctor: torch cuda"].startswith("no: ")  # a CPU machine, or --device cpu


@pytest.mark.slow
def test_cpu_run_measures_training(cpu_run):
    _, _, report = cpu_run
    throughput = _rows(report, "train_throughput")
    for variant in (FP32, AMP):
        (row,) = _by_name(throughput, f"{variant},")
        assert row["status"] == "ok" and row["images_per_s"] > 0 and row["calls"] >= 1
    for row in _by_name(throughput, COMPILED):  # off by default on the CPU, and says so
        assert row["status"] == "skipped" and "compile" in row["why"]
    synth, run = _rows(report, "train_run")
    assert synth["status"] == "ok" and synth["scenes"] > 0
    assert run["status"] == "ok" and run["steps"] >= 1 and run["stopped"] == "done"
    assert run["max_minutes"] == 30 * TRAIN_SHARE  # train's own budget, from --minutes
    assert 0.0 <= run["val_iou"] <= 1.0 and 0.0 <= run["val_rmse"] <= 1.0
    assert Path(run["best_path"]).is_file()


@pytest.mark.slow
def test_cpu_run_cuda_only_rows_say_why(cpu_run):
    _, _, report = cpu_run
    for row in _by_name(_rows(report, "train_throughput"), FP32):
        assert row["peak_gib"] == "needs CUDA"
    inference = _rows(report, "inference")
    assert all(row["status"] == "ok" for row in _by_name(inference, "fp32,"))
    cuda_only = [r for r in inference if "CUDA graph" in r["name"] or r["name"].startswith("fp16")]
    assert len(cuda_only) == 6
    exported = _rows(report, "exported")
    cuda_only += [r for r in exported if "CUDA" in r["name"] or "Tensorrt" in r["name"]]
    cuda_only += [r for r in exported if "TensorRT" in r["name"]]
    for row in cuda_only:
        assert row["status"] == "skipped" and "needs CUDA" in row["why"], row


@pytest.mark.slow
def test_cpu_run_exports_and_checks_parity(cpu_run):
    _, _, report = cpu_run
    exported = _rows(report, "exported")
    (onnx,) = _by_name(exported, "export ONNX fp32")
    assert onnx["status"] == "ok" and onnx["parity"] == "ok" and Path(onnx["file"]).is_file()
    reference = _by_name(exported, "PyTorch fp32 reference on cpu,")  # bench's own rows
    cpu_rows = _by_name(exported, "onnxruntime CPUExecutionProvider on cpu,")
    assert [row["batch"] for row in reference + cpu_rows] == [1, 2, 1, 2]
    assert all(row["status"] == "ok" and row["parity"] == "reference" for row in reference)
    for row in cpu_rows:
        assert row["status"] == "ok" and row["provider"] == "CPUExecutionProvider"
        assert 0 < row["p50_ms"] <= row["p99_ms"] and row["images_per_s"] > 0
        assert row["parity"] == "ok" and row["max_abs"] <= 1e-4
        assert row["iou"] == pytest.approx(reference[0]["iou"], abs=1e-3)


@pytest.mark.slow
def test_cpu_run_reaches_pytest_on_the_repository_tests(cpu_run):
    """Section 6 runs on the CPU too, on the repository's own tests folder: the gpu-marked
    tests of the file report themselves skipped (no CUDA here), the others deselected."""
    _, out, report = cpu_run
    (row,) = _rows(report, "pytest")
    tests = Path(__file__).resolve().parent
    assert row["status"] == "ok", row
    assert row["tests"] == str(tests) and row["files"] == [PYTEST_FILE]
    assert row["returncode"] == 0 and row["skipped"] >= 1 and "passed" not in row
    assert row["deselected"] >= 1 and "skipped" in row["summary"]
    log = (out / "pytest_gpu.log").read_text()
    assert PYTEST_FILE in log or "skipped" in log


@pytest.mark.parametrize("bad", [["--minutes", "0"], ["--device", "tpu"], []])
def test_bad_options_exit_2(tmp_path, bad, capsys):
    args = [] if not bad else ["--out", str(tmp_path / "check"), *bad]
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2 and "error:" in capsys.readouterr().err
    assert not (tmp_path / "check").exists()  # refused before any work


def test_cuda_without_a_gpu_exits_2(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is here")
    assert main(["--out", str(tmp_path / "check"), "--device", "cuda"]) == 2
    assert "gpu_check: error:" in capsys.readouterr().err and not (tmp_path / "check").exists()


@pytest.mark.gpu
def test_gpu_check_on_cuda(tmp_path):
    """A short real run: the CUDA rows run (CUDA graphs, peak memory), none fails."""
    args = ["--out", str(tmp_path), "--device", "cuda", "--minutes", "3", "--no-compile"]
    code = main([*args, "--no-pytest"])  # pytest -m gpu would run this test again
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert code == 0, _failed(report)
    throughput = [r for r in _rows(report, "train_throughput") if r["status"] == "ok"]
    assert throughput and all(r["images_per_s"] > 0 and r["peak_gib"] > 0 for r in throughput)
    graphs = [r for r in _rows(report, "inference") if "CUDA graph" in r["name"]]
    assert graphs and all(r["status"] == "ok" for r in graphs)
