"""Triton Inference Server's python-backend models of a ``maskdepth export --format triton``
repository: the plain functions they run (:mod:`.steps`, numpy in, numpy out) and the thin
``TritonPythonModel`` files copied into ``REPO/<model>/1/model.py``. Only numpy, OpenCV and
maskdepth.runtime are imported here: the server's python environment gets maskdepth with
``pip install --no-deps``."""
