"""Can the data side keep a GPU fed? Scenes/s of ``synth`` and ``compose``, samples/s of the
loader, and how long indexing the seed's 400,000-scene zips takes.

    python -m maskdepth.benchmarks.scripts.data_throughput --size 224 --workers 2 --batch 32 \\
        --json out.json

Everything happens in one temporary folder (made-up backgrounds and cut-outs, the composed
dataset, a listing-only copy of the seed's zips) and is removed afterwards. Prints a markdown
table with the machine it ran on and writes the numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from maskdepth.benchmarks.measure import describe, machine
from maskdepth.runtime.image import write_bytes_atomic, write_image
from maskdepth.runtime.preprocess import Preprocessing

# ------------------------------------------------------------------------------ inputs


def make_inputs(folder: Path, backgrounds: int, foregrounds: int, size: int, seed: int = 0):
    """Smooth random backgrounds (JPG) and RGBA cut-outs (PNG, an opaque ellipse) for compose."""
    rng = np.random.default_rng(seed)
    bg_dir, fg_dir = folder / "backgrounds", folder / "foregrounds"
    bg_dir.mkdir(parents=True)
    fg_dir.mkdir(parents=True)
    for i in range(backgrounds):
        noise = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        write_image(bg_dir / f"bg{i}.jpg", cv2.resize(noise, (size, size)))
    side = size // 2
    for i in range(foregrounds):
        alpha = np.zeros((side, side), np.uint8)
        axes = (int(rng.integers(side // 4, side // 2)), int(rng.integers(side // 4, side // 2)))
        cv2.ellipse(alpha, (side // 2, side // 2), axes, 0, 0, 360, 255, -1)
        color = np.broadcast_to(rng.integers(0, 256, 3, dtype=np.uint8), (side, side, 3))
        rgba = np.dstack([color, alpha])
        write_image(fg_dir / f"fg{i}.png", rgba)
    return bg_dir, fg_dir


def write_listing_zip(path: Path, names: list[str], data: bytes = b"\xff\xd9") -> None:
    """A stored zip whose members are all ``data``: only the listing is timed."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            archive.writestr(name, data)


def make_listing_layout(root: Path, scenes: int, backgrounds: int = 100) -> None:
    """The seed's zips (``fg_bg.zip``, ``fg_bg_mask.zip``, ``dense_depth.zip``) with ``scenes``
    tiny entries each, scenes spread evenly over ``backgrounds``, and a ``bg/`` folder."""
    (root / "bg").mkdir(parents=True)
    for k in range(1, backgrounds + 1):
        (root / "bg" / f"{k}.jpg").write_bytes(b"\xff\xd8\xff\xd9")
    ks = np.arange(scenes) * backgrounds // scenes + 1
    relative = [f"{k}/{n}.jpg" for k, n in zip(ks.tolist(), range(1, scenes + 1))]
    for tree in ("fg_bg", "fg_bg_mask", "dense_depth"):
        write_listing_zip(root / f"{tree}.zip", [f"{tree}/{name}" for name in relative])


# ------------------------------------------------------------------------------ timings


def _row(what: str, count: int, seconds: float, unit: str, **extra) -> dict:
    rate = count / seconds if seconds > 0 else float("inf")
    return {
        "what": what,
        "rate": round(rate, 2),
        "unit": unit,
        "seconds": round(seconds, 3),
        "count": count,
        **extra,
    }


def time_synth(out: Path, args: argparse.Namespace) -> dict:
    from maskdepth.train.data.synth import synthesize

    result = synthesize(
        out,
        args.synth_scenes,
        size=args.size,
        seed=0,
        image_format="png",
        workers=args.workers,
        progress=False,
    )
    return _row(
        f"synth: write {args.synth_scenes} scenes (png)",
        args.synth_scenes,
        result["seconds"],
        "scenes/s",
        workers=args.workers,
    )


