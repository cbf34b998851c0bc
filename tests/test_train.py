"""Training end to end on tiny synthetic data: the files a run leaves, exact resume (after a
time-budget stop and after SIGKILL), the NaN stop, --init, and one-line errors."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import read_image
from maskdepth.train.checkpoint import checkpoint_config, load_checkpoint
from maskdepth.train.config import TrainConfig
from maskdepth.train.data.split import split_indices
from maskdepth.train.data.synth import SynthSource
from maskdepth.train.distributed import Dist, EpochSampler
from maskdepth.train.models import create_model
from maskdepth.train.plan import PROBE_STEPS, OneCycle
from maskdepth.train.stages import split_budget, stage_budget
from maskdepth.train.trainer import TrainingDiverged, init_weights, train

TINY = {
    "data": "synth",
    "synth_count": 14,
    "sizes": [16],  # train() itself takes any size >= 16; maskdepth train wants an exportable one
    "batch": 2,
    "epochs": 1,
    "threads": 1,
    "workers": 0,
    "samples": 2,
    "progress": False,
    "model": "u2netp-lite",
    "ema_decay": 0.999,  # off by default; resume must restore the EMA exactly
}
CLI_TINY = ["--data", "synth", "--synth-count", "14", "--size", "32", "--batch", "2"]
CLI_TINY += ["--epochs", "1", "--threads", "1", "--workers", "0", "--samples", "2"]
CLI_TINY += ["--model", "u2netp-lite", "--no-progress", "--ema-decay", "0.999"]
VAL_METRICS = ("iou", "iou_summed", "dice", "rmse", "rmse_pixels", "mae", "absrel", "delta1")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, dict]:
    """The seed's network at 32 px for 2 epochs: 16 train / 4 val scenes, batch 2."""
    out = tmp_path_factory.mktemp("run") / "md32"
    threads = torch.get_num_threads()
    config = TINY | {"model": "u2netp-md", "sizes": [32], "epochs": 2, "synth_count": 20}
    result = train(TrainConfig(**config | {"samples": 3}, val_fraction=0.2, out=str(out)))
    torch.set_num_threads(threads)
    return out, result


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file))


