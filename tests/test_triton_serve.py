"""Serving on a real Triton Inference Server: the ``tritonserver`` of nvidia-pytriton 0.7.0
(Triton 2.51) in its own numpy<2 environment (maskdepth.benchmarks.triton_env, built once and
cached in .triton-env/; without a package index these tests skip and say why), serving the
python-network repository that ``maskdepth export --format triton`` writes for the tiny u2netp-md
model. One server for the module, on 127.0.0.1 and ports the OS gives, every wait bounded.

Also the runtime under numpy 1.26 (that environment) against the same model in this one."""

from __future__ import annotations

import json
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from maskdepth.benchmarks.triton_env import TritonEnvError, ensure_env
from maskdepth.benchmarks.triton_server import TritonServer
from maskdepth.cli import main
from maskdepth.runtime import MaskDepthError, Predictor

grpcclient = pytest.importorskip("tritonclient.grpc", reason="needs maskdepth[triton]")
httpclient = pytest.importorskip("tritonclient.http", reason="needs maskdepth[triton]")
pytestmark = pytest.mark.slow

MAX_BATCH = 4  # the net's max_batch_size, and the concurrent clients of the batching test
NET = "maskdepth_net"
TOLERANCE = 1e-5


@pytest.fixture(scope="session")
def triton_env():
    try:
        return ensure_env()
    except TritonEnvError as exc:
        pytest.skip(f"no Triton serving environment here: {exc}")