def time_compose(out: Path, bg_dir: Path, fg_dir: Path, args: argparse.Namespace, **depth) -> dict:
    """Scenes/s of compose; ``depth``: a depth model and its options (default: the ground
    plane)."""
    from maskdepth.train.data.compose import compose

    result = compose(
        out,
        bg_dir,
        fg_dir,
        size=args.size,
        positions=args.positions,
        fg_size=args.size // 2,
        seed=0,
        image_format="jpg",
        workers=args.workers,
        progress=False,
        **depth,
    )
    scenes = int(result["scenes"])
    how = "ground plane"
    if depth:
        how = f"{Path(depth['depth_model']).name}, batch {depth.get('depth_batch', 8)}"
    return _row(
        f"compose: write {scenes} scenes (jpg), depth: {how}",
        scenes,
        result["seconds"],
        "scenes/s",
        workers=args.workers,
    )


def time_compose_depth(tmp: Path, bg_dir: Path, fg_dir: Path, args: argparse.Namespace) -> list:
    """compose with a stand-in of Depth Anything V2 (its interface: 3x518x518, ImageNet
    normalised, a dynamic batch; a graph of a few per-pixel operations), one scene per run and
    ``--depth-batch`` scenes per run: the cost of the pre- and post-processing and of the runs,
    not of a real network."""
    from maskdepth.benchmarks.depth_standins import write_standin

    model = write_standin(tmp / "depth-anything-v2.onnx", "depth-anything-v2", batch="N")
    return [
        time_compose(
            tmp / f"composed-depth-{batch}",
            bg_dir,
            fg_dir,
            args,
            depth_model=model,
            depth_preset="depth-anything-v2",
            depth_batch=batch,
        )  # fmt: skip
        for batch in sorted({1, args.depth_batch})
    ]


def time_loader(what: str, source, args: argparse.Namespace, augment=None) -> dict:
    """Samples/s over one epoch of ``args.loader_samples`` samples, after the workers started
    (a first, discarded batch), as a training loop would see them (collated float32 tensors)."""
    from maskdepth.train.data.loader import MaskDepthDataset, make_loader

    samples = min(args.loader_samples, len(source))
    dataset = MaskDepthDataset(
        source,
        indices=np.arange(samples),
        pre=Preprocessing(size=(args.size, args.size)),
        augment=augment,
    )
    loader = make_loader(dataset, args.batch, workers=args.workers, seed=0)
    for _ in loader:  # starts the (persistent) workers
        break
    start = time.perf_counter()
    count = sum(len(batch["index"]) for batch in loader)
    seconds = time.perf_counter() - start
    del loader
    return _row(what, count, seconds, "samples/s", workers=args.workers, batch=args.batch)


def time_items(what: str, source, args: argparse.Namespace, augment=None) -> dict:
    """Samples/s of ``dataset[i]`` in this process: decoding and preparation on one core, without
    the loader's batching and transport between processes."""
    from maskdepth.train.data.loader import MaskDepthDataset

    samples = min(args.loader_samples, len(source))
    dataset = MaskDepthDataset(
        source, pre=Preprocessing(size=(args.size, args.size)), augment=augment
    )
    dataset[0]  # noqa: B018  (warm-up: first decode, caches)
    start = time.perf_counter()
    for item in range(samples):
        dataset[item]  # noqa: B018
    return _row(what, samples, time.perf_counter() - start, "samples/s", workers=0)


def time_index(root: Path, scenes: int) -> list[dict]:
    """Open the listing-only seed layout twice: cold (parse the zips' central directories),
    then with the on-disk index cache."""
    from maskdepth.train.data.seed_layout import SeedLayoutSource

    rows = []
    for label in ("cold", "cached"):
        start = time.perf_counter()
        source = SeedLayoutSource(root)
        seconds = time.perf_counter() - start
        assert len(source) == scenes, f"indexed {len(source)} scenes, expected {scenes}"
        rows.append(
            _row(
                f"seed-layout index, {scenes:,} scenes x 3 zips ({label})",
                scenes,
                seconds,
                "scenes/s",
            )
        )
    return rows


# ------------------------------------------------------------------------------ report


def markdown(rows: list[dict], info: dict) -> str:
    lines = [
        describe(info, "torch", "numpy", "opencv-python-headless", "opencv-python"),
        "",
        "| what | rate | unit | seconds |",
        "|---|---:|---|---:|",
    ]
    for row in rows:
        if row.get("error"):
            lines.append(f"| {row['what']} | not run | {row['error']} | |")
        else:
            lines.append(
                f"| {row['what']} | {row['rate']:,.1f} | {row['unit']} | {row['seconds']:.2f} |"
            )
    return "\n".join(lines)


