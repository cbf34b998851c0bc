"""Shared fixtures: small datasets in the seed's layout, written by the tests themselves."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from maskdepth.runtime.image import from_unit, write_image


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Keep zip-index caches out of the user's home."""
    monkeypatch.setenv("MASKDEPTH_CACHE", str(tmp_path_factory.mktemp("cache")))


def write_seed_dataset(
    root: Path, backgrounds: int = 2, per_background: int = 3, size: int = 32, suffix: str = ".png"
) -> dict:
    """Write bg/fg_bg/fg_bg_mask/dense_depth with known content; return it keyed by (k, n).

    Each scene is its background with a bright square pasted; the mask is that square and the
    depth a vertical ramp with the square nearer.
    """
    rng = np.random.default_rng(7)
    truth, n = {}, 0
    ramp = np.repeat(np.linspace(1.0, 0.2, size, dtype=np.float32)[:, None], size, axis=1)
    for k in range(1, backgrounds + 1):
        bg = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
        (root / "bg").mkdir(parents=True, exist_ok=True)
        write_image(root / "bg" / f"{k}{suffix}", bg, 95)
        for _ in range(per_background):
            n += 1
            y, x = rng.integers(0, size // 2, 2)
            mask = np.zeros((size, size), np.float32)
            mask[y : y + size // 3, x : x + size // 3] = 1
            scene = bg.copy()
            scene[mask > 0] = (230, 200, 40)
            depth = np.where(mask > 0, 0.1, ramp).astype(np.float32)
            for tree, image in [
                ("fg_bg", scene),
                ("fg_bg_mask", from_unit(mask)),
                ("dense_depth", from_unit(depth)),
            ]:
                (root / tree / str(k)).mkdir(parents=True, exist_ok=True)
                write_image(root / tree / str(k) / f"{n}{suffix}", image, 95)
            truth[(k, n)] = {"bg": bg, "scene": scene, "mask": mask, "depth": depth}
    return truth


def zip_trees(root: Path, trees=("fg_bg", "fg_bg_mask", "dense_depth"), top: bool = True) -> None:
    """Replace each tree folder by ``tree.zip`` (entries under ``tree/`` when ``top``)."""
    for tree in trees:
        with zipfile.ZipFile(root / f"{tree}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted((root / tree).rglob("*")):
                if path.is_file():
                    name = path.relative_to(root if top else root / tree).as_posix()
                    archive.write(path, name)
        shutil.rmtree(root / tree)


@pytest.fixture
def seed_dataset(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "seed"
    return root, write_seed_dataset(root)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A run folder: u2netp-md trained for one short epoch on 40 synthetic scenes at 32 px."""
    from maskdepth.train.config import TrainConfig
    from maskdepth.train.trainer import train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    config = TrainConfig(
        data="synth", sizes=[32], epochs=1, batch=4, out=str(out), threads=2, workers=0,
        synth_count=40, synth_per_background=10, samples=2, progress=False,
    )  # fmt: skip
    train(config)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_run) -> Path:
    return tiny_run / "best.pt"
