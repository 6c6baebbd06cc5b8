"""Figure helpers of `bench/run.py`: what a scenario's raw samples become in results.json.

Functions over wrk results, metric scrapes, arrival times and py-spy's output (the processes
and loads that produce them are in `bench/harness.py` and `bench/loads.py`), and the line the
run logs for each scenario's figures.
"""

from __future__ import annotations

import collections
from typing import Any

import harness as h


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, and every round's headline figures (the spread)."""
    ordered = sorted(rounds, key=lambda figures: figures["events_per_s"])
    keys = ("events_per_s", "p50_ms", "p99_ms", "commits_per_1000_events", "server_cpu_share")
    return {
        **ordered[len(ordered) // 2],
        "rounds": [{key: r[key] for key in keys if key in r} for r in rounds],
    }


def wrk_figures(result: h.WrkResult) -> dict[str, Any]:
    return {
        "requests_ok": result.ok,
        "requests_failed": result.requests - result.ok,
        "errors": {k: v for k, v in result.errors.items() if v},
        "events": result.events,
        "seconds": result.seconds,
        "requests_per_s": result.rate,
        "events_per_s": result.event_rate,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "generator_cpu_share": result.cpu_share,
    }


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the gateway's own histograms saw between two scrapes: mean publish time, mean
    commit time (fsync included) and mean operations per commit."""

    def mean(name: str) -> float | None:
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
        return total / count if count else None

    publish = mean("cegateway_publish_duration_seconds")
    commit = mean("cegateway_store_commit_duration_seconds")
    return {
        "publish_mean_ms": None if publish is None else publish * 1000,
        "commit_mean_ms": None if commit is None else commit * 1000,
        "operations_per_commit": mean("cegateway_store_commit_batch_size"),
    }


def arrival_rates(times: list[float], since: float | None) -> dict[str, Any]:
    """Push rate seen by the subscriber: over all arrivals, and over the last 90 %."""
    count = len(times)
    figures: dict[str, Any] = {"arrived": count}
    if count < 2:
        return figures
    figures["events_per_s"] = (count - 1) / (times[-1] - times[0])
    tenth = count // 10
    figures["steady_events_per_s"] = (count - 1 - tenth) / (times[-1] - times[tenth])
    if since is not None:
        figures["all_arrived_after_ready_s"] = times[-1] - since
    return figures


def per_delivery_ms(first: tuple[float, int], last: tuple[float, int]) -> float:
    """CPU milliseconds per delivery between two (CPU seconds, arrivals) samples."""
    return 1000 * (last[0] - first[0]) / max(1, last[1] - first[1])


def latency_figures(latencies: list[float], expected: int) -> dict[str, Any]:
    return {
        "samples": len(latencies),
        "missing": expected - len(latencies),
        "p50_ms": h.percentile(latencies, 0.50),
        "p99_ms": h.percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else None,
    }


# Frames every sample of a thread passes through: they say nothing about where time goes.
PLUMBING = {
    "<module>",
    "main",
    "_serve",
    "run",
    "Runner.run",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop._run_once",
    "Handle._run",
    "Thread.run",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
}


def summarize_profile(raw: str, top: int = 12) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: the functions with most samples on top of the stack
    (self) and anywhere in it (inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [short_frame(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"samples": 0}
    ours = [
        (name, count)
        for name, count in inclusive.most_common()
        if "(gateway/" in name and name.split(" (")[0] not in PLUMBING
    ]
    return {
        "samples": total,
        "gateway_inclusive": [(name, round(100 * count / total, 1)) for name, count in ours[:top]],
        "self": [(name, round(100 * count / total, 1)) for name, count in own.most_common(top)],
        "inclusive": [
            (name, round(100 * count / total, 1))
            for name, count in inclusive.most_common(top * 4)
            if name.split(" (")[0] not in PLUMBING
        ][:top],
    }


def short_frame(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module.py)`; idle frames dropped."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        module = "/".join(parts[parts.index("site-packages") + 1 :][:2])
    elif "gateway" in parts:
        module = "/".join(parts[parts.index("gateway") :])
    else:
        module = parts[-1]
    return f"{name} ({module})"


def summary_line(name: str, figures: dict[str, Any]) -> str:
    if name in ("publish-single", "publish-batch"):
        return (
            f"{figures['events_per_s']:,.0f} events/s, p50 {figures['p50_ms']:.1f} ms, p99 "
            f"{figures['p99_ms']:.1f} ms, {figures['commits_per_1000_events']:.1f} commits per "
            f"1,000 events, RSS {figures['rss_mib']['VmRSS']:.0f} MiB, wrk CPU "
            f"{figures['generator_cpu_share']:.0%}"
        )
    if name == "ceiling":
        single, batch = figures["single"], figures["batch"]
        return (
            f"single {single['events_per_s']:,.0f} events/s (p50 {single['p50_ms']:.1f} ms), "
            f"batch {batch['events_per_s']:,.0f} events/s"
        )
    if name == "nats":
        return (
            f"{figures['rate']:,.0f} acked publishes/s, p50 {figures['p50_ms']:.1f} ms, "
            f"nats-py CPU {figures['generator_cpu_share']:.0%}"
        )
    if name == "push":
        gateway, bare = figures["gateway"], figures["bare"]
        ratios = ", ".join(f"{one['ratio']:.3f}" for one in figures["rounds"])
        return (
            f"ratios {ratios}; median round: gateway {gateway['events_per_s']:,.0f}/s, "
            f"bare aiohttp {bare['aiohttp']['events_per_s']:,.0f}/s, bare httpx "
            f"{bare['httpx'].get('events_per_s', 0):,.0f}/s, sink alone "
            f"{figures['sink_alone']['requests_per_s']:,.0f}/s"
        )
    if name == "e2e":
        idle, half = figures["idle"], figures["half_rate"]
        return (
            f"idle p50 {idle['p50_ms']:.2f} ms p99 {idle['p99_ms']:.2f} ms; at "
            f"{half['target_rate']:,.0f}/s p50 {half['p50_ms']:.2f} ms p99 {half['p99_ms']:.2f} ms"
        )
    if name == "backlog":
        return "; ".join(
            f"{size}: {run['per_delivery_ms']:.3f} ms/delivery, start-up "
            f"{run['startup_seconds']:.2f} s, RSS {run['rss_mib_ready']['VmRSS']:.0f} MiB"
            for size, run in figures["sizes"].items()
        )
    if name == "profile":
        return "; ".join(
            f"{what}: " + ", ".join(f"{fn} {share}%" for fn, share in prof.get("self", [])[:3])
            for what, prof in figures.items()
            if isinstance(prof, dict) and "samples" in prof
        )
    return ""
