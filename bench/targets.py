"""The targets of issue 9 as a table, checked on the figures `bench/results.json` holds.

Each row: what is measured (a name, `{size}` standing for the largest backlog benched), how it
is computed from one engine's figures, the comparison and the bound. A row whose figures are
missing (a scenario not run yet) is left out of the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

Run = dict[str, Any]  # one engine's figures: scenario name -> its results.json entry
Metric = Callable[[Run], float]


@dataclass(frozen=True)
class Target:
    name: str
    metric: Metric
    comparison: Literal[">=", "<="]
    bound: float


def at(*path: str) -> Metric:
    """The figure at `path`, e.g. at("push", "ratio_median")."""

    def metric(run: Run) -> float:
        node: Any = run
        for key in path:
            node = node[key]
        value: float = node
        return value

    return metric


def ratio(numerator: Metric, denominator: Metric) -> Metric:
    return lambda run: numerator(run) / denominator(run)


def largest_backlog(run: Run) -> tuple[str, dict[str, Any]]:
    """The largest backlog size benched and its figures; KeyError without it or without 1k."""
    sizes = run.get("backlog", {}).get("sizes", {})
    largest = max((int(size) for size in sizes), default=0)
    if not largest or "1000" not in sizes:
        raise KeyError("backlog")
    label = f"{largest // 1000}k" if largest < 10**6 else f"{largest // 10**6}M"
    return label, sizes[str(largest)]


def over_1k(key: str) -> Metric:
    """A per-delivery figure at the largest backlog over the same figure at 1k pending."""
    return lambda run: largest_backlog(run)[1][key] / run["backlog"]["sizes"]["1000"][key]


def at_largest(key: str) -> Metric:
    return lambda run: largest_backlog(run)[1][key]


RSS_KEYS = ("rss_mib_seeding", "rss_mib_ready", "rss_mib_after_1k", "rss_mib_after_10k")


def highest_rss(run: Run) -> float:
    """The highest VmRSS at the largest backlog: seeding, ready, after 1k and 10k pushes."""
    figures = largest_backlog(run)[1]
    return max(figures[key]["VmRSS"] for key in RSS_KEYS if key in figures)


TARGETS: tuple[Target, ...] = (
    Target(
        "publish-single / framework ceiling (x)",
        ratio(at("publish-single", "events_per_s"), at("ceiling", "single", "events_per_s")),
        ">=",
        0.8,
    ),
    Target(
        "publish-single commits per 1,000 events",
        at("publish-single", "commits_per_1000_events"),
        "<=",
        20,
    ),
    Target(
        "publish-batch / NATS JetStream acked publishes (x)",
        ratio(at("publish-batch", "events_per_s"), at("nats", "events_per_s")),
        ">=",
        1.0,
    ),
    Target("push / bare aiohttp loop (x)", at("push", "ratio_median"), ">=", 0.7),
    Target(
        "per-delivery CPU at {size} / at 1k pending (x)", over_1k("cpu_ms_per_delivery"), "<=", 1.2
    ),
    Target(
        "per-delivery wall time at {size} / at 1k pending (x)",
        over_1k("per_delivery_ms"),
        "<=",
        1.2,
    ),
    Target(
        "RSS with {size} pending (MiB, highest of seeding, start, first 10k pushes)",
        highest_rss,
        "<=",
        300,
    ),
    Target("start-up with {size} pending (s)", at_largest("startup_seconds"), "<=", 5.0),
    Target("idle publish-to-push p50 (ms)", at("e2e", "idle", "p50_ms"), "<=", 5.0),
)


def row_name(target: Target, run: Run) -> str:
    if "{size}" not in target.name:
        return target.name
    return target.name.format(size=largest_backlog(run)[0])


def targets(results: dict[str, Any], engine: str) -> list[dict[str, Any]]:
    """Every target whose figures are at hand: value, bound, met or not, margin."""
    run = results.get(engine, {})
    checks = []
    for target in TARGETS:
        try:
            measured = target.metric(run)
            name = row_name(target, run)
        except (KeyError, TypeError, ZeroDivisionError):
            continue
        higher_is_better = target.comparison == ">="
        checks.append(
            {
                "target": name,
                "value": measured,
                "bound": target.bound,
                "higher_is_better": higher_is_better,
                "met": measured >= target.bound if higher_is_better else measured <= target.bound,
                "ratio_to_bound": measured / target.bound if target.bound else float("inf"),
            }
        )
    return checks


def print_targets(checks: list[dict[str, Any]]) -> None:
    print("\ntargets:")
    for item in checks:
        status = "met" if item["met"] else "MISSED"
        print(
            f"  {status:6} {item['target']}: {item['value']:.3g} "
            f"({'>=' if item['higher_is_better'] else '<='} {item['bound']:g}; "
            f"{item['ratio_to_bound']:.2f}x the bound)"
        )
