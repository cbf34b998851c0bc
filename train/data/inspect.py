"""`data info` and `data show`: what a dataset holds, in numbers and in a picture."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskdepth.runtime.errors import MaskDepthError
from maskdepth.runtime.image import write_image
from maskdepth.runtime.visualize import depth_colormap, grid, mask_picture

from .sample import Sample
from .sources import Source


def _spread(count: int, total: int) -> np.ndarray:
    """Up to ``count`` indices spread evenly over ``total`` scenes (first and last included)."""
    return np.unique(np.linspace(0, total - 1, num=min(count, total)).round().astype(np.int64))


def _samples(source: Source, indices: np.ndarray, skip_bad: bool) -> tuple[list[Sample], int]:
    samples, bad = [], 0
    for index in indices:
        try:
            samples.append(source[int(index)])
        except MaskDepthError:
            if not skip_bad:
                raise
            bad += 1
    return samples, bad


def describe(source: Source, sample_count: int = 200, skip_bad: bool = False) -> dict:
    """Counts from the index; size and mask/depth statistics from up to ``sample_count`` scenes."""
    samples, bad = _samples(source, _spread(sample_count, len(source)), skip_bad)
    if not samples:
        raise MaskDepthError(f"{getattr(source, 'root', source.kind)}: no readable scene")
    coverage = np.array([s.mask.mean() for s in samples])
    depth = np.concatenate([s.depth.ravel() for s in samples])
    manifest = source.manifest or {}
    info = {
        "kind": source.kind,
        "generator": manifest.get("kind"),
        "scenes": len(source),
        "backgrounds": int(len(np.unique(source.background_ids()))),
        "size": list(samples[0].scene.shape[:2]),
        "sampled": len(samples),
        "mask": {
            "coverage_mean": round(float(coverage.mean()), 4),
            "empty_fraction": round(float((coverage == 0).mean()), 4),
        },
        "depth": {
            "mean": round(float(depth.mean()), 4),
            "std": round(float(depth.std()), 4),
            "min": round(float(depth.min()), 4),
            "max": round(float(depth.max()), 4),
            "source": manifest.get("depth", {}).get("source"),
            "scale_m": manifest.get("depth", {}).get("scale_m"),
        },
        "skipped": getattr(source, "skipped", 0) + bad,
    }
    return info


def format_info(info: dict) -> str:
    """The human-readable form of :func:`describe`'s result."""
    h, w = info["size"]
    mask, depth = info["mask"], info["depth"]
    lines = [
        f"kind         {info['kind']}"
        + (f", made by {info['generator']}" * bool(info["generator"])),
        f"scenes       {info['scenes']:,}",
        f"backgrounds  {info['backgrounds']:,}",
        f"size         {h}x{w} (height x width)",
        f"mask         {mask['coverage_mean']:.1%} of pixels on average, "
        f"{mask['empty_fraction']:.1%} of scenes empty ({info['sampled']} scenes sampled)",
        f"depth        mean {depth['mean']:.3f}, std {depth['std']:.3f}, "
        f"range [{depth['min']:.3f}, {depth['max']:.3f}] (0 = nearest)",
    ]
    if depth["source"]:
        scale = f", 1.0 = {depth['scale_m']:g} m" if depth["scale_m"] else ", relative"
        lines.append(f"depth from   {depth['source']}{scale}")
    if info["skipped"]:
        lines.append(f"skipped      {info['skipped']} broken or incomplete scenes")
    return "\n".join(lines)


def show(
    source: Source, out: str | Path, count: int = 8, skip_bad: bool = False, cell: int = 160
) -> Path:
    """Write a bg | scene | mask | depth grid of ``count`` scenes spread over the dataset."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise MaskDepthError(f"{out}: expected a .png or .jpg file name for the grid")
    samples, _ = _samples(source, _spread(count, len(source)), skip_bad)
    rows = [[s.bg, s.scene, mask_picture(s.mask), depth_colormap(s.depth)] for s in samples]
    labels = ["background", "scene", "mask", "depth (red near, blue far)"]
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, grid(rows, labels, cell=cell), jpeg_quality=92)
    return out
