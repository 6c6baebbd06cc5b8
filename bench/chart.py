"""`bench/results.png` from `bench/results.json`: throughput, latency and backlog per scenario.

.venv/bin/python bench/chart.py [--engine hypercorn]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent


def _get(run: dict[str, Any], *path: str) -> Any:
    node: Any = run
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def _bars(axis: Any, labels: list[str], values: list[float], colors: list[str], unit: str) -> None:
    positions = range(len(labels))
    bars = axis.barh(list(positions), values, color=colors)
    axis.set_yticks(list(positions), labels)
    axis.invert_yaxis()
    axis.set_xscale("log")
    for bar, value in zip(bars, values, strict=True):
        axis.text(
            bar.get_width() * 1.05,
            bar.get_y() + bar.get_height() / 2,
            f"{value:,.0f} {unit}" if value >= 100 else f"{value:.2g} {unit}",
            va="center",
            fontsize=8,
        )
    axis.set_xlim(min(values) / 3, max(values) * 8)
    axis.grid(axis="x", which="both", alpha=0.3)


GATEWAY, REFERENCE, PEER = "#1f77b4", "#aaaaaa", "#ff7f0e"
RSS_KEYS = ("rss_mib_seeding", "rss_mib_ready", "rss_mib_after_1k", "rss_mib_after_10k")


def draw(results: dict[str, Any], engine: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = results.get(engine, {})
    throughput: list[tuple[str, float | None, str]] = [
        ("publish-single (gateway)", _get(run, "publish-single", "events_per_s"), GATEWAY),
        ("  framework ceiling, single", _get(run, "ceiling", "single", "events_per_s"), REFERENCE),
        ("publish-batch x100 (gateway)", _get(run, "publish-batch", "events_per_s"), GATEWAY),
        ("  framework ceiling, batch", _get(run, "ceiling", "batch", "events_per_s"), REFERENCE),
        ("  NATS JetStream acked (nats-py)", _get(run, "nats", "events_per_s"), PEER),
        ("push (gateway)", _get(run, "push", "gateway", "events_per_s"), GATEWAY),
        ("  bare aiohttp loop", _get(run, "push", "bare", "aiohttp", "events_per_s"), REFERENCE),
        ("  bare httpx loop", _get(run, "push", "bare", "httpx", "events_per_s"), REFERENCE),
        ("  subscriber alone (wrk)", _get(run, "push", "sink_alone", "requests_per_s"), REFERENCE),
    ]
    latency: list[tuple[str, float | None, float | None]] = [
        (
            "publish-single",
            _get(run, "publish-single", "p50_ms"),
            _get(run, "publish-single", "p99_ms"),
        ),
        (
            "  ceiling, single",
            _get(run, "ceiling", "single", "p50_ms"),
            _get(run, "ceiling", "single", "p99_ms"),
        ),
        (
            "publish-batch (per request)",
            _get(run, "publish-batch", "p50_ms"),
            _get(run, "publish-batch", "p99_ms"),
        ),
        ("  NATS acked publish", _get(run, "nats", "p50_ms"), _get(run, "nats", "p99_ms")),
        (
            "publish-to-push, idle",
            _get(run, "e2e", "idle", "p50_ms"),
            _get(run, "e2e", "idle", "p99_ms"),
        ),
        (
            "publish-to-push, half max rate",
            _get(run, "e2e", "half_rate", "p50_ms"),
            _get(run, "e2e", "half_rate", "p99_ms"),
        ),
    ]
    sizes = _get(run, "backlog", "sizes") or {}

    figure, axes = plt.subplots(3, 1, figsize=(10, 13), height_ratios=[1.3, 1.0, 0.8])
    figure.suptitle(
        f"ce-gateway bench ({engine}, full fsync, 64 connections, 127.0.0.1, 2 cores)",
        fontsize=12,
    )

    shown = [(label, value, color) for label, value, color in throughput if value]
    if shown:
        _bars(axes[0], [s[0] for s in shown], [s[1] for s in shown], [s[2] for s in shown], "/s")
    axes[0].set_title("Throughput, events per second (log scale)", fontsize=10)

    shown_latency = [(label, p50, p99) for label, p50, p99 in latency if p50 and p99]
    axis = axes[1]
    if shown_latency:
        positions = list(range(len(shown_latency)))
        p50s = [item[1] for item in shown_latency]
        p99s = [item[2] for item in shown_latency]
        axis.barh([p + 0.2 for p in positions], p99s, height=0.4, color="#d62728", label="p99")
        axis.barh([p - 0.2 for p in positions], p50s, height=0.4, color=GATEWAY, label="p50")
        for position, p50, p99 in zip(positions, p50s, p99s, strict=True):
            axis.text(p50 * 1.05, position - 0.2, f"{p50:.1f} ms", va="center", fontsize=8)
            axis.text(p99 * 1.05, position + 0.2, f"{p99:.1f} ms", va="center", fontsize=8)
        axis.set_yticks(positions, [item[0] for item in shown_latency])
        axis.invert_yaxis()
        axis.set_xscale("log")
        axis.set_xlim(min(p50s) / 3, max(p99s) * 8)
        axis.legend(loc="lower right", fontsize=8)
        axis.grid(axis="x", which="both", alpha=0.3)
    axis.set_title("Latency, ms (log scale)", fontsize=10)

    axis = axes[2]
    if sizes:
        pending = sorted(int(size) for size in sizes)
        rows = [sizes[str(size)] for size in pending]
        series = [
            ("wall ms per delivery", [row["per_delivery_ms"] for row in rows], GATEWAY, "{:.2f}"),
            (
                "CPU ms per delivery",
                [row["cpu_ms_per_delivery"] for row in rows],
                "#9467bd",
                "{:.2f}",
            ),
            ("start-up, s", [row["startup_seconds"] for row in rows], PEER, "{:.1f}s"),
            (
                "peak RSS, GB (MiB / 1000)",
                [max(row[key]["VmRSS"] for key in RSS_KEYS if key in row) / 1000 for row in rows],
                "#2ca02c",
                "{:.2f}",
            ),
        ]
        width = 0.2
        for offset, (label, values, color, text) in enumerate(series):
            positions = [p + (offset - 1.5) * width for p in range(len(pending))]
            axis.bar(positions, values, width, label=label, color=color)
            for position, value in zip(positions, values, strict=True):
                axis.text(position, value, text.format(value), ha="center", va="bottom", fontsize=8)
        axis.set_xticks(range(len(pending)), [f"{size:,} pending" for size in pending])
        top = max(max(values) for _, values, _, _ in series)
        axis.set_ylim(0, top * 1.35)
        axis.legend(loc="upper left", fontsize=8, ncols=2)
        axis.grid(axis="y", alpha=0.3)
    axis.set_title(
        "Backlog: per-delivery wall and CPU time (first 1,000 pushes), start-up, peak RSS",
        fontsize=10,
    )

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="hypercorn")
    parser.add_argument("--results", type=Path, default=BENCH / "results.json")
    parser.add_argument("--output", type=Path, default=BENCH / "results.png")
    options = parser.parse_args()
    draw(json.loads(options.results.read_text()), options.engine, options.output)


if __name__ == "__main__":
    main()
