"""The README's Python example runs as written (on a small synthetic dataset)."""

import re
from pathlib import Path

from maskdepth.train.data.synth import synthesize

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_api_example_runs(tmp_path):
    synthesize(tmp_path / "mine", 80, size=64, per_background=10, workers=1, progress=False)
    example = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    assert '"data/mine"' in example
    scope: dict = {}
    exec(example.replace('"data/mine"', repr(str(tmp_path / "mine"))), scope)
    assert tuple(scope["batch"]["input"].shape) == (32, 6, 96, 96)
    assert tuple(scope["batch"]["mask"].shape) == (32, 1, 96, 96)
    assert len(scope["val_idx"]) == 10  # one of eight backgrounds, whole
