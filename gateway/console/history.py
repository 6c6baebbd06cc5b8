"""The last hour of each subscription's push outcomes, a minute at a time, for the console's
charts (issue 23). The push path is not touched: the figures are the `cegateway_deliveries_total`
counters the engine already increments, read every few seconds and differenced, so one push
costs nothing more. Kept in memory only; after a restart the charts start empty.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.clock import Clock
from gateway.ops.metrics import OUTCOMES, Metrics
from gateway.policy.outcomes import DELIVERY_CODES

MINUTE = 60.0
WINDOW = 60  # minutes kept (and charted)
SAMPLE_EVERY = 5.0  # seconds between counter reads
FAILURES = ("retried", "deadlettered", "dropped", "error")
log = logging.getLogger("gateway.console")

Totals = dict[tuple[str, str, str], float]  # (subscription, outcome, code) -> counter value


def delivery_totals(metrics: Metrics) -> Totals:
    """The deliveries counter's current values, by (subscription, outcome, code)."""
    totals: Totals = {}
    for family in metrics.deliveries.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                labels = sample.labels
                totals[(labels["subscription"], labels["outcome"], labels["code"])] = sample.value
    return totals


@dataclass
class Minute:
    """Outcome counts of one subscription in one wall-clock minute, and the same attempts by
    their `code` (2xx, 5xx, timeout, ...)."""

    start: float
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    codes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DELIVERY_CODES, 0))

    @property
    def attempts(self) -> int:
        return sum(self.counts.values())

    @property
    def failures(self) -> int:
        return sum(self.counts[outcome] for outcome in FAILURES)


class OutcomeHistory:
    """A ring of per-minute outcome counts per subscription, fed by `sample()`."""

    def __init__(self, read_totals: Callable[[], Totals], now: Callable[[], float]) -> None:
        self._read = read_totals
        self._now = now
        self._last: Totals = {}  # counters start at zero with the process
        self._minutes: dict[str, dict[int, Minute]] = {}

    def sample(self) -> None:
        """Add what the counters gained since the last reading to the current minute."""
        totals = self._read()
        minute = int(self._now() // MINUTE)
        for key, value in totals.items():
            subscription, outcome, code = key
            gained = int(value - self._last.get(key, 0.0))
            if gained > 0 and outcome in OUTCOMES:
                buckets = self._minutes.setdefault(subscription, {})
                counts = buckets.setdefault(minute, Minute(minute * MINUTE))
                counts.counts[outcome] += gained
                counts.codes[code if code in counts.codes else "other"] += gained
        self._last = totals
        self._prune(minute)

    def _prune(self, minute: int) -> None:
        for buckets in self._minutes.values():
            for old in [m for m in buckets if m <= minute - WINDOW]:
                del buckets[old]

    def forget(self, keep: Iterable[str]) -> None:
        """Drop the figures of subscriptions that no longer exist."""
        kept = set(keep)
        for name in [name for name in self._minutes if name not in kept]:
            del self._minutes[name]

    def minutes(self, subscription: str) -> list[Minute]:
        """The last `WINDOW` minutes, oldest first, the current (partial) minute last."""
        current = int(self._now() // MINUTE)
        buckets = self._minutes.get(subscription, {})
        return [_copy(buckets.get(m), m) for m in range(current - WINDOW + 1, current + 1)]


def _copy(minute: Minute | None, number: int) -> Minute:
    if minute is None:
        return Minute(number * MINUTE)
    return Minute(minute.start, dict(minute.counts), dict(minute.codes))


async def run_sampler(history: OutcomeHistory, clock: Clock, every: float = SAMPLE_EVERY) -> None:
    """Read the counters every `every` seconds until cancelled."""
    while True:
        try:
            history.sample()
        except Exception:  # a failed reading leaves a gap in the chart, never stops the sampler
            log.exception("console: reading the delivery counters failed")
        await clock.sleep(every)


def start_sampler(history: OutcomeHistory, clock: Clock) -> asyncio.Task[None]:
    return asyncio.create_task(run_sampler(history, clock))
