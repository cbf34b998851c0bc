"""The Triton client's own checks, without a server: its URL, its options, a server that is down
or silent (bounded by connect_timeout), and a runtime without tritonclient. The live tests
against a real tritonserver are in tests/test_triton_serve.py."""

from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest

from maskdepth.benchmarks.triton_server import free_ports
from maskdepth.runtime import MaskDepthError, Predictor
from maskdepth.runtime.remote import RemotePredictor, ServerModel

pytest.importorskip("tritonclient.grpc", reason="tritonclient (maskdepth[triton]) not installed")


@pytest.mark.parametrize(
    "url, parsed",
    [
        ("grpc://server:8001/maskdepth", ("grpc", "server:8001", "maskdepth", "")),
        ("http://10.1.2.3/maskdepth/2", ("http", "10.1.2.3:8000", "maskdepth", "2")),
        ("grpc://localhost/other/", ("grpc", "localhost:8001", "other", "")),
    ],
)
def test_a_url_names_server_model_and_version(url, parsed):
    target = ServerModel.parse(url)
    assert (target.scheme, target.address, target.model, target.version) == parsed


@pytest.mark.parametrize("url", ["grpc://server:8001", "http://server:port/m", "grpc:///m"])
def test_a_url_without_model_or_port_is_one_line(url):
    with pytest.raises(MaskDepthError, match="expected grpc://HOST") as caught:
        Predictor(url)
    assert "\n" not in str(caught.value)


def test_a_url_makes_the_remote_predictor_and_a_path_the_local_one(tmp_path):
    with pytest.raises(MaskDepthError, match="expected grpc://HOST"):
        Predictor("grpc://bad url")  # RemotePredictor's __init__ ran: its own message
    with pytest.raises(FileNotFoundError):
        Predictor(str(tmp_path / "grpc:" / "model.onnx"))  # a file path stays a file
    assert issubclass(RemotePredictor, Predictor)


@pytest.mark.parametrize("option", [{"device": "cuda"}, {"threads": 2}, {"backend": "tensorrt"}])
def test_options_of_a_local_model_are_refused_for_a_server(option):
    with pytest.raises(MaskDepthError, match="runs where its server runs"):
        Predictor("grpc://127.0.0.1:1/maskdepth", **option)


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_server_that_is_down_is_one_line(scheme):
    (port,) = free_ports(1)  # nothing listens there
    with pytest.raises(MaskDepthError, match="no Triton server answers") as caught:
        Predictor(f"{scheme}://127.0.0.1:{port}/maskdepth", connect_timeout=2)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("command", ["predict", "stream"])
def test_the_commands_take_a_server_url(command, tmp_path, capsys):
    """`predict` and `stream` pass a URL to the Predictor as it is (a Path would fold its
    ``//`` and look for a file): a server that is down is its one line, not "no such file"."""
    import numpy as np

    from maskdepth.cli import main
    from maskdepth.runtime.image import write_image

    for name in ("bg", "scene"):
        write_image(tmp_path / f"{name}.png", np.full((16, 16, 3), 90, np.uint8))
    with socket.socket() as closed:  # bound, not listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        url = f"grpc://127.0.0.1:{closed.getsockname()[1]}/maskdepth"
        source = ["--scene"] if command == "predict" else ["--source"]
        args = [command, url, "--bg", str(tmp_path / "bg.png"), *source]
        code = main([*args, str(tmp_path / "scene.png"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no Triton server answers" in err[0], err


@pytest.mark.parametrize("scheme", ["grpc", "http"])
def test_a_server_that_never_answers_is_one_line_within_the_connect_timeout(scheme):
    with socket.socket() as silent:  # the kernel accepts connections; nobody ever answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        began = time.monotonic()
        with pytest.raises(MaskDepthError, match="no Triton server answers"):
            Predictor(f"{scheme}://127.0.0.1:{silent.getsockname()[1]}/m", connect_timeout=1)
        elapsed = time.monotonic() - began
    assert 0.5 < elapsed < 30, elapsed  # waited for the 1 s limit, not for the 60 s default


def test_without_tritonclient_the_runtime_imports_and_a_url_names_the_extra():
    code = (
        "import sys; sys.modules['tritonclient'] = None\n"
        "from maskdepth.runtime import MissingDependencyError, Predictor\n"
        "try:\n    Predictor('grpc://127.0.0.1:1/maskdepth')\n"
        "except MissingDependencyError as exc:\n    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'maskdepth[triton]'" in done.stdout


def test_the_ensembles_config_carries_the_model_info_the_client_reads():
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from maskdepth.export.triton import ensemble_config, pbtxt
    from maskdepth.runtime.model_info import ModelInfo
    from maskdepth.runtime.preprocess import Preprocessing
    from maskdepth.runtime.remote import _model_info

    info = ModelInfo("u2netp-md", Preprocessing(size=(64, 96)), depth_scale_m=7.5)
    config = text_format.Parse(pbtxt(ensemble_config(info)), model_config_pb2.ModelConfig())
    served = {"config": json_format.MessageToDict(config, preserving_proto_field_name=True)}
    target = ServerModel.parse("grpc://server/maskdepth")
    assert _model_info(target, served) == info
    bare = text_format.Parse(pbtxt(ensemble_config()), model_config_pb2.ModelConfig())
    with pytest.raises(MaskDepthError, match="no maskdepth.model_info parameter"):
        _model_info(target, json_format.MessageToDict(bare, preserving_proto_field_name=True))
