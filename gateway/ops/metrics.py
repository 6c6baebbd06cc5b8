"""Prometheus metrics (DESIGN "Metrics"), on a registry of the app's own.

Rates and latencies measured in this process are prometheus-client counters and histograms.
Durable figures (pending, oldest pending age, dead-lettered and dropped by reason, dead-letter
depth) come from counters the store keeps in the same transactions as the changes they count:
a scrape reads a few keys per subscription and topic, never scans events, and the totals
survive restarts. Labels are only configured topic and subscription names and small fixed sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from gateway import __version__

if TYPE_CHECKING:
    from gateway.delivery.engine import Engine
    from gateway.ops.health import Readiness
    from gateway.resources.subscriptions import SubscriptionRegistry
    from gateway.resources.topics import TopicRegistry
    from gateway.store.lmdb.store import LmdbStore

DEAD_LETTER_REASONS = ("exhausted", "permanent", "expired")
DROP_REASONS = ("exhausted", "permanent", "expired", "missing", "purged", "redriven")
# "error": nothing could be recorded (a failure inside the gateway); the attempt is made again.
OUTCOMES = ("acked", "retried", "deadlettered", "dropped", "error")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)
CONTENT_TYPE = CONTENT_TYPE_LATEST


# `*_created` series double the series count and tell an operator nothing here.
disable_created_metrics()  # type: ignore[no-untyped-call]


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

    def watch(self, sources: Sources) -> None:
        self.registry.register(GatewayCollector(sources, lambda: self.loop_lag))

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class Sources:
    """What the scrape-time collector reads."""

    store: LmdbStore
    topics: TopicRegistry
    subscriptions: SubscriptionRegistry
    engine: Engine
    readiness: Readiness
    now: Callable[[], float]


class GatewayCollector(Collector):
    def __init__(self, sources: Sources, loop_lag: Callable[[], float]) -> None:
        self._sources = sources
        self._loop_lag = loop_lag

    def collect(self) -> Iterator[Metric]:
        yield from self._subscription_metrics()
        yield from self._topic_metrics()
        yield from self._store_metrics()
        yield from self._process_metrics()

    def _subscription_metrics(self) -> Iterator[Metric]:
        sources = self._sources
        pending = _gauge("cegateway_deliveries_pending", "Deliveries not yet settled.")
        oldest = _gauge(
            "cegateway_oldest_pending_age_seconds", "Age of the oldest pending delivery."
        )
        dead = CounterMetricFamily(
            "cegateway_deadlettered",
            "Events moved to a dead-letter topic, by reason.",
            labels=["subscription", "reason"],
        )
        dropped = CounterMetricFamily(
            "cegateway_events_dropped",
            "Deliveries given up without a dead-letter topic.",
            labels=["subscription", "reason"],
        )
        concurrency = _gauge(
            "cegateway_destination_concurrency", "Pushes allowed in flight (adaptive)."
        )
        in_flight = _gauge("cegateway_deliveries_in_flight", "Pushes in flight now.")
        now = sources.now()
        for subscription in sources.subscriptions.all():
            name = subscription.name
            counts = sources.store.deliveries.counters(name)
            settled = counts["acked"] + counts["deadlettered"] + counts["dropped"]
            pending.add_metric([name], counts["published"] - settled)
            enqueued = sources.store.deliveries.oldest_pending(name)
            oldest.add_metric([name], 0.0 if enqueued is None else max(0.0, now - enqueued))
            for reason in DEAD_LETTER_REASONS:
                dead.add_metric([name, reason], counts.get(f"deadlettered.{reason}", 0))
            for reason in DROP_REASONS:
                dropped.add_metric([name, reason], counts.get(f"dropped.{reason}", 0))
            lane = sources.engine.lanes.get(name)
            concurrency.add_metric([name], lane.limit.current if lane else 0)
            in_flight.add_metric([name], len(lane.in_flight) if lane else 0)
        yield from (pending, oldest, dead, dropped, concurrency, in_flight)

    def _topic_metrics(self) -> Iterator[Metric]:
        sources = self._sources
        events = GaugeMetricFamily(
            "cegateway_topic_events", "Events a topic holds (within retention).", labels=["topic"]
        )
        depth = GaugeMetricFamily(
            "cegateway_deadletter_depth",
            "Events waiting in a dead-letter topic.",
            labels=["topic"],
        )
        dead_letter_topics = {
            s.dead_letter_topic for s in sources.subscriptions.all() if s.dead_letter_topic
        }
        for topic in sources.topics.all():
            count = sources.store.event_count(topic.name)
            events.add_metric([topic.name], count)
            if topic.name in dead_letter_topics:
                depth.add_metric([topic.name], count)
        yield from (events, depth)

    def _store_metrics(self) -> Iterator[Metric]:
        store = self._sources.store
        used, size = store.used_bytes(), store.map_size()
        yield CounterMetricFamily(
            "cegateway_store_fsyncs",
            "Commits (each one fsync with full durability).",
            value=store.commits,
        )
        yield GaugeMetricFamily(
            "cegateway_store_used_bytes", "Bytes of the LMDB map in use.", value=used
        )
        yield GaugeMetricFamily(
            "cegateway_store_map_size_bytes", "Current LMDB map size.", value=size
        )
        yield GaugeMetricFamily(
            "cegateway_store_map_usage_ratio",
            "Used bytes over the maximum map size.",
            value=used / store.max_map_size,
        )
        yield GaugeMetricFamily(
            "cegateway_store_full",
            "1 while the store refuses writes.",
            value=1 if store.full else 0,
        )

    def _process_metrics(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "cegateway_ready",
            "1 when /readyz answers ready.",
            value=1 if self._sources.readiness.ready else 0,
        )
        yield GaugeMetricFamily(
            "cegateway_event_loop_lag_seconds",
            "How late the event loop ran a timer, last measured.",
            value=self._loop_lag(),
        )
        info = GaugeMetricFamily("cegateway_build_info", "Build information.", labels=["version"])
        info.add_metric([__version__], 1)
        yield info


def _gauge(name: str, documentation: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=["subscription"])
