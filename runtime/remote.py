"""The Predictor of a model served by Triton Inference Server: the same calls, over the network.

    p = Predictor("grpc://HOST:8001/maskdepth")     # or "http://HOST:8000/maskdepth"
    out = p.predict(scene, bg=bg)                   # the same Prediction as in-process

The URL names the server and the ensemble that ``maskdepth export --format triton`` writes
(``/maskdepth``; ``/NAME/VERSION`` picks a version). The server runs the pre-processing, the
network and the resize-back; the client sends RGB uint8 ``scene`` and ``bg`` (the bg resized
to the scene's size first, as the in-process Predictor does) and reads ``mask`` and ``depth``
at the scene's size. The model's :class:`ModelInfo` (depth scale, pre-processing) is read from
the ensemble's config (parameter ``maskdepth.model_info``).

``predict_batch`` sends its scenes as concurrent requests, so that the server's dynamic
batcher runs them together. On opening, a server that does not answer within
``connect_timeout`` seconds, a model that is not ready and a model whose inputs are not
maskdepth's are each one :class:`MaskDepthError` line. Needs ``pip install 'maskdepth[triton]'``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MaskDepthError, require
from .model_info import OUTPUT_NAMES, ModelInfo
from .predictor import DEFAULT_BATCH, Prediction, Predictor, _Background
from .preprocess import resize_image

SCHEMES = {"grpc": 8001, "http": 8000}  # Triton's default ports
URL = re.compile(r"^(grpc|http)://([^/:]+)(?::(\d+))?/([^/]+)(?:/(\d+))?/?$")
CONNECT_TIMEOUT_S = 5.0
TIMEOUT_S = 60.0
INFO_PARAMETER = "maskdepth.model_info"  # the ensemble's config: ModelInfo.to_dict() as JSON
INPUTS = {"scene": ("UINT8", 3), "bg": ("UINT8", 3)}  # name: (datatype, rank), last dim 3
OUTPUTS = {"mask": ("FP32", 2), "depth": ("FP32", 2)}


@dataclass(frozen=True)
class ServerModel:
    """``scheme://host:port/model[/version]``, parsed."""

    scheme: str
    address: str  # host:port
    model: str
    version: str = ""

    @classmethod
    def parse(cls, url: str) -> ServerModel:
        found = URL.match(url)
        if not found:
            raise MaskDepthError(
                f"{url}: expected grpc://HOST[:PORT]/MODEL or http://HOST[:PORT]/MODEL "
                "(e.g. grpc://localhost:8001/maskdepth)"
            )
        scheme, host, port, model, version = found.groups()
        return cls(scheme, f"{host}:{port or SCHEMES[scheme]}", model, version or "")

    def __str__(self) -> str:
        version = f"/{self.version}" if self.version else ""
        return f"{self.scheme}://{self.address}/{self.model}{version}"


