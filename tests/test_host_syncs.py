"""The training loop's host synchronisations and all-reduces: one check every CHECK_EVERY steps
(the loss and the clock), none per micro-batch, in a real one-process gloo group with the loop's
multi-rank branch on; a NaN loss still stops the run within CHECK_EVERY steps. Also the EMA that
counts its updates in a Python int against torch's AveragedModel."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from test_train import TINY as TRAIN_TINY
from test_train import NanAt
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from maskdepth.train import state as state_module
from maskdepth.train.config import TrainConfig
from maskdepth.train.data.split import split_indices
from maskdepth.train.data.synth import SynthSource
from maskdepth.train.distributed import Dist, EpochSampler
from maskdepth.train.ema import make_ema, warmup_decay
from maskdepth.train.models import create_model
from maskdepth.train.trainer import CHECK_EVERY, TrainingDiverged, train

# 27 train scenes: 13 steps of 2, more than CHECK_EVERY
TINY = TRAIN_TINY | {"synth_count": 30, "device": "cpu"}
HOST_READS = ("item", "tolist", "__bool__", "__float__", "__int__")


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_rank_group(tmp_path, monkeypatch):
    """A real gloo process group of one process (a file store: no port), with ``Dist.active``
    on so that the loop takes its multi-rank branch (DDP, all-reduces)."""
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    monkeypatch.setattr(Dist, "active", property(lambda self: True))
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


class Counter:
    """Counts all-reduces and host reads of tensor values (each waits for a GPU), and takes a
    snapshot after every optimizer step. Adam's step counts are left out: they stay on the CPU
    on a GPU too (torch's default, not capturable), so reading them waits for nothing."""

    def __init__(self, monkeypatch) -> None:
        self.reduces = self.reads = 0
        self.steps: list[tuple[int, int]] = []
        self.cpu_side: set[int] = set()  # ids of Adam's step counts
        all_reduce = dist.all_reduce

        def counted_reduce(*args, **kwargs):
            self.reduces += 1
            return all_reduce(*args, **kwargs)

        monkeypatch.setattr(dist, "all_reduce", counted_reduce)
        for name in HOST_READS:
            monkeypatch.setattr(torch.Tensor, name, self._counted(getattr(torch.Tensor, name)))
        step_optimizer = state_module.TrainState.step_optimizer

        def counted_step(state) -> None:
            step_optimizer(state)
            self.cpu_side = {id(s["step"]) for s in state.optimizer.state.values()}
            self.steps.append((self.reduces, self.reads))

        monkeypatch.setattr(state_module.TrainState, "step_optimizer", counted_step)

    def _counted(self, method):
        def counted(tensor, *args, **kwargs):
            self.reads += id(tensor) not in self.cpu_side
            return method(tensor, *args, **kwargs)

        return counted


def test_the_loop_syncs_and_all_reduces_once_every_check_steps(
    tmp_path, monkeypatch, one_rank_group
):
    counter = Counter(monkeypatch)
    result = train(TrainConfig(**TINY, accumulate=1, out=str(tmp_path / "run")))
    assert result["step"] == len(counter.steps) == 13 > CHECK_EVERY
    # Between the first step and the epoch's end (whose validation reads and reduces freely):
    # only the check after step CHECK_EVERY, one all-reduce and one read.
    first, last = counter.steps[0], counter.steps[-1]
    assert (last[0] - first[0], last[1] - first[1]) == (1, 1)
    per_step = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(counter.steps, counter.steps[1:])]
    assert per_step[CHECK_EVERY - 1] == (1, 1)  # counted in the step after the check


def test_a_nan_loss_stops_the_run_within_check_steps(tmp_path):
    source = SynthSource(count=30, size=16)
    train_idx, _ = split_indices(source, 0.1, 0, "scene")
    order = EpochSampler(len(train_idx), 2, 0, Dist()).order()
    bad = int(train_idx[order[2 * 2]])  # the first scene of step 3
    nan_source = NanAt(bad, count=30)
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 3 \(epoch 1, batch 3\)"):
        train(TrainConfig(**TINY, out=str(tmp_path / "nan")), source=nan_source)
    trained = [i for i in nan_source.read if i in set(train_idx.tolist())]
    assert 3 * 2 <= len(trained) <= CHECK_EVERY * 2  # stopped at the check, before step 11
    assert not (tmp_path / "nan" / "last.pt").exists()  # nothing diverged was saved


def test_a_loader_that_ends_early_is_checked_before_the_epochs_checkpoint(tmp_path, monkeypatch):
    """An epoch whose loader gives fewer batches than planned (so ``ends`` never comes): a NaN
    after the last periodic check still stops the run before last.pt is written."""
    from maskdepth.train.run_data import RunData

    planned = RunData.steps_per_epoch.fget
    monkeypatch.setattr(RunData, "steps_per_epoch", property(lambda self: planned(self) + 5))
    source = SynthSource(count=30, size=16)
    train_idx, _ = split_indices(source, 0.1, 0, "scene")
    order = EpochSampler(len(train_idx), 2, 0, Dist()).order()
    last = len(train_idx) // 2  # the epoch's last step, after the check at CHECK_EVERY
    assert last > CHECK_EVERY
    nan_source = NanAt(int(train_idx[order[2 * (last - 1)]]), count=30)
    with pytest.raises(TrainingDiverged, match=rf"loss is nan at step {last}\b"):
        train(TrainConfig(**TINY, out=str(tmp_path / "nan")), source=nan_source)
    assert not (tmp_path / "nan" / "last.pt").exists()


def test_the_ema_matches_torchs_averaged_model():
    torch.manual_seed(0)
    model = create_model("u2netp-lite").train()
    ours = make_ema(model, 0.999)
    theirs = AveragedModel(
        model,
        multi_avg_fn=lambda e, p, n: get_ema_multi_avg_fn(warmup_decay(0.999, int(n)))(e, p, n),
        use_buffers=True,
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(4):  # real steps: the weights and the BatchNorm statistics move
        model(torch.rand(2, 6, 32, 32))["mask"][0].mean().backward()
        optimizer.step()
        optimizer.zero_grad()
        ours.update(model)
        theirs.update_parameters(model)
    assert ours.updates == int(theirs.n_averaged) == 4
    mine, torchs = ours.module.state_dict(), theirs.module.state_dict()
    for name, value in mine.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, torchs[name], rtol=0, atol=1e-7)
        else:  # BatchNorm's batch count: copied (AveragedModel blends and truncates it)
            assert torch.equal(value, model.state_dict()[name]), name