def _same_weights(a: dict, b: dict) -> None:
    for key in ("state_dict", "ema_state_dict"):
        assert a[key].keys() == b[key].keys()
        for name, value in a[key].items():
            assert torch.equal(value, b[key][name]), f"{key}[{name}] differs"
    for index, state in a["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])
    assert a["step"] == b["step"] and a["plan"] == b["plan"]


# --------------------------------------------------------------------------------- end to end
def test_run_writes_checkpoints_metrics_and_pictures(run):
    out, result = run
    assert {p.name for p in out.iterdir()} == {
        "last.pt",
        "best.pt",
        "metrics.csv",
        "samples.png",
        "curves.png",
    }
    rows = _rows(out / "metrics.csv")
    assert [(r["epoch"], r["step"], r["epoch_fraction"]) for r in rows] == [
        ("1", "8", "1.0"),
        ("2", "16", "1.0"),
    ]
    columns = set(rows[0])
    assert {"lr", "train_loss", "train_mask", "train_depth", "train_mask_bce"} <= columns
    assert {"train_depth_bce", "train_iou", "train_rmse", "val_loss", "val_count"} <= columns
    assert {f"val_{name}" for name in VAL_METRICS} <= columns
    assert {"seconds", "images_per_s", "data_wait"} <= columns
    for row in rows:
        assert float(row["images_per_s"]) > 0 and 0 <= float(row["data_wait"]) < 1
        assert float(row["val_count"]) == 4 and 0 < float(row["lr"]) <= 0.01
    # OneCycle: starts at lr / 10, peaks at half way (end of epoch 1), then anneals.
    assert float(rows[0]["lr"]) == pytest.approx(0.01, rel=0.02) and float(rows[1]["lr"]) < 1e-6
    assert result["stopped"] == "done" and result["step"] == 16 and result["epochs"] == 2
    assert result["metrics"]["count"] == 4


def test_best_is_the_highest_iou_minus_rmse(run):
    out, result = run
    rows = _rows(out / "metrics.csv")
    scores = [float(r["val_iou"]) - float(r["val_rmse"]) for r in rows]
    best_epoch = int(np.argmax(scores)) + 1
    best = load_checkpoint(out / "best.pt")
    assert best["best"]["epoch"] == best_epoch == result["best"]["epoch"]
    assert best["best"]["score"] == pytest.approx(max(scores), abs=1e-6)
    assert best["step"] == 8 * best_epoch  # best.pt holds that epoch's weights
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 2 and last["epoch_step"] == 0
    assert last["metrics"]["iou"] == pytest.approx(float(rows[-1]["val_iou"]))


def test_pictures_are_readable_grids(run):
    out, _ = run
    samples = read_image(out / "samples.png")
    # 6 columns of 128-pixel cells with 4-pixel gutters; a 22-pixel label row, then 3 scenes.
    assert samples.shape == (22 + 4 + 3 * 128 + 2 * 4, 6 * 128 + 5 * 4, 3)
    assert samples[30:, :128].std() > 5  # a real picture, not a blank cell
    curves = read_image(out / "curves.png")
    assert curves.shape == (400, 1300, 3) and curves.std() > 5


# ------------------------------------------------------------------------------ exact resume
class _Clock:
    """``time.perf_counter`` of the training modules: a clock that moves ``tick`` seconds each
    time it is read, so a budgeted run sees the same speeds on any machine, however busy."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def perf_counter(self) -> float:
        self.now += self.tick
        return self.now


def test_a_budgeted_run_ends_annealed_within_its_budget(tmp_path, monkeypatch):
    import maskdepth.train.plan
    import maskdepth.train.state
    import maskdepth.train.trainer

    clock = _Clock(tick=0.08)
    for module in (maskdepth.train.plan, maskdepth.train.state, maskdepth.train.trainer):
        monkeypatch.setattr(module, "time", clock)
    budget_s = 12.0
    config = TrainConfig(
        **TINY | {"epochs": None, "synth_count": 12, "val_every": 10},
        max_minutes=budget_s / 60,
        out=str(tmp_path / "run"),
    )
    result = train(config)
    rows = _rows(tmp_path / "run" / "metrics.csv")
    plan = load_checkpoint(tmp_path / "run" / "last.pt")["plan"]
    # Planned from measured speed: far more steps than the probe, several epochs (no --epochs).
    assert result["stopped"] == "done" and result["step"] == plan["total_steps"] > 4 * PROBE_STEPS
    assert result["epochs"] >= 2 and plan["step_seconds"] > 0 and plan["val_seconds"] > 0
    # Annealed: the last step ran at OneCycle's floor, after a peak at --lr half way.
    assert float(rows[-1]["lr"]) == pytest.approx(OneCycle(config.lr).lr(1.0))
    assert max(float(r["lr"]) for r in rows) > 0.5 * config.lr
    # Within the budget plus the last validation, on the run's clock.
    assert float(rows[-1]["elapsed"]) <= budget_s + plan["val_seconds"]


def test_budget_stop_then_resume_equals_the_run_left_alone(tmp_path):
    """A budget too small for even the speed probe stops at the hard limit; resumed without a
    budget, the run follows the plan it started with (2 epochs) to the same weights."""
    alone = train(TrainConfig(**TINY | {"epochs": 2}, out=str(tmp_path / "alone")))
    config = TrainConfig(**TINY | {"epochs": 2}, max_minutes=1e-6, out=str(tmp_path / "cut"))
    stopped = train(config)
    assert stopped["stopped"] == "time budget" and stopped["step"] == 1
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    assert (cut["epoch"], cut["epoch_step"], cut["step"]) == (0, 1, 1)
    assert [r["epoch_fraction"] for r in _rows(tmp_path / "cut" / "metrics.csv")] == ["0.1667"]

    config.max_minutes, config.resume = None, True
    resumed = train(config)
    assert resumed["stopped"] == "done" and resumed["step"] == alone["step"] == 12
    _same_weights(
        load_checkpoint(tmp_path / "alone" / "last.pt"),
        load_checkpoint(tmp_path / "cut" / "last.pt"),
    )
    ignore = {"seconds", "elapsed", "images_per_s", "data_wait"}
    rows = [_rows(tmp_path / name / "metrics.csv") for name in ("alone", "cut")]
    # The cut run keeps the row of its stop (step 1), then logs what the run left alone did.
    assert rows[1][0]["step"] == "1"
    assert [{k: v for k, v in r.items() if k not in ignore} for r in rows[1][1:]] == [
        {k: v for k, v in r.items() if k not in ignore} for r in rows[0]
    ]


def _cli_process(out: Path, *options: str) -> list[str]:
    """``python -m maskdepth.train`` on 18 tiny scenes with a checkpoint every 3 steps."""
    args = [*CLI_TINY, "--synth-count", "18", "--save-every", "3", *options]
    return [sys.executable, "-m", "maskdepth.train", *args, "--out", str(out)]


def _kill_after(victim: subprocess.Popen, path: Path, seconds: float) -> None:
    """SIGKILL ``victim`` as soon as it has written ``path`` (written atomically: it exists
    whole or not at all); fails, with the victim's last words, when it ended first or
    ``seconds`` passed."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        if victim.poll() is not None:
            pytest.fail(f"ended ({victim.returncode}) before writing {path}: "
                        f"{victim.stderr.read()[-2000:] if victim.stderr else ''}")  # fmt: skip
        if time.monotonic() > deadline:
            victim.kill()
            pytest.fail(f"no {path} after {seconds} s")
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL


def test_sigkill_mid_epoch_then_resume_equals_the_run_left_alone(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    epochs = ("--epochs", "2")
    alone, victim = (
        subprocess.Popen(_cli_process(tmp_path / name, *epochs), env=env, stderr=subprocess.PIPE)
        for name in ("alone", "killed")
    )
    last = tmp_path / "killed" / "last.pt"
    _kill_after(victim, last, 120)  # right after the first --save-every checkpoint
    cut = load_checkpoint(last)
    assert cut["epoch"] == 0 and 0 < cut["epoch_step"] < 8  # killed in the middle of epoch 1

    resume = subprocess.run(
        _cli_process(tmp_path / "killed", *epochs, "--resume"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert alone.wait(120) == 0, alone.stderr.read()[-2000:]
    a, b = (load_checkpoint(tmp_path / name / "last.pt") for name in ("alone", "killed"))
    assert a["step"] == 16 and a["epoch"] == 2  # 16 train scenes / batch 2, 2 epochs
    _same_weights(a, b)


# ----------------------------------------------------------------------- progressive sizes
def test_progressive_sizes_resume_inside_a_stage_after_sigkill(tmp_path):
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    sizes = ("--size", "16,32")
    alone, victim = (
        subprocess.Popen(_cli_process(tmp_path / name, *sizes), env=env, stderr=subprocess.PIPE)
        for name in ("alone", "killed")
    )
    last = tmp_path / "killed" / "stage2-32" / "last.pt"
    _kill_after(victim, last, 180)  # right after stage 2's first --save-every checkpoint
    cut = load_checkpoint(last)
    assert checkpoint_config(cut).size == (32, 32) and 0 < cut["epoch_step"] < 8
    assert not (tmp_path / "killed" / "last.pt").exists()  # the final copy comes at the end

    resume = subprocess.run(
        _cli_process(tmp_path / "killed", *sizes, "--resume"),
        env=env,
        capture_output=True,
        text=True,
    )
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert alone.wait(180) == 0, alone.stderr.read()[-2000:]
    for name in ("alone", "killed"):
        out = tmp_path / name
        stages = json.loads((out / "stages.json").read_text())
        assert [s["size"] for s in stages] == [16, 32]
        assert checkpoint_config(load_checkpoint(out / "best.pt")).size == (32, 32)
    stage2 = load_checkpoint(tmp_path / "alone" / "stage2-32" / "last.pt")
    assert stage2["train"]["init"] == str(tmp_path / "alone" / "stage1-16" / "best.pt")
    _same_weights(*(load_checkpoint(tmp_path / name / "last.pt") for name in ("alone", "killed")))


def test_budget_split_over_stages():
    assert split_budget(8.0, 1) == [8.0]
    assert split_budget(8.0, 2, last_share=0.25) == [6.0, 2.0]
    assert split_budget(9.0, 3, last_share=1 / 3) == pytest.approx([3.0, 3.0, 3.0])
    assert sum(split_budget(8.0, 4)) == pytest.approx(8.0)
    shares = split_budget(8.0, 2, last_share=0.25)
    assert stage_budget(8.0, 0.0, 0, shares) == 6.0
    # Stage 1 ran 0.5 min over (its last validation): stage 2 gets what is left.
    assert stage_budget(8.0, 6.5, 1, shares) == pytest.approx(1.5)


# --------------------------------------------------------------------------------- NaN stop
class NanAt:
    """A synth source whose scene ``bad`` has a NaN depth map; counts the scenes read."""

    kind = "test"
    manifest = None

    def __init__(self, bad: int, count: int = 14) -> None:
        self.inner, self.bad, self.read = SynthSource(count=count, size=16), bad, []

    def __len__(self) -> int:
        return len(self.inner)

    def background_ids(self) -> np.ndarray:
        return self.inner.background_ids()

    def __getitem__(self, index: int):
        self.read.append(index)
        sample = self.inner[index]
        if index == self.bad:
            sample.depth = np.full_like(sample.depth, np.nan)
        return sample


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    source = SynthSource(count=14, size=16)
    train_idx, _ = split_indices(source, 0.1, 0, "scene")
    sampler = EpochSampler(len(train_idx), 2, 0, Dist())
    bad = int(train_idx[sampler.order()[2 * 2]])  # the first scene of step 3
    config = TrainConfig(**TINY, save_every=2, out=str(tmp_path / "nan"))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3 \(epoch 1, batch 3\)") as e:
        train(config, source=NanAt(bad))
    assert "\n" not in str(e.value) and "last good checkpoint" in str(e.value)
    kept = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert kept["step"] == 2
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values())


def test_cli_divergence_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(["train", *CLI_TINY, "--lr", "1e30", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("maskdepth train: error: training diverged: loss is")
    assert "at step" in err[0]


# ------------------------------------------------------------------------------------ --init
def test_init_loads_the_other_runs_ema_weights(run, tmp_path):
    out, _ = run
    model = create_model("u2netp-md")
    init_weights(model, str(out / "best.pt"), "u2netp-md")
    ema = load_checkpoint(out / "best.pt")["ema_state_dict"]
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    # progressive resizing: the 32-pixel run's weights go on at 16 pixels
    args = [*CLI_TINY, "--model", "u2netp-md", "--synth-count", "8", "--init", str(out / "best.pt")]
    assert main(["train", *args, "--out", str(tmp_path / "at16")]) == 0
    assert load_checkpoint(tmp_path / "at16" / "last.pt")["train"]["init"] == str(out / "best.pt")


# ------------------------------------------------------------------------------ bad requests
def _cli_error(capsys, *args: str) -> str:
    assert main(["train", *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("maskdepth train: error: ")
    return lines[0]


def test_bad_data_path_and_unknown_model(tmp_path, capsys):
    args = [a if a != "synth" else str(tmp_path / "nowhere") for a in CLI_TINY]
    assert "nowhere: no such dataset folder" in _cli_error(capsys, *args, "--out", str(tmp_path))
    line = _cli_error(capsys, *CLI_TINY, "--model", "nonet", "--out", str(tmp_path / "o"))
    assert "unknown model 'nonet'" in line and "u2netp-md" in line


def test_resume_needs_a_matching_run(run, tmp_path, capsys):
    out, _ = run
    line = _cli_error(capsys, *CLI_TINY, "--out", str(tmp_path / "empty"), "--resume")
    assert "--resume: no" in line and "last.pt" in line
    staged = [*CLI_TINY, "--size", "16,32", "--out", str(tmp_path / "fresh"), "--resume"]
    line = _cli_error(capsys, *staged)
    assert "--resume: no" in line and "stage1-16/last.pt" in line
    line = _cli_error(capsys, *CLI_TINY, "--out", str(out))
    assert "already holds a run" in line
    args = [*CLI_TINY, "--model", "u2netp-md", "--size", "32", "--synth-count", "20"]
    line = _cli_error(capsys, *args, "--val-fraction", "0.2", "--out", str(out), "--resume")
    assert "--epochs 2 (now 1)" in line and "--data" not in line
    line = _cli_error(capsys, *args, "--epochs", "2", "--out", str(out), "--resume")
    assert "--val-fraction 0.2 (now 0.1)" in line
    same = ["--epochs", "2", "--val-fraction", "0.2", "--out", str(out), "--resume"]
    line = _cli_error(capsys, *args, "--size", "64", *same)
    assert "--size 32 (now 64)" in line


def test_bad_init_files(run, tmp_path, capsys):
    out, _ = run
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"not a checkpoint at all")
    line = _cli_error(capsys, *CLI_TINY, "--init", str(noise), "--out", str(tmp_path / "a"))
    assert "noise.pt: not a PyTorch checkpoint file" in line
    line = _cli_error(capsys, *CLI_TINY, "--init", str(out / "best.pt"), "--out", str(tmp_path))
    assert "a u2netp-md checkpoint, but this run trains u2netp-lite" in line


def test_new_options_parse_and_check(capsys):
    import argparse

    from maskdepth.train.config import add_train_arguments, config_from_args

    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    base = ["--data", "synth", "--out", "o"]
    config = config_from_args(parser.parse_args([*base, "--sizes", "64,96", "--time", "8"]))
    assert (config.sizes, config.size, config.max_minutes) == ((64, 96), 96, 8.0)
    assert config_from_args(parser.parse_args([*base, "--size", "64,96"])).sizes == (64, 96)
    assert config.epochs is None and config.epoch_limit() is None  # the budget decides
    assert TrainConfig(epochs=None).epoch_limit() == 10
    config = config_from_args(parser.parse_args([*base, "--prior", "difference"]))
    assert (config.augment, config.prior) == ("none", "difference")
    assert (config.sizes, config.size) == ((96,), 96)
    assert "size" not in config.to_dict()  # one fact: the sizes, the run's size derived
    with pytest.raises(SystemExit):  # the flag from before the presets is gone
        parser.parse_args([*base, "--no-augment"])
    assert "unrecognized arguments: --no-augment" in capsys.readouterr().err
    with pytest.raises(MaskDepthError, match="--augment False: expected one of none, geometry"):
        TrainConfig.from_dict({"augment": False})  # a boolean, as written before the presets
    with pytest.raises(MaskDepthError, match="--size 96: expected a list of sides"):
        TrainConfig(sizes=96)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        parser.parse_args([*base, "--size", "64,x"])
    assert "expected pixels, e.g. 96 or 64,96" in capsys.readouterr().err
    with pytest.raises(MaskDepthError, match="--size 8: expected at least 16"):
        TrainConfig(sizes=[8, 96])
    with pytest.raises(MaskDepthError, match="--warmup 1.0"):
        TrainConfig(warmup=1.0)
    with pytest.raises(MaskDepthError, match="--augment 'heavy': expected one of"):
        TrainConfig(augment="heavy")


def test_option_checks(tmp_path):
    with pytest.raises(MaskDepthError, match="--init and --resume together"):
        TrainConfig(init="x.pt", resume=True)
    with pytest.raises(MaskDepthError, match="--batch 0"):
        TrainConfig(batch=0)
    config = TrainConfig(**TINY | {"batch": 14}, out=str(tmp_path))
    with pytest.raises(MaskDepthError, match="do not fill one step"):
        train(config)
    if not torch.cuda.is_available():
        with pytest.raises(MaskDepthError, match="--device cuda: .* no CUDA GPU"):
            train(TrainConfig(**TINY, device="cuda", out=str(tmp_path)))
