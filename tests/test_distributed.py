"""Distributed training: the epoch order and its sharding, and a real 2-process DDP run on gloo
(torch.distributed.run, CPU) against one process with the same global batch."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from maskdepth.train.checkpoint import load_checkpoint
from maskdepth.train.distributed import Dist, EpochSampler, ShardSampler

ARGS = ["--data", "synth", "--synth-count", "18", "--size", "32", "--batch", "2"]
ARGS += ["--epochs", "1", "--threads", "1", "--workers", "0", "--samples", "2"]
ARGS += ["--model", "u2netp-lite", "--no-progress", "--ema-decay", "0.999"]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def _ranks(length: int, batch: int, world: int, epoch: int, accumulate: int = 1) -> list[list]:
    """Each rank's order, cut into its micro-batches."""
    out = []
    for rank in range(world):
        sampler = EpochSampler(length, batch, 7, Dist(rank, world, rank), accumulate)
        sampler.set_epoch(epoch)
        order = list(sampler)
        out.append([order[i : i + batch] for i in range(0, len(order), batch)])
    return out


def test_epoch_order_is_a_function_of_seed_and_epoch():
    (a,) = _ranks(40, 4, 1, epoch=3)
    assert a == _ranks(40, 4, 1, epoch=3)[0]
    assert a != _ranks(40, 4, 1, epoch=4)[0]
    assert sorted(sum(a, [])) == list(range(40))  # every scene once, 40 = 10 full batches


def test_ranks_together_see_what_one_process_sees_with_the_global_batch():
    (single,) = _ranks(43, 6, 1, epoch=2)  # 43 scenes: 7 steps of 6, the last 1 dropped
    ranks = _ranks(43, 3, 2, epoch=2)
    assert len(single) == len(ranks[0]) == len(ranks[1]) == 7
    for step, batch in enumerate(single):
        assert set(ranks[0][step]) | set(ranks[1][step]) == set(batch)
        assert not set(ranks[0][step]) & set(ranks[1][step])
    # --accumulate 2 in one process: micro-batch j is exactly rank j's batch
    (accumulated,) = _ranks(43, 3, 1, epoch=2, accumulate=2)
    assert accumulated[0::2] == ranks[0] and accumulated[1::2] == ranks[1]


def test_resume_skips_the_steps_done():
    sampler = EpochSampler(30, 2, 0, Dist(1, 2, 1), accumulate=2)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start_step=3)
    assert list(sampler) == full[3 * 2 * 2 :] and len(sampler) == len(full) - 12


def test_validation_shards_score_each_scene_once():
    shards = [list(ShardSampler(11, Dist(r, 3, r))) for r in range(3)]
    assert sorted(sum(shards, [])) == list(range(11))


def _launch(out: Path, dump: Path, *extra: str, processes: int = 1) -> subprocess.Popen:
    dump.mkdir()
    env = os.environ | {"MASKDEPTH_DUMP_STATE": str(dump), "OMP_NUM_THREADS": "1"}
    if processes == 1:
        launcher = [sys.executable, "-m", "maskdepth.train"]
    else:
        # --standalone: a rendezvous on localhost at a port the OS gives (no free-port guess
        # that another process may take before torchrun binds it)
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
        launcher += ["--nproc_per_node", str(processes), "-m", "maskdepth.train"]
    cmd = [*launcher, *ARGS, *extra, "--out", str(out)]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.slow
def test_ddp_on_gloo_matches_one_process_with_the_same_global_batch(tmp_path):
    # 2 processes x batch 2, against 1 process x batch 2 x --accumulate 2: the same 4 scenes per
    # step, and BatchNorm normalising the same 2-scene batches (per rank, per micro-batch).
    runs = [
        _launch(tmp_path / "ddp", tmp_path / "ddp-ranks", processes=2),
        _launch(tmp_path / "one", tmp_path / "one-rank", "--accumulate", "2"),
    ]
    for run in runs:
        output = run.communicate(timeout=300)[0]
        assert run.returncode == 0, output[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "ddp-ranks" / f"rank{r}.pt") for r in (0, 1))
    (single,) = [torch.load(tmp_path / "one-rank" / "rank0.pt")]
    for key in ("state_dict", "ema_state_dict"):
        for name, value in rank0[key].items():  # the ranks agree on everything, buffers too
            assert torch.equal(value, rank1[key][name]), f"ranks differ in {key}[{name}]"
    # Parameters: DDP averages (g0 + g1) / 2 across ranks, accumulation adds g0 / 2 + g1 / 2;
    # both are exact in floating point for two terms, so they agree to rounding (in practice
    # bit for bit). BatchNorm running statistics differ by design: DDP averages the ranks'
    # momentum updates, one process applies them one after the other.
    for key in ("state_dict", "ema_state_dict"):
        for name, value in single[key].items():
            if not name.endswith(BN_BUFFERS):
                torch.testing.assert_close(rank0[key][name], value, rtol=0, atol=1e-6)
    # Rank 0 alone wrote the run; its checkpoint and metrics cover every rank's work.
    ddp, one = (load_checkpoint(tmp_path / n / "last.pt") for n in ("ddp", "one"))
    assert ddp["step"] == one["step"] == 4 and ddp["progress"]["world"] == 2  # 16 // (2 x 2)
    with (tmp_path / "ddp" / "metrics.csv").open() as file:
        (row,) = list(csv.DictReader(file))
    with (tmp_path / "one" / "metrics.csv").open() as file:
        (row_one,) = list(csv.DictReader(file))
    assert float(row["val_count"]) == float(row_one["val_count"]) == 2  # 1 scene per rank
    assert float(row["train_loss"]) == pytest.approx(float(row_one["train_loss"]), rel=1e-6)
    assert sorted(p.name for p in (tmp_path / "ddp").iterdir()) == [
        "best.pt",
        "curves.png",
        "last.pt",
        "metrics.csv",
        "samples.png",
    ]


@pytest.mark.slow
def test_progressive_stages_under_torchrun_join_one_process_group(tmp_path):
    # Two stages in one torchrun command: each rank joins the gloo group once for both (a
    # group destroyed and re-created per stage is known to hang on NCCL), and both finish.
    run = _launch(tmp_path / "prog", tmp_path / "ranks", "--size", "16,32", processes=2)
    output = run.communicate(timeout=300)[0]
    assert run.returncode == 0, output[-3000:]
    for rank in (0, 1):
        assert torch.load(tmp_path / "ranks" / f"rank{rank}.pt")["process_groups_joined"] == 1
    stages = json.loads((tmp_path / "prog" / "stages.json").read_text())
    assert [s["size"] for s in stages] == [16, 32]
    for stage in ("stage1-16", "stage2-32"):
        for name in ("last.pt", "best.pt"):
            ckpt = load_checkpoint(tmp_path / "prog" / stage / name)
            assert ckpt["step"] == 4 and ckpt["progress"]["world"] == 2  # 16 // (2 x 2)
    final, last = (load_checkpoint(tmp_path / "prog" / n / "last.pt") for n in ("", "stage2-32"))
    assert final["train"]["init"] == str(tmp_path / "prog" / "stage1-16" / "best.pt")
    assert all(torch.equal(v, last["state_dict"][k]) for k, v in final["state_dict"].items())
