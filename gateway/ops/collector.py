"""The scrape-time collector (DESIGN "Metrics"): the figures read when Prometheus scrapes.

Durable figures (pending, oldest pending age, dead-lettered and dropped by reason, dead-letter
depth) come from counters the store keeps in the same transactions as the changes they count:
a scrape reads a few keys per subscription and topic, never scans events, and the totals
survive restarts. Those reads may wait, so `refresh()` (awaited by the `/metrics` route)
reads them into a snapshot that `collect()` renders. What the delivery lanes hold now
(concurrency, in flight) is read through `LaneStatistics`, so operations never import the
delivery engine that writes to its instruments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway import __version__

if TYPE_CHECKING:
    from gateway.ops.health import Readiness
    from gateway.resources.subscriptions import SubscriptionRegistry
    from gateway.resources.topics import TopicRegistry
    from gateway.store.base import Store
    from gateway.store.records import SubscriptionCounters

DEAD_LETTER_REASONS = ("exhausted", "permanent", "expired")
DROP_REASONS = ("exhausted", "permanent", "expired", "missing", "purged", "redriven")


class LaneStatistics(Protocol):
    """What the collector reads of the delivery lanes, per subscription (the engine)."""

    def concurrency(self, subscription: str) -> int:
        """Pushes allowed in flight now (adaptive); 0 for a subscription without a lane."""
        ...

    def in_flight(self, subscription: str) -> int:
        """Deliveries taken and not yet settled; 0 for a subscription without a lane."""
        ...


@dataclass(frozen=True)
class Sources:
    """What the scrape-time collector reads."""

    store: Store
    topics: TopicRegistry
    subscriptions: SubscriptionRegistry
    lanes: LaneStatistics
    readiness: Readiness
    now: Callable[[], float]


@dataclass
class StoreReadings:
    """What a scrape shows from the store, read by `GatewayCollector.refresh`."""

    counters: dict[str, SubscriptionCounters] = field(default_factory=dict)
    oldest_pending: dict[str, float | None] = field(default_factory=dict)
    event_counts: dict[str, int] = field(default_factory=dict)


class GatewayCollector(Collector):
    def __init__(self, sources: Sources, loop_lag: Callable[[], float]) -> None:
        self._sources = sources
        self._loop_lag = loop_lag
        self._readings = StoreReadings()

    async def refresh(self) -> None:
        sources, readings = self._sources, StoreReadings()
        for subscription in sources.subscriptions.all():
            name = subscription.name
            readings.counters[name] = await sources.store.counters(name)
            readings.oldest_pending[name] = await sources.store.oldest_pending(name)
        for topic in sources.topics.all():
            readings.event_counts[topic.name] = await sources.store.event_count(topic.name)
        self._readings = readings

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
            counts = self._readings.counters.get(name)
            if counts is None:  # added since the refresh: shown from the next scrape
                continue
            settled = counts["acked"] + counts["deadlettered"] + counts["dropped"]
            pending.add_metric([name], counts["published"] - settled)
            enqueued = self._readings.oldest_pending.get(name)
            oldest.add_metric([name], 0.0 if enqueued is None else max(0.0, now - enqueued))
            for reason in DEAD_LETTER_REASONS:
                dead.add_metric([name, reason], counts.get(f"deadlettered.{reason}", 0))
            for reason in DROP_REASONS:
                dropped.add_metric([name, reason], counts.get(f"dropped.{reason}", 0))
            concurrency.add_metric([name], sources.lanes.concurrency(name))
            in_flight.add_metric([name], sources.lanes.in_flight(name))
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
            count = self._readings.event_counts.get(topic.name)
            if count is None:
                continue
            events.add_metric([topic.name], count)
            if topic.name in dead_letter_topics:
                depth.add_metric([topic.name], count)
        yield from (events, depth)

    def _store_metrics(self) -> Iterator[Metric]:
        statistics = self._sources.store.statistics()
        used, size = statistics.used_bytes, statistics.capacity_bytes
        yield CounterMetricFamily(
            "cegateway_store_fsyncs",
            "Commits (each one fsync with full durability).",
            value=statistics.commits,
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
            value=used / statistics.max_bytes,
        )
        yield GaugeMetricFamily(
            "cegateway_store_full",
            "1 while the store refuses writes.",
            value=1 if statistics.full else 0,
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
