"""`maskdepth demo`: the whole story on this machine with no data, one timed stage after another.

A stage that fails is reported with its reason and the stages that do not need it still run.
Today the story is the data: synthesise, describe, picture. Training, export and the benchmark
join as their issues land.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from maskdepth.runtime.errors import MaskDepthError, MissingDependencyError
from maskdepth.runtime.image import write_bytes_atomic


def _stage(name: str, log: list[dict], work: Callable[[], str]) -> bool:
    print(f"[{len(log) + 1}] {name} ...", flush=True)
    start = time.perf_counter()
    try:
        detail, ok = work(), True
    except (MaskDepthError, MissingDependencyError, FileNotFoundError, OSError) as exc:
        detail, ok = f"failed: {exc}", False
    except Exception as exc:  # a bug: keep going, but keep the whole story for the report
        detail, ok = f"failed: {type(exc).__name__}: {exc}\n{traceback.format_exc()}", False
    seconds = time.perf_counter() - start
    log.append({"stage": name, "ok": ok, "seconds": round(seconds, 2), "detail": detail})
    print(f"    {'done' if ok else 'FAILED'} in {seconds:.1f} s: {detail.splitlines()[0]}")
    return ok


def run_demo(out: str | Path, count: int = 200) -> int:
    """Run every stage under ``out`` and write ``report.md``; exit code 1 if any stage failed."""
    from maskdepth.train.data.inspect import describe, show
    from maskdepth.train.data.seed_layout import SeedLayoutSource
    from maskdepth.train.data.synth import synthesize

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data, picture, log = out / "data", out / "samples.png", []
    picture.unlink(missing_ok=True)  # a failed run must not show the last run's picture
    info: dict = {}

    def make_data() -> str:
        result = synthesize(data, count, size=224, seed=0, overwrite=True)
        return f"{result['scenes']} scenes at {result['scenes_per_s']:.1f} scenes/s in {data}"

    def inspect() -> str:
        info.update(describe(SeedLayoutSource(data)))
        return f"{info['scenes']} scenes, {info['backgrounds']} backgrounds"

    def draw() -> str:
        return str(show(SeedLayoutSource(data), picture, count=6))

    if _stage("synthesise a dataset", log, make_data):
        _stage("describe it", log, inspect)
        _stage("draw a picture of the data", log, draw)
    report = _write_report(out, log, info, picture, count)
    print(f"report: {report}")
    return 0 if all(stage["ok"] for stage in log) else 1


def _write_report(out: Path, log: list[dict], info: dict, picture: Path, count: int) -> Path:
    lines = ["# maskdepth demo", "", "| stage | result | seconds |", "|---|---|---|"]
    for stage in log:
        verdict = "ok" if stage["ok"] else "**failed**"
        lines.append(f"| {stage['stage']} | {verdict} | {stage['seconds']} |")
    for stage in log:
        if not stage["ok"]:
            lines += ["", f"## {stage['stage']} failed", "", "```", stage["detail"], "```"]
    if info:
        from maskdepth.train.data.inspect import format_info

        lines += ["", "## The data", "", "```", format_info(info), "```"]
    if picture.is_file():
        lines += ["", f"![bg | scene | mask | depth]({picture.name})"]
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        f"maskdepth data synth --out {out / 'data'} --count {count} --overwrite",
        f"maskdepth data info {out / 'data'}",
        f"maskdepth data show {out / 'data'} --out {picture} --count 6",
        "```",
        "",
        "Training, export and the latency/parity benchmark join this report as they land.",
        "",
    ]
    path = out / "report.md"
    write_bytes_atomic(path, "\n".join(lines).encode())
    write_bytes_atomic(out / "stages.json", json.dumps(log, indent=2).encode())
    return path
