"""`maskdepth bench`'s files people read: bench.md (one table row per bench row, under the
machine's description) and bench.png (latency per image against IoU)."""

from __future__ import annotations

from pathlib import Path

from maskdepth.benchmarks.measure import describe


def jsonable(value):
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return str(value) if isinstance(value, Path) else value


def _rates(rates: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items()) or "not measured"


def _fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def to_markdown(report: dict) -> str:
    info = report["machine"]
    samples = report.get("samples")
    lines = [
        describe(info),
        "",
        *([f"Held-out samples: {', '.join(samples)}.", ""] if samples else []),
        "| model | format | precision | backend | provider | device | MB | batch | mean ms "
        "| p50 | p90 | p99 | images/s | GFLOP | x floor | IoU | dIoU | RMSE | dRMSE "
        "| max abs diff | status |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:"
        "|---:|---|",
    ]
    for row in report["rows"]:
        lat = row["latency"]
        lines.append(
            f"| {Path(row['model']).name} | {row['format']} | {row['precision']} | "
            f"{row['backend']} | {row['provider']} | {row['device']} | {row['mb']:.1f} | "
            f"{row['batch']} | {_fmt(lat.get('mean_ms'), '.2f')} | "
            f"{_fmt(lat.get('p50_ms'), '.2f')} | "
            f"{_fmt(lat.get('p90_ms'), '.2f')} | {_fmt(lat.get('p99_ms'), '.2f')} | "
            f"{_fmt(lat.get('images_per_s'), '.1f')} | {_fmt(row.get('gflop'), '.1f')} | "
            f"{_fmt(lat.get('x_floor'), '.2f')} | {_fmt(row['iou'], '.4f')} | "
            f"{_fmt(row['d_iou'], '+.4f')} | {_fmt(row['rmse'], '.4f')} | "
            f"{_fmt(row['d_rmse'], '+.4f')} | {_fmt(row['max_abs'], '.2g')} | {row['status']} |"
        )
    lines.append("")
    lines.append(
        "Latency: the model call alone on a prepared batch, after warm-up "
        "(ms per batch; images/s = batch / mean). Floor (CPU rows of ONNX files): the file's "
        "FLOPs, counted from its graph, at the best sgemm rate measured in this run "
        f"({_rates(info.get('sgemm_gflops', {}))}); x floor = mean / floor. Accuracy: every "
        "held-out sample, once."
    )
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> Path | None:
    """Latency per image against IoU, one labelled point per row."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    rows = [r for r in report["rows"] if r["latency"] and r["iou"] is not None]
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    names = list(dict.fromkeys(f"{Path(r['model']).name} ({r['backend']})" for r in rows))
    colours = {name: plt.get_cmap("tab10")(i % 10) for i, name in enumerate(names)}
    markers = ["o", "s", "^", "D", "v", "P"]
    batches = sorted({r["batch"] for r in rows})
    for row in rows:
        name = f"{Path(row['model']).name} ({row['backend']})"
        marker = markers[batches.index(row["batch"]) % len(markers)]
        ax.scatter(
            row["latency"]["mean_ms"] / row["batch"],
            row["iou"],
            s=70,
            marker=marker,
            color=colours[name],
            edgecolors="black",
            linewidths=0.5,
        )
    # Legend: colour = model file and backend, marker = batch size.
    handles = [plt.Line2D([], [], ls="", marker="o", color=colours[n], label=n) for n in names]
    handles += [
        plt.Line2D(
            [], [], ls="", marker=markers[i % len(markers)], color="grey", label=f"batch {b}"
        )
        for i, b in enumerate(batches)
    ]
    ax.legend(handles=handles, fontsize=8, loc="best", framealpha=0.9)
    ax.set_xlabel("latency per image (ms): mean time per call / batch; left is faster")
    ax.set_ylabel("mask IoU on the held-out samples (higher is better)")
    ax.set_title(
        f"maskdepth bench: {report['machine']['cpu']}, "
        f"{report['machine']['cores']} cores, GPU: {report['machine']['gpu']}",
        fontsize=10,
    )
    ax.set_xlim(left=0)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
