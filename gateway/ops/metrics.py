"""Prometheus metrics (DESIGN "Metrics"), on a registry of the app's own: the instruments.

Rates and latencies measured in this process are prometheus-client counters and histograms,
which the receiver, the store's committer and the delivery lanes write to. Durable figures are
read by `gateway.ops.collector`: the store's reads may wait (`base.Store` is async) and a
Prometheus collector cannot, so the `/metrics` route awaits `Metrics.refresh()` first, which
reads them into a snapshot the collector then renders. Labels are only configured topic and
subscription names and small fixed sets.
"""

from __future__ import annotations

from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

# "error": nothing could be recorded (a failure inside the gateway); the attempt is made again.
OUTCOMES = ("acked", "retried", "deadlettered", "dropped", "error")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
CONTENT_TYPE = CONTENT_TYPE_LATEST


# `*_created` series double the series count and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ScrapeCollector(Collector, Protocol):
    """A collector whose figures are read (and may be waited for) before each scrape."""

    async def refresh(self) -> None: ...


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.published = Counter(
            "cegateway_events_published",
            "Events accepted and stored.",
            ["topic"],
            registry=registry,
        )
        self.duplicates = Counter(
            "cegateway_events_duplicate",
            "Publishes of an event already held (not stored).",
            ["topic"],
            registry=registry,
        )
        self.publish_duration = Histogram(
            "cegateway_publish_duration_seconds",
            "Time to answer a publish, commit included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.deliveries = Counter(
            "cegateway_deliveries",
            "Push attempts by what was decided, and by what came back (code: 2xx, 3xx, 4xx, "
            "5xx, timeout, connect, egress, other).",
            ["subscription", "outcome", "code"],
            registry=registry,
        )
        self.delivery_duration = Histogram(
            "cegateway_delivery_duration_seconds",
            "Time of one push attempt.",
            ["subscription"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.commit_batch = Histogram(
            "cegateway_store_commit_batch_size",
            "Write operations per commit (group commit).",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )
        self.commit_duration = Histogram(
            "cegateway_store_commit_duration_seconds",
            "Time of one commit, fsync included.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.loop_lag = 0.0
        self._watched: list[ScrapeCollector] = []
        # Each topic's (published, duplicates) series, looked up once: `labels()` costs about
        # as much as the increment itself, on every publish.
        self._publish_series: dict[str, tuple[Counter, Counter]] = {}

    def count_publish(self, topic: str, accepted: int, duplicates: int) -> None:
        series = self._publish_series.get(topic)
        if series is None:
            series = (self.published.labels(topic), self.duplicates.labels(topic))
            self._publish_series[topic] = series
        series[0].inc(accepted)
        if duplicates:
            series[1].inc(duplicates)

    def observe_commit(self, operations: int, seconds: float) -> None:
        self.commit_batch.observe(operations)
        self.commit_duration.observe(seconds)

    def watch(self, collector: ScrapeCollector) -> None:
        """Serve `collector`'s figures too (`gateway.ops.collector`: read at scrape time)."""
        self.registry.register(collector)
        self._watched.append(collector)

    async def refresh(self) -> None:
        """Let the watched collectors read what the next render shows (before each scrape)."""
        for collector in self._watched:
            await collector.refresh()

    def render(self) -> bytes:
        return generate_latest(self.registry)