class RemotePredictor(Predictor):
    """A :class:`Predictor` whose model runs on a Triton server (``Predictor(url)`` makes one).

    ``timeout``: seconds one request may take; ``connect_timeout``: seconds the server has to
    answer when the Predictor opens; ``concurrency``: requests in flight at once in
    ``predict_batch`` (default: its batch size). Thread-safe like the in-process Predictor
    (each thread gets its own connection).
    """

    def __init__(
        self,
        path: str,
        device: str = "auto",
        threads: int | None = None,
        backend: str | None = None,
        *,
        timeout: float = TIMEOUT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        concurrency: int = DEFAULT_BATCH,
    ) -> None:
        self.target = ServerModel.parse(path)
        for name, value, default in (("device", device, "auto"), ("threads", threads, None),
                                     ("backend", backend, None)):  # fmt: skip
            if value != default:
                raise MaskDepthError(
                    f"{name}={value!r}: {self.target} runs where its server runs; set it in "
                    "the repository (maskdepth export --format triton), not in the client"
                )
        self.path = self.target  # type: ignore[assignment]  # where the model is, for repr()
        self.backend = "triton"
        self.timeout, self.connect_timeout = float(timeout), float(connect_timeout)
        self._module = require(f"tritonclient.{self.target.scheme}", "triton", "a Triton URL")
        self._local = threading.local()
        self._clients: list = []
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._concurrency = max(1, int(concurrency))
        self._min_batch, self._max_batch = None, None
        self._background: _Background | None = None
        self.info = self._open()

    # -------------------------------------------------------------- what runs

    @property
    def device(self) -> str:
        """ "remote": the model runs on the server (its repository says on what)."""
        return "remote"

    @property
    def provider(self) -> str:
        return f"Triton Inference Server ({self.target.scheme})"

    def __repr__(self) -> str:
        height, width = self.size
        return f"Predictor({str(self.target)!r}: {self.info.model} {height}x{width} on Triton)"

    def close(self) -> None:
        """Close the connections and the request threads."""
        with self._lock:
            pool, self._pool = self._pool, None
            clients, self._clients = self._clients, []
        if pool is not None:
            pool.shutdown(wait=True)
        for client in clients:
            client.close()

    # -------------------------------------------------------------- opening

    def _open(self) -> ModelInfo:
        """Check the server, the model and its inputs (bounded by connect_timeout); return
        the model's ModelInfo from its config."""
        name, version = self.target.model, self.target.version
        live = self._call(lambda c, t: c.is_server_live(**t), "no Triton server answers", True)
        if not live:
            raise MaskDepthError(f"{self.target}: the Triton server is not live")
        ready = self._call(lambda c, t: c.is_model_ready(name, version, **t), "no answer", True)
        if not ready:
            raise MaskDepthError(
                f"{self.target}: model {name!r} is not ready on the server (not in its "
                "repository, still loading or failed to load: see the server's log)"
            )
        metadata = self._call(
            lambda c, t: c.get_model_metadata(name, version, **t), "no metadata", True
        )
        _check_signature(self.target, self._as_dict(metadata))
        config = self._call(lambda c, t: c.get_model_config(name, version, **t), "no config", True)
        return _model_info(self.target, self._as_dict(config))

    def _call(self, request: Callable[[Any, dict], Any], what: str, opening: bool = False) -> Any:
        """One request to the server, bounded by ``timeout`` (``connect_timeout`` while
        ``opening``); its failure is one line."""
        exceptions = require("tritonclient.utils", "triton", "a Triton URL")
        limit = self.connect_timeout if opening else self.timeout
        bound = {} if self.target.scheme == "http" else {"client_timeout": limit}
        try:
            return request(self._client(limit if opening else None), bound)
        except (exceptions.InferenceServerException, OSError) as exc:
            raise MaskDepthError(f"{self.target}: {what} ({_first_line(exc)})") from None

    def _as_dict(self, answer: Any) -> dict:
        if self.target.scheme == "http":
            return answer
        protobuf = require("google.protobuf.json_format", "triton", "a Triton URL")
        return protobuf.MessageToDict(answer, preserving_proto_field_name=True)

    def _client(self, network_timeout: float | None = None) -> Any:
        """This thread's client (tritonclient's HTTP client is not thread-safe, and takes its
        time limit when made: ``network_timeout`` gives the HTTP checks on opening their own)."""
        key = "client" if network_timeout is None else "opening"
        client = getattr(self._local, key, None)
        if client is None:
            if self.target.scheme == "http":
                client = self._module.InferenceServerClient(
                    self.target.address,
                    connection_timeout=self.connect_timeout,
                    network_timeout=network_timeout or self.timeout,
                )
            else:
                client = self._module.InferenceServerClient(self.target.address)
            setattr(self._local, key, client)
            with self._lock:
                self._clients.append(client)
        return client

    # -------------------------------------------------------------- prediction

    def _run(self, pairs: list[tuple]) -> list[Prediction]:
        """One request per (bg or _Background, scene RGB), all in flight at once."""
        if len(pairs) == 1:
            return [self._infer(pairs[0])]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self._concurrency, "maskdepth-triton")
            pool = self._pool
        return list(pool.map(self._infer, pairs))

    def _infer(self, pair: tuple) -> Prediction:
        bg, scene = pair
        rgb = bg.rgb if isinstance(bg, _Background) else bg
        tensors = {"scene": scene, "bg": resize_image(rgb, scene.shape[:2])}
        module = self._module
        inputs = []
        for name, array in tensors.items():
            tensor = module.InferInput(name, list(array.shape), "UINT8")
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            inputs.append(tensor)
        outputs = [module.InferRequestedOutput(name) for name in OUTPUT_NAMES]
        bound = {"client_timeout": self.timeout} if self.target.scheme == "grpc" else {}
        result = self._call(
            lambda c, _: c.infer(
                self.target.model, inputs, self.target.version, outputs=outputs, **bound
            ),
            "inference failed",
        )
        maps = {name: np.asarray(result.as_numpy(name), np.float32) for name in OUTPUT_NAMES}
        for name, values in maps.items():
            if values.shape != scene.shape[:2]:
                raise MaskDepthError(
                    f"{self.target}: {name} came back {list(values.shape)}, expected the "
                    f"scene's {list(scene.shape[:2])}"
                )
        return Prediction(maps["mask"], maps["depth"], scene, self.info.depth_scale_m)


# ------------------------------------------------------------------------------ checks


def _check_signature(target: ServerModel, metadata: dict) -> None:
    """The model's inputs and outputs must be the ensemble's: scene, bg UINT8 [-1, -1, 3] in,
    mask, depth FP32 [-1, -1] out (what maskdepth export --format triton writes)."""
    for kind, wanted in (("inputs", INPUTS), ("outputs", OUTPUTS)):
        served = {
            t["name"]: (t["datatype"], [int(d) for d in t.get("shape", [])])
            for t in metadata.get(kind, [])
        }
        if set(served) == set(wanted) and all(
            served[name][0] == datatype
            and len(served[name][1]) == rank
            and (rank != 3 or served[name][1][-1] in (3, -1))
            for name, (datatype, rank) in wanted.items()
        ):
            continue
        shown = ", ".join(f"{n} {d} {s}" for n, (d, s) in served.items()) or "none"
        expected = ", ".join(
            f"{n} {d} {[-1, -1, 3] if r == 3 else [-1, -1]}" for n, (d, r) in wanted.items()
        )
        raise MaskDepthError(
            f"{target}: not a maskdepth model: its {kind} are {shown}; expected {expected} "
            "(a repository from 'maskdepth export --format triton')"
        )


def _model_info(target: ServerModel, config: dict) -> ModelInfo:
    config = config.get("config", config)  # gRPC wraps it
    value = config.get("parameters", {}).get(INFO_PARAMETER, {}).get("string_value")
    if not value:
        raise MaskDepthError(
            f"{target}: its config has no {INFO_PARAMETER} parameter; export the repository "
            "with 'maskdepth export --format triton'"
        )
    try:
        values = json.loads(value)
    except ValueError as exc:
        raise MaskDepthError(f"{target}: damaged {INFO_PARAMETER} ({exc})") from None
    return ModelInfo.from_dict(values, str(target))


def _first_line(exc: BaseException) -> str:
    """tritonclient's exceptions keep the server's text in message(), without the status."""
    method = getattr(exc, "message", None)
    message = method() if callable(method) else str(exc)
    return (str(message).strip() or type(exc).__name__).splitlines()[0]
