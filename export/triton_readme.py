"""``REPO/README.md`` of a Triton repository: how to start the server it was written for and how
to query it with maskdepth's client."""

from __future__ import annotations

from maskdepth import __version__
from maskdepth.runtime.model_info import ModelInfo

# The NGC container the repository is written for, and what it holds (its release notes:
# Triton 2.51.0, CUDA 12.6.2, TensorRT 10.5, Ubuntu 22.04 with Python 3.10).
CONTAINER = "nvcr.io/nvidia/tritonserver:24.10-py3"
TRITON_VERSION = "2.51.0"
CONTAINER_TENSORRT = "10.5"

_NETWORK = {
    "onnxruntime": "`maskdepth_net` runs `1/model.onnx` on Triton's onnxruntime backend "
    '(`platform: "onnxruntime_onnx"`), on a GPU where the server has one.',
    "tensorrt": "`maskdepth_net` runs the TensorRT plan `1/model.plan` (`platform: "
    '"tensorrt_plan"`). A plan runs only on the GPU model and the TensorRT version it was '
    f"built with: build it on the server's GPU with the server's TensorRT ({CONTAINER_TENSORRT} "
    f"in {CONTAINER}); `1/model.plan.json` records what it was built with.",
    "python": "`maskdepth_net` runs `1/model.onnx` on the python backend with maskdepth's own "
    "runtime (onnxruntime on the CPU): for a server without a GPU or without the onnxruntime "
    "backend.",
}


def readme(info: ModelInfo, network: str, max_batch: int) -> str:
    """The README's text for a repository of ``info``'s model served by ``network``."""
    height, width = info.size
    onnxruntime = " onnxruntime" if network == "python" else ""
    return f"""# maskdepth on Triton Inference Server

Written by `maskdepth export --format triton` (maskdepth {__version__}) for
{info.model} ({info.precision}, network input {height}x{width}), for Triton {TRITON_VERSION},
the NGC container `{CONTAINER}`.

- `maskdepth`: the ensemble to query. Inputs `scene` and `bg`, `TYPE_UINT8` `[-1, -1, 3]` (RGB,
  any size, the two the same size); outputs `mask` and `depth`, `TYPE_FP32` `[-1, -1]` at the
  scene's size, what `Predictor.predict(scene, bg=bg)` returns.
- `maskdepth_pre`, `maskdepth_post`: maskdepth's pre-processing and resize-back on the python
  backend; they read the model's facts (mean, std, size) from `model_info.json`.
- {_NETWORK[network]} Dynamic batching up to {max_batch}.

## Start the server

The python backend's models import `maskdepth.runtime` (numpy, OpenCV{onnxruntime}). Install it
into the container's python without its other dependencies, then start the server:

```sh
docker run --rm --gpus all -p 8000:8000 -p 8001:8001 -p 8002:8002 \\
  -v "$PWD/REPO:/models" {CONTAINER} \\
  bash -c 'pip install "numpy<2" opencv-python-headless{onnxruntime} && \\
           pip install --no-deps maskdepth=={__version__} && \\
           tritonserver --model-repository /models'
```

(`REPO` is this folder; leave out `--gpus all` on a machine without a GPU: the python network
and onnxruntime at fp32 run on its CPU, a TensorRT plan and onnxruntime's TensorRT accelerator
(fp16, INT8) need a GPU.) numpy must stay below 2 in the python backend's
environment: with numpy 2 its responses fail ("output tensor shape does not match size of
output").

## Query it

```python
from maskdepth import Predictor

predictor = Predictor("grpc://HOST:8001/maskdepth")  # or "http://HOST:8000/maskdepth"
out = predictor.predict(scene, bg=bg)  # out.mask, out.depth: float32 H x W
```

(`pip install "maskdepth[triton]"` for the client.) The same `predict`, `predict_batch` and
`set_background` as a Predictor on a local model file.
"""
