"""Where an exported graph spends its time: onnxruntime's own profiler over the static export of
u2netp-md, time per operator type (summed over the graph, per call) and its share of the whole.

    python -m maskdepth.benchmarks.scripts.onnx_profile --out runs/onnx_profile [--size 224]

The files are the ones ``export_graph`` times (seeded random weights, fp32 and INT8 per
``--int8-target``): what is not Conv (or QLinearConv/ConvInteger) is what the export could still
remove. Writes ``onnx_profile.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from maskdepth.benchmarks.exports import export_files
from maskdepth.benchmarks.measure import publish


def profile(path: Path, size: int, threads: int, calls: int) -> dict[str, dict]:
    """Kernel ms per call by operator type and by block of the network."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    rng = np.random.default_rng(1)
    feed = {n: rng.random((1, 3, size, size), dtype=np.float32) for n in ("bg", "scene")}
    session = _profiled(path, options, feed, calls)
    events = json.loads(Path(session.end_profiling()).read_text())
    heads = _fusion_inputs(path)
    kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    return {
        "ops": _sum(kernels, lambda e: e["args"]["op_name"], calls),
        "blocks": _sum(kernels, lambda e: _block(e["name"].removesuffix("_kernel_time"), heads),
                       calls),
    }  # fmt: skip


def _sum(kernels: list[dict], key, calls: int) -> dict[str, dict[str, float]]:
    """Per key: distinct nodes, kernel ms per call."""
    total_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    for event in kernels:
        total_us[key(event)] += event["dur"]
        nodes[key(event)].add(event["name"])
    return {k: {"nodes": len(nodes[k]), "ms": total_us[k] / 1e3 / calls} for k in total_us}


def _fusion_inputs(path: Path) -> set[str]:
    """Names of the nodes that feed each decoder's 1x1 fusion (its Concat of the six sides)."""
    import onnx

    graph = onnx.load(str(path)).graph
    feeds = {i for node in graph.node if "/fuse/" in node.name for i in node.input}
    return {node.name for node in graph.node if set(node.output) & feeds}


def _block(name: str, heads: set[str]) -> str:
    """The network block a profiled node belongs to. onnxruntime renames what it fuses: the
    1x1 fusion with its sigmoid is named after the output (``mask``/``depth``) it writes."""
    if name in heads or re.match(r"(mask|depth)(_nchwc)?$", name) or "/fuse/" in name:
        return "fusion head (Concat of the sides + 1x1 conv)"
    found = re.search(r"/model/(encoder|decoders\.\d)/(stages\.\d|sides)", name)
    if found:
        return f"{found[1]} {found[2]}"
    found = re.search(r"/model/(encoder|decoders\.\d)/", name)
    return f"{found[1]} between stages (upsample, concat)" if found else "other (layout, I/O)"


def _profiled(path: Path, options, feed: dict, calls: int):
    """A fresh profiled session that has run ``calls`` times after its own warm-up.

    onnxruntime cannot restart a profile, so the warm-up calls are given to a session whose
    profile is thrown away, and the kernels are warm (same process) when this one runs."""
    import onnxruntime as ort

    warm = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(3):
        warm.run(None, feed)
    warm.end_profiling()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    for _ in range(calls):
        session.run(None, feed)
    return session


def run(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        files = export_files(Path(tmp), args.size, args.int8_target, forms=("scales (now)",))
        by_file = {name: profile(path, args.size, args.threads, args.calls)
                   for name, path in files.items()}  # fmt: skip
    return {"size": args.size, "threads": args.threads, "calls": args.calls, "files": by_file}


def markdown(report: dict) -> str:
    lines = [f"u2netp-md at {report['size']}x{report['size']}, batch 1, {report['threads']} "
             f"threads; onnxruntime profiler, kernel time per call over {report['calls']} calls",
             ""]  # fmt: skip
    for name, found in report["files"].items():
        for kind in ("ops", "blocks"):
            lines += _table(f"{name}, by {'operator' if kind == 'ops' else 'block'}", found[kind])
    return "\n".join(lines)


def _table(title: str, rows: dict[str, dict[str, float]]) -> list[str]:
    total = sum(row["ms"] for row in rows.values())
    lines = [f"**{title}**: {total:.1f} ms of kernels per call", "",
             "| what | nodes | ms per call | share |", "|---|---:|---:|---:|"]  # fmt: skip
    for key, row in sorted(rows.items(), key=lambda item: -item[1]["ms"]):
        lines.append(f"| {key} | {row['nodes']} | {row['ms']:.2f} | "
                     f"{100 * row['ms'] / total:.1f}% |")  # fmt: skip
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--calls", type=int, default=10, help="profiled calls per file")
    parser.add_argument("--int8-target", nargs="*", default=["cpu"])
    args = parser.parse_args(argv)
    report = run(args)
    publish(args.out / "onnx_profile", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
