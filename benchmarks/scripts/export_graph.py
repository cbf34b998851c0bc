"""What the static export removed: u2netp-md exported with its upsampling traced from sizes (a
Shape -> Slice -> Concat chain computing every Resize's size, the export before) and with
constant scales (the export now), node counts by type and latency side by side.

    python -m maskdepth.benchmarks.scripts.export_graph --out runs/export_graph [--size 224]

Both files come from the same seeded random-weight model, as fp32 and as INT8 for each
``--int8-target``; each is timed through one onnxruntime session, the calls interleaved so that
the machine's drift touches every file alike, and set against the fp32 floor (the graph's FLOPs
at the best sgemm rate measured in the same run). Writes ``export_graph.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from maskdepth.benchmarks.exports import export_files
from maskdepth.benchmarks.floor import floor_ms, onnx_flops, sgemm_gflops
from maskdepth.benchmarks.measure import publish, time_files


def run(args: argparse.Namespace) -> dict:
    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        files = export_files(Path(tmp), args.size, args.int8_target)
        nodes = {n: dict(Counter(x.op_type for x in onnx.load(str(p)).graph.node))
                 for n, p in files.items()}  # fmt: skip
        gflop = onnx_flops(files["fp32, scales (now)"]) / 1e9
        p50 = time_files(files, args.size, args.threads, args.repeats)
    rates = sgemm_gflops(args.threads)
    floor = floor_ms(gflop, max(rates.values()))
    rows = [{"file": name, "nodes": sum(nodes[name].values()), "by_type": nodes[name],
             "p50_ms": p50[name], "x_floor": p50[name] / floor} for name in files]  # fmt: skip
    return {"size": args.size, "threads": args.threads, "gflop": gflop, "sgemm_gflops": rates,
            "floor_ms": floor, "rows": rows}  # fmt: skip


def markdown(report: dict) -> str:
    rates = ", ".join(f"{k} {v:.0f}" for k, v in report["sgemm_gflops"].items())
    lines = [
        f"u2netp-md at {report['size']}x{report['size']}, batch 1, {report['threads']} threads; "
        f"floor {report['gflop']:.2f} GFLOP / best sgemm ({rates} GFLOP/s) = "
        f"{report['floor_ms']:.1f} ms",
        "",
        "| file | nodes | Shape | Slice | Concat | Resize | p50 ms | x floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        ops = row["by_type"]
        counts = " | ".join(str(ops.get(k, 0)) for k in ("Shape", "Slice", "Concat", "Resize"))
        lines.append(f"| {row['file']} | {row['nodes']} | {counts} | {row['p50_ms']:.1f} | "
                     f"{row['x_floor']:.2f} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per file")
    parser.add_argument("--int8-target", nargs="*", default=["tensorrt", "cpu"])
    args = parser.parse_args(argv)
    report = run(args)
    publish(args.out / "export_graph", report, markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