def _attempt(rows: list[dict], what: str, step: Callable[[], dict | list[dict]]) -> None:
    """Run one measurement; a part whose module is missing is reported, the others still run."""
    try:
        result = step()
    except ImportError as exc:
        rows.append({"what": what, "error": f"missing: {exc}"})
        return
    rows.extend(result if isinstance(result, list) else [result])


def run(args: argparse.Namespace) -> dict:
    rows: list[dict] = []
    previous_cache = os.environ.get("MASKDEPTH_CACHE")
    with tempfile.TemporaryDirectory(prefix="maskdepth-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        os.environ["MASKDEPTH_CACHE"] = str(tmp / "cache")  # a cold zip index, then a warm one
        try:
            bg_dir, fg_dir = make_inputs(
                tmp / "inputs", args.backgrounds, args.foregrounds, args.size
            )
            _attempt(rows, "synth", lambda: time_synth(tmp / "synth", args))
            _attempt(rows, "compose", lambda: time_compose(tmp / "composed", bg_dir, fg_dir, args))
            if args.depth_batch:
                _attempt(
                    rows,
                    "compose with a depth model",
                    lambda: time_compose_depth(tmp, bg_dir, fg_dir, args),
                )
            _attempt(rows, "loader over composed jpg", lambda: _composed_loaders(tmp, args))
            _attempt(rows, "loader over synth", lambda: _synth_loader(args))
            make_listing_layout(tmp / "listing", args.index_scenes)
            _attempt(
                rows, "seed-layout index", lambda: time_index(tmp / "listing", args.index_scenes)
            )
        finally:
            if previous_cache is None:
                os.environ.pop("MASKDEPTH_CACHE", None)
            else:
                os.environ["MASKDEPTH_CACHE"] = previous_cache
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    return {"machine": machine(), "settings": settings, "results": rows}


def _composed_loaders(tmp: Path, args: argparse.Namespace) -> list[dict]:
    from maskdepth.train.data.augment import Augment
    from maskdepth.train.data.seed_layout import SeedLayoutSource

    root = tmp / "composed"
    if not (root / "manifest.json").is_file():
        return [{"what": "loader over composed jpg", "error": "needs compose"}]
    source = SeedLayoutSource(root)
    size = f"{args.size}x{args.size}"
    return [
        time_items(f"dataset items, one process: composed jpg, {size}", source, args),
        time_items(f"dataset items, one process: + augment, {size}", source, args, Augment()),
        time_loader(f"loader: composed jpg, {size}", source, args),
        time_loader(f"loader: composed jpg + augment, {size}", source, args, Augment()),
    ]


def _synth_loader(args: argparse.Namespace) -> dict:
    from maskdepth.train.data.synth import SynthSource

    source = SynthSource(args.loader_samples + args.batch, args.size, 0)
    return time_loader(f"loader: synth on the fly, {args.size}x{args.size}", source, args)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="image side (default 224)")
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--batch", type=int, default=32, help="loader batch size (default 32)")
    parser.add_argument("--synth-scenes", type=int, default=200)
    parser.add_argument("--backgrounds", type=int, default=4, help="compose backgrounds")
    parser.add_argument("--foregrounds", type=int, default=5, help="compose cut-outs")
    parser.add_argument("--positions", type=int, default=20, help="compose positions per pair")
    parser.add_argument(
        "--depth-batch",
        type=int,
        default=8,
        help="compose also with a Depth Anything V2 stand-in, 1 and this many scenes per run "
        "(0: not)",
    )
    parser.add_argument("--loader-samples", type=int, default=512)
    parser.add_argument(
        "--index-scenes",
        type=int,
        default=400_000,
        help="entries per zip for the seed-layout index timing",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    print(markdown(report["results"], report["machine"]))
    if args.json is not None:
        write_bytes_atomic(args.json, (json.dumps(report, indent=2) + "\n").encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
