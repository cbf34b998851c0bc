"""What a training recipe learns in a fixed time: candidates trained one after another under the
same budget, on one or more datasets, with val IoU and RMSE against images seen and minutes.

    python -m maskdepth.benchmarks.scripts.train_quality --data synth=data/synth \\
        --data photos=data/photos --size 64 --minutes 3 --candidates "seed;dice;prior" \\
        --out runs/quality

Every candidate is the seed's recipe (``seed``: BCE for both tasks, lr 0.01, batch 16, EMA 0.999,
half the run warming up, colour jitter, no prior) with one or more options changed, trained by
``maskdepth train --max-minutes`` (so the planner sizes its schedule) and validated every
``--val-every`` steps on its run's validation split. Results go to ``OUT/quality.json`` as they
come (a rerun skips what is there; ``--again`` redoes it), then ``quality.md`` (one table per
dataset, with the change against ``--baseline``) and ``quality.png`` (the curves).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

from maskdepth.benchmarks.measure import machine
from maskdepth.runtime.errors import MaskDepthError, require
from maskdepth.runtime.image import write_bytes_atomic

SEED = {
    "loss_mask": "bce",
    "loss_depth": "bce",
    "side_weight": 1.0,
    "lr": 0.01,
    "batch": 16,
    "ema_decay": 0.999,
    "warmup": 0.5,
    "augment": "basic",
    "prior": "none",
}
# name -> (what changes, the options that change it); each against SEED unless it says otherwise.
CANDIDATES: dict[str, tuple[str, dict]] = {
    "seed": ("the seed's recipe", {}),
    "dice": ("mask loss BCE + Dice", {"loss_mask": "bce+dice"}),
    "iou": ("mask loss BCE + soft IoU", {"loss_mask": "bce+iou"}),
    "l1": ("depth loss L1", {"loss_depth": "l1"}),
    "l1ssim": ("depth loss L1 + SSIM + gradient", {"loss_depth": "l1+ssim+grad"}),
    "side0.3": ("side outputs weigh 0.3", {"side_weight": 0.3}),
    "lr0.003": ("max lr 0.003", {"lr": 0.003}),
    "lr0.03": ("max lr 0.03", {"lr": 0.03}),
    "batch8": ("batch 8", {"batch": 8}),
    "batch4": ("batch 4", {"batch": 4}),
    "ema0": ("no EMA", {"ema_decay": 0.0}),
    "ema0.99": ("EMA decay 0.99", {"ema_decay": 0.99}),
    "warmup0.2": ("20% warm-up", {"warmup": 0.2}),
    "aug-none": ("no augmentation", {"augment": "none"}),
    "aug-camera": ("camera augmentation", {"augment": "camera"}),
    "prior": ("difference prior", {"prior": "difference"}),
}


def parse_candidate(spec: str) -> tuple[str, str, dict]:
    """A known name, or ``name:key=value,key=value`` for a combination (values as in JSON)."""
    name, _, options = spec.partition(":")
    if not options:
        if name not in CANDIDATES:
            raise MaskDepthError(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
        what, known = CANDIDATES[name]
        return name, what, known
    changes: dict = {}
    for item in options.split(","):
        key, _, value = item.partition("=")
        if key == "sizes":  # progressive stages, e.g. sizes=64/96
            changes[key] = [int(v) for v in value.split("/")]
        elif key == "last_share":  # of the budget, for the last stage
            changes[key] = float(value)
        elif key not in SEED:
            raise MaskDepthError(f"candidate {name}: unknown option {key!r}")
        else:
            default = SEED[key]
            changes[key] = float(value) if isinstance(default, float) else value
            changes[key] = int(value) if isinstance(default, int) else changes[key]
    return name, ", ".join(f"{k} {v}" for k, v in changes.items()), changes


def curve(runs: list[Path], batch: int) -> list[dict]:
    """Each validation of a run (or of its stages, one after another): images seen, elapsed
    seconds, lr, val IoU and RMSE."""
    points: list[dict] = []
    for run in runs:
        with open(run / "metrics.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        images, elapsed = (points[-1]["images"], points[-1]["elapsed"]) if points else (0, 0.0)
        keep = ("step", "elapsed", "lr", "val_iou", "val_rmse", "images_per_s")
        for row in rows:
            point = {k: float(row[k]) for k in keep}
            point["images"] = images + point["step"] * batch
            point["elapsed"] += elapsed
            points.append(point)
    return points


def train_candidate(name: str, changes: dict, data: str, args: argparse.Namespace) -> dict:
    from maskdepth.train.config import TrainConfig
    from maskdepth.train.stages import LAST_STAGE_SHARE, stage_folder, train_stages

    options = SEED | changes
    last_share = options.pop("last_share", LAST_STAGE_SHARE)
    sizes = options.pop("sizes", [args.size])
    out = args.out / "runs" / f"{Path(data).name}-{args.size}-{name}"
    config = TrainConfig(
        data=data,
        sizes=sizes,
        out=str(out),
        max_minutes=None if args.images else args.minutes,
        steps=args.images // options["batch"] if args.images else None,
        val_every=args.val_every * 16 // options["batch"],  # the same images between checks
        threads=args.threads,
        workers=args.workers,
        seed=args.seed,
        progress=False,
        **options,
    )
    result = train_stages(config, last_share=last_share)
    folders = [stage_folder(out, i, size) for i, size in enumerate(sizes)]
    points = curve(folders if len(sizes) > 1 else [out], options["batch"])
    return {
        "options": options,
        "curve": points,
        "final": {k: result["metrics"][k] for k in ("iou", "rmse", "dice", "count")},
        "best": result["best"],
        "steps": int(points[-1]["images"]) // options["batch"] if points else 0,
        "minutes": points[-1]["elapsed"] / 60 if points else 0.0,
        "images_per_s": result["images_per_s"],
        "last_lr": points[-1]["lr"] if points else None,
    }


def run(args: argparse.Namespace) -> dict:
    path = args.out / "quality.json"
    report = json.loads(path.read_text()) if path.is_file() else {"results": {}}
    report |= {"machine": machine(), "size": args.size, "minutes": args.minutes}
    report["images"] = args.images
    for spec in args.candidates:
        name, what, changes = parse_candidate(spec)
        for label, data in args.data:
            key = f"{label}/{name}"
            if key in report["results"] and not args.again:
                continue
            print(f"{key}: {what} ...", flush=True)
            result = train_candidate(name, changes, data, args)
            report["results"][key] = {"data": label, "name": name, "what": what, **result}
            final = result["final"]
            print(f"    IoU {final['iou']:.4f} RMSE {final['rmse']:.4f}", flush=True)
            write_bytes_atomic(path, (json.dumps(report, indent=1) + "\n").encode())
    return report


def markdown(report: dict, baseline: str) -> str:
    """One table: a row per candidate, per dataset its final val IoU and RMSE and their change
    against ``baseline``, and the images it trained on."""
    m = report["machine"]
    budget = (
        f"{report['images']} images at {report['size']} px (`--steps`)"
        if report.get("images")
        else f"{report['minutes']:g} min at {report['size']} px (`--max-minutes`)"
    )
    results = report["results"]
    datasets = list(dict.fromkeys(r["data"] for r in results.values()))
    names = list(dict.fromkeys(r["name"] for r in results.values()))
    header = "| candidate | what |" + "".join(
        f" {d} images | {d} IoU | {d} RMSE | {d} dIoU | {d} dRMSE |" for d in datasets
    )
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores; torch {m['versions'].get('torch')}. "
        f"Each run: {budget}; "
        f"d: against `{baseline}`.",
        "",
        header,
        "|---|---|" + "---:|" * 5 * len(datasets),
    ]
    for name in names:
        what = next(r["what"] for r in results.values() if r["name"] == name)
        cells = [f"| {name} | {what} |"]
        for data in datasets:
            result, base = results.get(f"{data}/{name}"), results.get(f"{data}/{baseline}")
            if result is None:
                cells.append(" | | | | |")
                continue
            final = result["final"]
            images = result["curve"][-1]["images"] if result["curve"] else 0
            delta = [final[k] - base["final"][k] if base else float("nan") for k in ("iou", "rmse")]
            cells.append(
                f" {images:.0f} | {final['iou']:.4f} | {final['rmse']:.4f} | {delta[0]:+.4f} |"
                f" {delta[1]:+.4f} |"
            )
        lines.append("".join(cells))
    return "\n".join(lines) + "\n"


BOLD = ("seed", "new")  # drawn thicker: the old and the new defaults


def plot(report: dict, path: Path, names: list[str] | None = None) -> None:
    """Rows: datasets; columns: IoU and RMSE against images seen, then against minutes."""
    matplotlib = require("matplotlib", "train", "quality.png")
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    results = [r for r in report["results"].values() if names is None or r["name"] in names]
    datasets = list(dict.fromkeys(r["data"] for r in results))
    fig, axes = plt.subplots(
        len(datasets), 4, figsize=(18, 4 * len(datasets)), squeeze=False, constrained_layout=True
    )
    panels = [("images", "val_iou"), ("images", "val_rmse"), ("elapsed", "val_iou")]
    panels.append(("elapsed", "val_rmse"))
    names = list(dict.fromkeys(r["name"] for r in results))
    colours = plt.get_cmap("tab20")
    for row, data in zip(axes, datasets):
        for ax, (x, y) in zip(row, panels):
            for result in (r for r in results if r["data"] == data):
                index = names.index(result["name"])
                xs = [p[x] / (60 if x == "elapsed" else 1) for p in result["curve"]]
                ax.plot(
                    xs,
                    [p[y] for p in result["curve"]],
                    "o-" if index < 10 else "s--",
                    ms=3,
                    color=colours(index % 20),
                    lw=2.5 if result["name"] in BOLD else 1.2,
                    label=result["name"],
                )
            ax.set_xlabel("minutes" if x == "elapsed" else "training images seen")
            ax.set_ylabel(y.replace("_", " "))
            if y == "val_rmse":
                ax.set_ylim(0, 0.25)
            ax.set_title(f"{data}: {y.replace('val_', 'val ')}")
            ax.grid(alpha=0.3)
        row[0].legend(fontsize=7)
    m = report["machine"]
    budget = f"{report['images']} images" if report.get("images") else f"{report['minutes']:g} min"
    fig.suptitle(f"u2netp-md at {report['size']} px, {budget} per run; {m['cpu']}")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="LABEL=DIR",
        type=lambda s: tuple(s.split("=", 1)) if "=" in s else (Path(s).name, s),
        help="a dataset folder (or 'synth'), as often as needed",
    )
    parser.add_argument("--candidates", type=lambda s: s.split(";"), default=list(CANDIDATES),
                        help="';'-separated: known names or name:key=value,key=value")  # fmt: skip
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=3.0, help="budget of each run")
    parser.add_argument(
        "--images",
        type=int,
        help="instead of --minutes: train on this many images (steps = images / batch), which "
        "takes the machine's speed out of the comparison",
    )
    parser.add_argument("--val-every", type=int, default=25, help="steps of batch 16")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--workers", type=int, default=0, help="loader processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline", default="seed", help="the candidate the others are against")
    parser.add_argument("--again", action="store_true", help="redo results already in the JSON")
    parser.add_argument("--out", type=Path, default=Path("runs/train_quality"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    text = markdown(report, args.baseline)
    print(text)
    write_bytes_atomic(args.out / "quality.md", text.encode())
    plot(report, args.out / "quality.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
