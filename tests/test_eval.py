"""`maskdepth eval`: a checkpoint scored on its own val split, the whole set, or other data."""

import csv
import json

import pytest

from maskdepth.cli import main
from maskdepth.train.evaluate import evaluate

KEYS = {"iou", "dice", "rmse", "mae", "absrel", "delta1", "boundary_f", "count"}


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run


def test_eval_reproduces_the_runs_own_validation(run):
    result = evaluate(run / "last.pt", workers=0, progress=False)
    assert set(result) >= KEYS and result["count"] == 4  # 10% of 40 synthetic scenes
    with open(run / "metrics.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    assert result["iou"] == pytest.approx(float(last["val_iou"]), abs=1e-6)
    assert result["rmse"] == pytest.approx(float(last["val_rmse"]), abs=1e-6)
    assert result["boundary_f"] == pytest.approx(float(last["val_boundary_f"]), abs=1e-6)


def test_eval_cli_all_split_and_json(run, tmp_path, capsys):
    path = tmp_path / "scores.json"
    args = [str(run / "last.pt"), "--split", "all", "--json", str(path), "--workers", "0"]
    assert main(["eval", *args]) == 0
    printed = capsys.readouterr().out
    assert "IoU" in printed and "RMSE" in printed and "40 scenes" in printed
    assert f"boundary F {json.loads(path.read_text())['boundary_f']:.4f}" in printed
    scores = json.loads(path.read_text())
    assert set(scores) >= KEYS and scores["count"] == 40 and scores["split"] == "all"
    assert 0 <= scores["iou"] <= 1 and 0 <= scores["rmse"] <= 1 and 0 <= scores["boundary_f"] <= 1


def test_eval_on_other_data(run, tmp_path, capsys):
    from maskdepth.train.data.synth import synthesize

    synthesize(tmp_path / "other", 20, size=48, per_background=10, workers=1, progress=False)
    assert main(["eval", str(run / "last.pt"), "--data", str(tmp_path / "other"), "--json",
                 str(tmp_path / "s.json"), "--workers", "0"]) == 0  # fmt: skip
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["count"] == 2 and scores["size"] == [32, 32]  # resized to the training size


@pytest.mark.parametrize("content", [b"", b"epoch,step\n1,2\n", b"PK\x03\x04broken"])
def test_eval_of_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    assert main(["eval", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0]
