"""Checkpoints: every key of the contract, weights_only loading, and one clear line for every
way a file can be wrong."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.preprocess import SEED_MEAN
from maskdepth.train.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    checkpoint_config,
    load_checkpoint,
    model_from_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from maskdepth.train.config import TrainConfig
from maskdepth.train.trainer import train

KEYS = {
    "format",
    "format_version",
    "maskdepth_version",
    "model",
    "config",
    "state_dict",
    "ema_state_dict",
    "epoch",
    "step",
    "epoch_step",
    "optimizer",
    "plan",
    "scaler",
    "rng",
    "loss",
    "data",
    "train",
    "metrics",
    "best",
}
PLAIN = (str, int, float, bool, type(None), torch.Tensor)


@pytest.fixture(scope="module")
def ckpt_path(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ckpt") / "run"
    threads = torch.get_num_threads()
    config = TrainConfig(
        data="synth",
        synth_count=10,
        sizes=[32],
        batch=2,
        epochs=1,
        threads=1,
        workers=0,
        samples=1,
        progress=False,
        model="u2netp-lite",
        loss_mask="bce+dice",
        ema_decay=0.999,  # off by default; the checkpoint's EMA weights are tested here
        out=str(out),
    )
    train(config)
    torch.set_num_threads(threads)
    return out / "last.pt"


def _only_plain(value, where="ckpt") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{where}: key {key!r}"
            _only_plain(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _only_plain(item, f"{where}[{index}]")
    else:
        assert isinstance(value, PLAIN), f"{where} is a {type(value).__name__}"


def test_round_trip_has_every_key_and_plain_types(ckpt_path):
    raw = torch.load(ckpt_path, weights_only=True)  # the contract: no pickled objects
    ckpt = load_checkpoint(ckpt_path)
    assert set(ckpt) >= KEYS and set(raw) == set(ckpt)
    _only_plain(raw)
    assert ckpt["format"] == FORMAT and ckpt["format_version"] == FORMAT_VERSION
    assert ckpt["model"] == {"name": "u2netp-lite", "options": {"decoders": 1}}
    assert "preprocessing" not in ckpt  # one place: the model config's
    assert ckpt["epoch"] == 1 and ckpt["epoch_step"] == 0 and ckpt["step"] == 4  # 9 train / 2
    assert set(ckpt["rng"]) == {"torch", "numpy", "python", "cuda"}
    assert ckpt["loss"]["mask"] == {"bce": 1.0, "dice": 1.0}
    data = ckpt["data"]
    assert data["spec"] == "synth" and len(data["manifest_hash"]) == 64
    assert data["synth"] == {"count": 10, "seed": 0, "per_background": 20}
    assert data["split"] == {"val_fraction": 0.1, "seed": 0, "by": "scene"}
    assert ckpt["train"]["batch"] == 2 and ckpt["train"]["model"] == "u2netp-lite"
    assert set(ckpt["metrics"]) >= {"iou", "dice", "rmse", "mae", "absrel", "delta1", "count"}
    assert ckpt["best"]["epoch"] == 1 and ckpt["best"]["iou"] == ckpt["metrics"]["iou"]
    assert ckpt["plan"]["total_steps"] == 4 and ckpt["plan"]["step_seconds"] is None  # no budget
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    parameters = [k for k in ckpt["state_dict"] if not k.endswith(buffers)]
    assert len(ckpt["optimizer"]["state"]) == len(parameters)


def test_model_from_checkpoint_uses_ema_unless_told(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    model, pre = model_from_checkpoint(ckpt)
    assert not model.training and pre.size == (32, 32)
    ema, raw = ckpt["ema_state_dict"], ckpt["state_dict"]
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    assert any(not torch.equal(ema[k], raw[k]) for k in raw if raw[k].is_floating_point())
    plain, _ = model_from_checkpoint(ckpt, use_ema=False)
    assert all(torch.equal(v, raw[k]) for k, v in plain.state_dict().items())
    with torch.no_grad():
        outputs = model(torch.zeros(1, 6, 16, 16))
    assert [t.shape for t in outputs["mask"]] == [(1, 1, 16, 16)] * 7


def test_save_is_atomic_and_overwrites(tmp_path):
    path = tmp_path / "sub" / "c.pt"
    save_checkpoint(path, {"model": {"name": "u2netp-lite", "options": {}}, "x": torch.ones(2)})
    save_checkpoint(path, {"model": {"name": "u2netp-lite", "options": {}}, "x": torch.zeros(2)})
    assert [p.name for p in path.parent.iterdir()] == ["c.pt"]  # no temporary file left
    assert torch.equal(torch.load(path, weights_only=True)["x"], torch.zeros(2))


def test_rng_state_round_trip():
    state = rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    assert first[2] == again[2]


def _one_line_error(path, match: str) -> str:
    with pytest.raises(MaskDepthError, match=match) as info:
        ckpt = load_checkpoint(path)
        model_from_checkpoint(ckpt)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    assert str(tmp_path) in _one_line_error(tmp_path / "none.pt", "no such checkpoint file")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    _one_line_error(path, "not a PyTorch checkpoint file")


def test_truncated_file(tmp_path, ckpt_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(ckpt_path.read_bytes()[:200_000])
    _one_line_error(path, "truncated or damaged checkpoint")


def test_torch_file_that_is_not_a_checkpoint(tmp_path, ckpt_path):
    path = tmp_path / "bare.pt"
    torch.save(load_checkpoint(ckpt_path)["state_dict"], path)
    _one_line_error(path, "not a maskdepth checkpoint .a bare state_dict")
    torch.save([torch.ones(1)], path)
    _one_line_error(path, "not a maskdepth checkpoint .list")


def test_pickled_python_objects_are_refused(tmp_path):
    path = tmp_path / "objects.pt"
    torch.save({"format": FORMAT, "evil": Path("x")}, path)
    _one_line_error(path, "holds Python objects")


def test_newer_format_version(tmp_path, ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    path = tmp_path / "future.pt"
    torch.save(ckpt | {"format_version": FORMAT_VERSION + 1}, path)
    _one_line_error(path, f"format version {FORMAT_VERSION + 1} is newer")


def test_weights_of_another_model(tmp_path, ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    path = tmp_path / "other.pt"
    torch.save(ckpt | {"model": {"name": "u2netp-md", "options": {}}}, path)
    message = _one_line_error(path, "do not fit model u2netp-md")
    assert "missing" in message and "unexpected" in message
    torch.save(ckpt | {"model": {"name": "no-such-net", "options": {}}}, path)
    _one_line_error(path, "unknown model 'no-such-net'")


def test_the_model_config_is_in_the_checkpoint(ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    config = checkpoint_config(ckpt)
    assert (config.model, config.size, config.stride) == ("u2netp-lite", (32, 32), 32)
    assert config.to_dict() == ckpt["config"]
    assert config.preprocessing.mean == SEED_MEAN  # on-the-fly synth has no statistics
    assert config.depth_scale_m == 20.0  # the synth manifest's scale, kept for export
    assert config.manifest_hash == ckpt["data"]["manifest_hash"]


def test_a_checkpoint_from_before_configs_is_refused_in_one_line(tmp_path, ckpt_path):
    ckpt = load_checkpoint(ckpt_path)
    path = tmp_path / "old.pt"
    save_checkpoint(path, {k: v for k, v in ckpt.items() if k != "config"})
    _one_line_error(path, "written by an older maskdepth .no model config.; retrain")
    with pytest.raises(MaskDepthError, match="older maskdepth .no model config.; retrain"):
        checkpoint_config({k: v for k, v in ckpt.items() if k != "config"})


def test_training_refuses_a_size_the_model_cannot_export(tmp_path):
    from maskdepth.train.stages import train_stages

    message = "--size 48: each side must be a multiple of 32 for u2netp-lite to export"
    for sizes in ([48], [32, 48]):  # the last stage's size is the one exported
        config = TrainConfig(sizes=sizes, model="u2netp-lite", out=str(tmp_path / "run"))
        with pytest.raises(MaskDepthError, match=message):
            train_stages(config)
        assert not (tmp_path / "run").exists()  # refused before any work
    assert TrainConfig(sizes=[48, 64]).size == 64  # an earlier stage is never exported
