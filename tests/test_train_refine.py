"""Refined models in training and evaluation: a tiny run at base 32 / full 64 trains, resumes and
is scored with and without its refiner; --freeze, --init into the base, non-square sizes."""

from __future__ import annotations

import json

import pytest
import torch
from test_train import TINY

from maskdepth.cli import main
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.train.checkpoint import checkpoint_config, load_checkpoint
from maskdepth.train.config import TrainConfig, parse_size
from maskdepth.train.evaluate import evaluate
from maskdepth.train.trainer import train

REFINED = TINY | {"sizes": [32], "full_size": 64, "steps": 3, "ema_decay": 0.0}


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """An unrefined u2netp-lite run at 32 px: the --init of the refined runs."""
    out = tmp_path_factory.mktemp("base") / "run"
    train(TrainConfig(**TINY | {"sizes": [32], "steps": 2}, out=str(out)))
    return out


@pytest.fixture(scope="module")
def refined_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("refined") / "run"
    train(TrainConfig(**REFINED | {"save_every": 2}, out=str(out)))
    return out


def test_a_refined_run_records_its_refiner_and_scores_at_full_size(refined_run, capsys):
    ckpt = load_checkpoint(refined_run / "last.pt")
    config = checkpoint_config(ckpt)
    assert config.preprocessing.size == (64, 64)  # the full resolution
    assert config.refine is not None and config.refine.kind == "guided"
    assert config.refine.base_size == (32, 32)
    assert config.refine.min_size == (32, 32) and config.refine.max_size == (128, 128)
    assert ckpt["model"]["options"]["refine"] == "guided"
    assert ckpt["step"] == 3 and ckpt["loss"]["main_outputs"] == 2
    refined = evaluate(refined_run / "last.pt", workers=0, progress=False)
    bilinear = evaluate(refined_run / "last.pt", workers=0, progress=False, refine=False)
    assert refined["size"] == bilinear["size"] == [64, 64]
    assert (refined["refine"], bilinear["refine"]) == ("guided", "bilinear")
    assert refined["iou"] == pytest.approx(ckpt["metrics"]["iou"], abs=1e-6)
    assert 0 <= refined["boundary_f"] <= 1 and 0 <= bilinear["boundary_f"] <= 1
    # the refiner has learned (3 steps): its last layer, zero at the start, is not any more
    last = ckpt["state_dict"]["refiner.coefficients.6.weight"]
    assert float(last.abs().max()) > 0
    args = ["eval", str(refined_run / "last.pt"), "--workers", "0", "--no-refine"]
    assert main([*args, "--json", str(refined_run / "s.json")]) == 0
    assert "bilinear up" in capsys.readouterr().out
    assert json.loads((refined_run / "s.json").read_text())["rmse"] == bilinear["rmse"]


def test_a_refined_run_resumes_and_checks_its_options(refined_run, tmp_path):
    """Stopped by a budget after step 1, resumed without one: the weights of the run left
    alone (the fixture's), bit for bit."""
    first = tmp_path / "run"
    cut = train(TrainConfig(**REFINED, max_minutes=1e-6, out=str(first)))
    assert cut["stopped"] == "time budget" and cut["step"] == 1
    assert train(TrainConfig(**REFINED, out=str(first), resume=True))["step"] == 3
    resumed = load_checkpoint(first / "last.pt")["state_dict"]
    alone = load_checkpoint(refined_run / "last.pt")["state_dict"]
    assert resumed.keys() == alone.keys()
    for name, value in alone.items():
        assert torch.equal(resumed[name], value), name
    with pytest.raises(MaskDepthError, match="--full-size 64 \\(now 96\\)"):
        train(TrainConfig(**REFINED | {"full_size": 96}, out=str(first), resume=True))
    with pytest.raises(MaskDepthError, match="--refine guided \\(now conv\\)"):
        train(TrainConfig(**REFINED | {"refine": "conv"}, out=str(first), resume=True))


def test_freeze_base_keeps_the_inited_base_exactly(base_run, tmp_path):
    base = load_checkpoint(base_run / "last.pt")["ema_state_dict"]  # what --init takes
    states = []
    for steps in (1, 3):
        out = tmp_path / f"frozen{steps}"
        options = REFINED | {"freeze": "base", "steps": steps}
        train(TrainConfig(**options, init=str(base_run / "last.pt"), out=str(out)))
        states.append(load_checkpoint(out / "last.pt")["state_dict"])
    for state in states:
        for name, value in base.items():  # weights and BatchNorm statistics
            assert torch.equal(state[f"base.{name}"], value), name
    refiner = [k for k in states[0] if k.startswith("refiner.")]
    assert any(not torch.equal(states[0][k], states[1][k]) for k in refiner)  # it learned


def test_init_from_a_base_checkpoint_loads_it_into_the_base(base_run, tmp_path):
    from maskdepth.train.models import create_model
    from maskdepth.train.state import init_weights

    model = create_model(TINY["model"], refine="guided")
    init_weights(model, str(base_run / "last.pt"), TINY["model"])
    base = load_checkpoint(base_run / "last.pt")["ema_state_dict"]  # its EMA, as for any --init
    assert model.base.state_dict().keys() == base.keys()
    for name, value in model.base.state_dict().items():
        assert torch.equal(value, base[name]), name
    refined = tmp_path / "r"
    train(TrainConfig(**REFINED | {"steps": 1}, out=str(refined)))
    with pytest.raises(MaskDepthError, match="a refined checkpoint"):
        init_weights(create_model(TINY["model"]), str(refined / "last.pt"), TINY["model"])


def test_an_unrefined_run_records_no_refiner(base_run):
    ckpt = load_checkpoint(base_run / "last.pt")
    assert "refine" not in ckpt["config"] and "refine" not in ckpt["model"]["options"]
    assert "main_outputs" not in ckpt["loss"]
    assert checkpoint_config(ckpt).preprocessing.size == (32, 32)


def test_non_square_sizes_train_and_are_checked(tmp_path, capsys):
    out = tmp_path / "wide"
    train(TrainConfig(**TINY | {"sizes": [(32, 64)], "steps": 2}, out=str(out)))
    ckpt = load_checkpoint(out / "last.pt")
    assert checkpoint_config(ckpt).preprocessing.size == (32, 64)
    assert evaluate(out / "last.pt", workers=0, progress=False)["size"] == [32, 64]
    assert parse_size("128x224") == (128, 224) and parse_size("96x96") == 96
    code = main(["train", "--data", "synth", "--size", "32x40", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "multiple of" in err[0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"sizes": [32, 64], "full_size": 128}, "progressive sizes do not take a refiner"),
        ({"sizes": [64], "full_size": 32}, "expected at least --size 64"),
        ({"freeze": "base"}, "--freeze needs --full-size"),
        ({"refine": "conv"}, "--refine needs --full-size"),
        (
            {"sizes": [32], "full_size": 64, "freeze": "base", "bn_reestimate": 4},
            "would change the frozen part's statistics",
        ),
    ],
)
def test_refine_option_checks(options, message, tmp_path):
    with pytest.raises(MaskDepthError, match=message):
        TrainConfig(**TINY | options, out=str(tmp_path))


def test_data_synth_renders_non_square(tmp_path):
    from maskdepth.runtime.image import read_image

    out = tmp_path / "wide"
    assert main(["data", "synth", "--out", str(out), "--count", "2", "--size", "32x48",
                 "--per-background", "2", "--workers", "1"]) == 0  # fmt: skip
    images = sorted(out.rglob("*.png"))
    assert images and {read_image(p).shape[:2] for p in images} == {(32, 48)}
