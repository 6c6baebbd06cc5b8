"""Every value that crosses the store seam (`gateway.store.base.Store`), in both directions.

None of them is a storage format: LMDB's rows (`gateway.store.lmdb.keys`) are mapped onto these
inside `gateway.store.lmdb`, and a second store maps its own rows onto the same values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.policy.deadletters import Failure
from gateway.policy.outcomes import Decision

# The names of a subscription's counters (`Store.counters`); the dict also holds the
# per-reason counters `deadlettered.<reason>` and `dropped.<reason>` once they are non-zero.
# At every moment published = acked + deadlettered + dropped + pending (RELIABILITY R8).
COUNTERS = ("published", "acked", "deadlettered", "dropped")
SubscriptionCounters = dict[str, int]

# For a subscription name: its retention in seconds (from its topic), or None if it is gone.
RetentionOf = Callable[[str], float | None]


class Routing(Protocol):
    """Which subscriptions an event of a topic goes to. Passed to `open_store` and called by
    the store inside the transaction that stores the event (LMDB: the single writer's
    transaction), so no subscription can miss an acked event."""

    def fanout(self, topic: str, attributes: Mapping[str, Any]) -> Sequence[tuple[str, float]]:
        """(subscription, delay before the first attempt in seconds) for each match."""
        ...

    def subscriptions_of(self, topic: str) -> Sequence[tuple[str, str | None]]:
        """(subscription, dead-letter topic or None) for each subscription of the topic
        (expiry settles their deliveries; purge and redrive drop them)."""
        ...


@dataclass(frozen=True, slots=True)
class PublishResult:
    accepted: int
    duplicates: int
    subscriptions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    received: float
    payload: bytes


@dataclass(frozen=True, slots=True)
class Page:
    events: list[StoredEvent]
    next: str | None


@dataclass(frozen=True, slots=True)
class SweepResult:
    expired_events: int
    woken: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeadLetterResult:
    handled: int  # redriven or purged
    skipped: int  # left in place (redrive: the subscription no longer exists)
    woken: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: these event ids (or all), optionally of one subscription/reason."""

    ids: frozenset[str] | None = None
    subscription: str | None = None
    reason: str | None = None

    def matches(self, document: dict[str, object]) -> bool:
        if self.ids is not None and document.get("id") not in self.ids:
            return False
        if self.subscription is not None and document.get("dlsubscription") != self.subscription:
            return False
        return self.reason is None or document.get("dlreason") == self.reason


@dataclass(frozen=True, slots=True)
class Delivery:
    """One pending delivery of event `seq` to `subscription`, as a claim (or a look-up)
    returns it."""

    subscription: str
    seq: int
    attempts: int  # made so far
    due: float  # when it is (was) due, on the scheduling clock
    expires: float  # when the event's retention ends, on the scheduling clock
    payload: bytes | None  # None: the event is gone (its topic was deleted); nothing to push
    last_failure: Failure  # what the last attempt saw (all None before the first)


# The attempt log (DESIGN "Delivery visibility"): the first attempt and the last LOG_RECENT
# are kept per delivery, each with at most LOG_RESPONSE bytes of response and LOG_ERROR of error.
LOG_RECENT = 20
LOG_RESPONSE = 256
LOG_ERROR = 256

# What a delivery's state is, as `Store.event_deliveries` reports it.
DELIVERY_STATES = ("pending", "acked", "deadlettered", "dropped")


@dataclass(frozen=True, slots=True)
class Attempt:
    """One push attempt as the log keeps it: wall time, the HTTP status (an int) or error
    class ("timeout", "connect", ...), short error text, duration and the response's first
    LOG_RESPONSE bytes (credentials redacted by the lane)."""

    time: float
    status: int | str
    error: str | None
    duration_ms: int
    response: bytes = b""

    def bounded(self) -> Attempt:
        """Cut to the log's bounds (whatever the subscriber answered)."""
        error = self.error
        if error is not None and len(error.encode()) > LOG_ERROR:
            error = error.encode()[:LOG_ERROR].decode(errors="ignore")
        status = self.status if isinstance(self.status, int) else self.status[:64]
        return Attempt(self.time, status, error, self.duration_ms, self.response[:LOG_RESPONSE])


@dataclass(frozen=True, slots=True)
class DeliveryRecord:
    """One delivery of an event to a subscription, with its attempt log (the first attempt
    and the last LOG_RECENT). `due`: when the next attempt is due (scheduling clock), for a
    pending delivery only."""

    subscription: str
    state: str  # one of DELIVERY_STATES
    attempts: int
    due: float | None
    last_status: str | None
    last_error: str | None
    log: tuple[Attempt, ...]


@dataclass(frozen=True, slots=True)
class ListedDelivery:
    """One delivery in a subscription's listing (`Store.subscription_deliveries`): its event
    (seq, when it was stored on the scheduling clock, its JSON) and the delivery."""

    seq: int
    received: float
    payload: bytes
    delivery: DeliveryRecord


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    deliveries: list[ListedDelivery]
    next: str | None  # an opaque cursor, None on the last page


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of one attempt, as the engine decided it, to be recorded atomically."""

    subscription: str
    seq: int
    decision: Decision
    attempts: int
    failure: Failure | None
    dead_letter_topic: str | None = None
    wall: float = 0.0  # for the dltime attribute
    due: float | None = None  # the due time it was taken at (lets an ack skip a read)
    attempt: Attempt | None = None  # what this attempt saw, for the log (None: no attempt)


@dataclass(frozen=True, slots=True)
class LastOutcome:
    """When a subscription's last attempts succeeded and failed (wall seconds), and what the
    last failed one saw: an HTTP status ("503") or error kind ("timeout"), and short text."""

    success_time: float | None = None
    failure_time: float | None = None
    status: str | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A snapshot of the store as a whole (what `/metrics` and readiness show)."""

    commits: int  # write transactions committed (each one fsync with full durability)
    used_bytes: int  # storage in use (LMDB: pages ever used, a high-water mark)
    capacity_bytes: int  # storage allocated now (LMDB: the map size)
    max_bytes: int  # the most it may grow to (LMDB: server.maxMapSize)
    full: bool  # writes are refused for want of space
