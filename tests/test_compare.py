"""The one comparison (`maskdepth.runtime.compare`) and the PyTorch model behind the runner
interface (`maskdepth.train.torch_runner.TorchRunner`)."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from maskdepth.runtime.compare import Recorded, compare, resolve_tolerance, score
from maskdepth.runtime.errors import MaskDepthError
from maskdepth.train.models import InferenceModel, create_model
from maskdepth.train.torch_runner import TorchRunner

SIZE = 32


class Samples:
    """``count`` random normalised inputs with ground truth, in batches like HeldOut."""

    def __init__(self, count: int, seed: int = 0, size: tuple[int, int] = (SIZE, SIZE)) -> None:
        rng = np.random.default_rng(seed)
        shape = (count, 3, *size)
        self.bg, self.scene = (rng.standard_normal(shape, np.float32) for _ in "ab")
        self.mask = (rng.random((count, 1, *size)) > 0.5).astype(np.float32)
        self.depth = rng.random((count, 1, *size), np.float32)

    def __len__(self) -> int:
        return len(self.bg)

    def batches(self, size: int):
        for start in range(0, len(self), size):
            part = slice(start, start + size)
            feed = {"bg": self.bg[part], "scene": self.scene[part]}
            yield SimpleNamespace(feed=feed, mask=self.mask[part], depth=self.depth[part])


class Offset:
    """A fake runner: the reference's outputs plus a fixed offset per output; counts calls."""

    def __init__(self, mask: float = 0.0, depth: float = 0.0) -> None:
        self.offset = {"mask": mask, "depth": depth}
        self.calls = 0

    def infer(self, feed):
        self.calls += 1
        base = 1 / (1 + np.exp(-feed["bg"][:, :1] * feed["scene"][:, :1]))
        return {k: np.clip(base + v, 0, 1).astype(np.float32) for k, v in self.offset.items()}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("u2netp-md").eval()


def test_torch_runner_is_the_exported_form_behind_infer(model):
    samples = Samples(3)
    feed = next(samples.batches(3)).feed
    with TorchRunner(model, device="cpu") as runner:
        out = runner.infer(feed)
        assert runner.last_inference_time > 0 and runner.device == "cpu"
        assert set(runner.input_metadata) == {"bg", "scene"}
        with pytest.raises(MaskDepthError, match="do not match"):
            runner.infer({"bg": feed["bg"]})
    with torch.inference_mode():
        mask, depth = InferenceModel(model)(*(torch.from_numpy(feed[k]) for k in ("bg", "scene")))
    assert out["mask"].shape == out["depth"].shape == (3, 1, SIZE, SIZE)
    assert out["mask"].dtype == np.float32
    np.testing.assert_array_equal(out["mask"], mask.numpy())
    np.testing.assert_array_equal(out["depth"], depth.numpy())
    with pytest.raises(MaskDepthError, match="activate"):
        runner.infer(feed)  # deactivated on leaving the block


def test_torch_runner_loads_lazily_and_refuses_an_unknown_device(model):
    loads = []
    runner = TorchRunner(lambda: loads.append(1) or model)
    assert not loads
    with runner:
        assert loads == [1]
    with pytest.raises(MaskDepthError, match="device"):
        TorchRunner(model, device="tpu")


def test_compare_torch_with_itself_is_exact_and_passes_fp32(model):
    samples = Samples(5)
    with TorchRunner(model) as a, TorchRunner(model) as b:
        result = compare(a, b, samples)
    assert result and result.count == 5 and max(result.max_abs.values()) == 0
    assert result.d_iou == 0 and result.d_rmse == 0


def test_per_output_tolerances_and_the_smallest_that_passes():
    samples = Samples(10)
    reference, candidate = Offset(), Offset(mask=0.01, depth=0.2)
    loose_depth = {"max_abs": 0.05, "depth.max_abs": 0.3}
    assert compare(reference, candidate, samples, loose_depth)  # depth has its own bound
    failed = compare(reference, candidate, samples, {"max_abs": 0.05})
    assert not failed
    (failure,) = failed.failures()
    assert failure.startswith("depth max abs diff") and "over by" in failure
    smallest = failed.smallest_tolerance()
    assert set(smallest) == {"mask.max_abs", "depth.max_abs"}
    assert smallest["mask.max_abs"] == pytest.approx(0.01, abs=1e-6)
    assert smallest["depth.max_abs"] == pytest.approx(0.2, abs=1e-6)
    assert compare(reference, candidate, samples, smallest)  # the smallest passes
    assert not compare(reference, candidate, samples, {k: v * 0.99 for k, v in smallest.items()})
    assert "passes with" in failed.table() and "smallest_tolerance" in failed.to_dict()


def test_iou_and_rmse_bounds_and_defaults():
    samples = Samples(8)
    result = compare(Offset(), Offset(depth=0.1), samples, precision="fp16")
    assert result.tolerance == {"iou": 0.002, "rmse": 0.002}
    assert result.d_iou == 0 and result.d_rmse != 0 and not result
    assert result.failures()[0].startswith("|dRMSE|")
    assert compare(Offset(), Offset(depth=0.1), samples, {"iou": 0.0, "rmse": 1.0})


def test_resolve_tolerance_overrides_and_refuses_unknown_keys():
    assert resolve_tolerance("int8", {"*": 1}) == {"iou": 1, "rmse": 1}
    assert resolve_tolerance("fp32", {"depth.max_abs": 0.1}) == {
        "max_abs": 1e-4,
        "depth.max_abs": 0.1,
    }
    with pytest.raises(MaskDepthError, match="--tolerance colour"):
        resolve_tolerance("fp32", {"colour": 1})


def test_recorded_reference_runs_once_by_content_not_position():
    samples = Samples(10)
    reference = Offset()
    recorded = Recorded(reference).record(samples, batch=4)
    assert reference.calls == 3
    for _ in range(2):  # two candidates: no more reference calls
        assert compare(recorded, Offset(), samples, batch=4)
    assert reference.calls == 3
    compare(recorded, Offset(), samples, batch=5)  # other batches: computed, still correct
    assert reference.calls == 5
    assert score(recorded, samples, batch=4) == score(Offset(), samples, batch=4)


def test_a_runner_that_takes_small_batches_is_fed_batches_it_takes(tmp_path):
    """An ONNX file with a fixed batch of 2 (as an engine built with --max-batch 2 refuses
    more): compare and score feed it calls of 2, the last one padded, and the result is the
    same as the free-batch file's on all 7 samples."""
    from test_predictor import TINY_SIZE, write_tiny_model

    from maskdepth.runtime.runners.base import batch_limits
    from maskdepth.runtime.runners.ort import OnnxRuntimeRunner

    samples = Samples(7, size=TINY_SIZE)
    free = write_tiny_model(tmp_path / "free.onnx")
    fixed = write_tiny_model(tmp_path / "fixed.onnx", batch=2)
    with OnnxRuntimeRunner(free) as reference, OnnxRuntimeRunner(fixed) as candidate:
        assert batch_limits(candidate) == (2, 2) and batch_limits(reference) == (None, None)
        with pytest.raises(Exception, match="dimensions"):  # what a batch of 8 met before
            candidate.infer(next(samples.batches(8)).feed)
        comparison = compare(Recorded(reference), candidate, samples)
        assert comparison and comparison.count == 7
        assert comparison.max_abs == {"mask": 0.0, "depth": 0.0}
        assert score(candidate, samples) == score(reference, samples)