@pytest.fixture(scope="module")
def repository(tiny_checkpoint, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("triton") / "repo"
    args = ["export", str(tiny_checkpoint), "--format", "triton", "--triton-network", "python"]
    options = ["--parity-count", "16", "--max-batch", str(MAX_BATCH)]
    assert main([*args, "--out", str(out), *options]) == 0
    return out


@pytest.fixture(scope="module")
def server(triton_env, repository):
    explicit = ("--model-control-mode=explicit", "--load-model=*")  # tests reload models
    with TritonServer(triton_env, repository, extra_args=explicit) as running:
        yield running


@pytest.fixture(scope="module")
def local(repository):
    with Predictor(repository / NET / "1" / "model.onnx", device="cpu") as predictor:
        yield predictor


def rgb(seed: int, height: int, width: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_same(served, expected) -> None:
    assert served.mask.shape == expected.mask.shape == expected.scene.shape[:2]
    assert served.depth_scale_m == expected.depth_scale_m
    for name in ("mask", "depth"):
        gap = np.abs(getattr(served, name) - getattr(expected, name)).max()
        assert gap <= TOLERANCE, f"{name}: max abs {gap}"


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_answers_equal_the_in_process_predictor(server, local, scheme):
    address = server.http if scheme == "http" else server.grpc
    with Predictor(f"{scheme}://{address}/maskdepth") as remote:
        assert remote.info == local.info
        for seed, (height, width) in enumerate([(45, 61), (120, 160)]):
            scene, bg = rgb(seed, height, width), rgb(seed + 10, height, width)
            assert_same(remote.predict(scene, bg=bg), local.predict(scene, bg=bg))
        scenes = [rgb(20 + i, 40 + 8 * i, 50) for i in range(3)]  # three sizes, one bg
        bg = rgb(30, 64, 96)  # another size: resized to each scene's, as in-process
        remote.set_background(bg)
        local.set_background(bg)
        for served, expected in zip(remote.predict_batch(scenes), local.predict_batch(scenes)):
            assert_same(served, expected)


def _batches(client) -> dict[int, int]:
    """The net's executions so far, by batch size (the server's own statistics)."""
    stats = client.get_inference_statistics(NET, as_json=True)["model_stats"][0]
    return {int(s["batch_size"]): int(s["compute_infer"]["count"]) for s in stats["batch_stats"]}


def test_concurrent_clients_are_batched(server, local):
    """MAX_BATCH clients released together by a barrier; the net's dynamic batcher waits up to
    60 s for a full batch (reloaded with that delay for this test), so they share one
    execution whatever the machine's load, and the statistics say so."""
    admin = grpcclient.InferenceServerClient(server.grpc)
    config = admin.get_model_config(NET, as_json=True)["config"]
    waiting = config | {"dynamic_batching": {"max_queue_delay_microseconds": str(60_000_000)}}
    admin.load_model(NET, config=json.dumps(waiting))
    try:
        before = _batches(admin)
        barrier = threading.Barrier(MAX_BATCH)
        pairs = [(rgb(40 + i, 48, 64), rgb(50 + i, 48, 64)) for i in range(MAX_BATCH)]

        def client(pair):
            with Predictor(f"grpc://{server.grpc}/maskdepth") as remote:
                barrier.wait(timeout=60)
                return remote.predict(pair[0], bg=pair[1])

        with ThreadPoolExecutor(MAX_BATCH) as pool:
            served = list(pool.map(client, pairs))
        after = _batches(admin)
    finally:
        admin.load_model(NET, config=json.dumps(config))  # its own config again (a load
        # without one keeps the override)
    added = {size: after.get(size, 0) - before.get(size, 0) for size in after}
    assert sum(size * count for size, count in added.items()) == MAX_BATCH, added
    assert added.get(MAX_BATCH) == 1, f"executions by batch size: {added}"
    for answer, (scene, bg) in zip(served, pairs):
        assert_same(answer, local.predict(scene, bg=bg))


BAD = {
    "a float input": ({"scene": rgb(1, 30, 40).astype(np.float32)}, "scene"),
    "a wrong rank": ({"scene": rgb(1, 30, 40)[..., 0]}, "scene"),
    "an empty image": (
        {"scene": np.zeros((0, 0, 3), np.uint8), "bg": np.zeros((0, 0, 3), np.uint8)},
        "scene",
    ),  # fmt: skip
    "sizes that differ": ({"bg": rgb(2, 20, 40)}, "bg"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_request_names_the_input_and_the_server_keeps_serving(server, local, case):
    changed, named = BAD[case]
    tensors = {"scene": rgb(1, 30, 40), "bg": rgb(2, 30, 40)} | changed
    client = httpclient.InferenceServerClient(server.http, network_timeout=60)
    inputs = []
    for name, array in tensors.items():
        datatype = "FP32" if array.dtype == np.float32 else "UINT8"
        inputs.append(httpclient.InferInput(name, list(array.shape), datatype))
        inputs[-1].set_data_from_numpy(array)
    with pytest.raises(Exception) as caught:
        client.infer("maskdepth", inputs)
    assert f"'{named}'" in str(caught.value) or f"{named}:" in str(caught.value), caught.value
    scene, bg = rgb(3, 30, 40), rgb(4, 30, 40)
    with Predictor(f"http://{server.http}/maskdepth") as remote:
        assert_same(remote.predict(scene, bg=bg), local.predict(scene, bg=bg))


def test_a_model_not_ready_or_not_maskdepths_is_one_line(server):
    with pytest.raises(MaskDepthError, match="'nosuch' is not ready") as caught:
        Predictor(f"grpc://{server.grpc}/nosuch")
    assert "\n" not in str(caught.value)
    with pytest.raises(MaskDepthError, match="not a maskdepth model: its inputs are") as caught:
        Predictor(f"http://{server.http}/{NET}")  # the network: float planes, not images
    assert "\n" not in str(caught.value)
    admin = grpcclient.InferenceServerClient(server.grpc)
    admin.unload_model("maskdepth")
    try:
        with pytest.raises(MaskDepthError, match="'maskdepth' is not ready"):
            Predictor(f"http://{server.http}/maskdepth")
    finally:
        admin.load_model("maskdepth")
    Predictor(f"http://{server.http}/maskdepth").close()  # ready again


NUMPY1_SCRIPT = """
import sys, numpy as np
from maskdepth.runtime import Predictor
data = np.load(sys.argv[2])
p = Predictor(sys.argv[1], device="cpu")
one = p.predict(data["scene0"], bg=data["bg"])
p.set_background(data["bg"])
rest = list(p.predict_batch([data["scene1"], data["scene2"]]))
np.savez(sys.argv[3], numpy=np.__version__, **{f"{k}{i}": getattr(r, k)
         for i, r in enumerate([one, *rest]) for k in ("mask", "depth")})
"""


def test_the_runtime_under_numpy_1_gives_the_answers_of_numpy_2(triton_env, repository, local,
                                                                 tmp_path):  # fmt: skip
    model = repository / NET / "1" / "model.onnx"  # exported in this environment
    inputs = {"bg": rgb(60, 50, 70)} | {f"scene{i}": rgb(61 + i, 50 - 8 * i, 70) for i in range(3)}
    np.savez(tmp_path / "in.npz", **inputs)
    (tmp_path / "run.py").write_text(NUMPY1_SCRIPT)
    command = [str(triton_env.python), str(tmp_path / "run.py"), str(model),
               str(tmp_path / "in.npz"), str(tmp_path / "out.npz")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=triton_env.environ())  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = np.load(tmp_path / "out.npz")
    assert str(theirs["numpy"]).startswith("1."), theirs["numpy"]
    local.set_background(inputs["bg"])
    ours = [local.predict(inputs["scene0"], bg=inputs["bg"]), *local.predict_batch(
        [inputs["scene1"], inputs["scene2"]])]  # fmt: skip
    for i, prediction in enumerate(ours):
        for name in ("mask", "depth"):
            gap = np.abs(theirs[f"{name}{i}"] - getattr(prediction, name)).max()
            assert gap <= TOLERANCE, (i, name, gap)
