"""The store interface: what the rest of the gateway needs from the store, and the values
it hands back.

LMDB (`gateway.store.lmdb.store`) is the embedded implementation; the interface is what lets a
distributed store take its place when one node is not enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.store.lmdb.committer import Transaction

if TYPE_CHECKING:
    from gateway.store.lmdb.deliveries import DueDelivery, Settlement
    from gateway.store.lmdb.keys import DeliveryState, LastOutcome
    from gateway.store.lmdb.redrive import RetentionOf, Selection

T = TypeVar("T")

# Which subscriptions of `topic` an event with these attributes goes to, each with the delay
# before its first attempt in seconds (decided in the write transaction that stores the event,
# so no subscription can miss an acked event).
Fanout = Callable[[str, Mapping[str, Any]], Sequence[tuple[str, float]]]

# For a topic: each (subscription, dead-letter topic or None) that may hold deliveries of it.
# Expiry settles those deliveries; purge and redrive drop them.
SubscriptionsOf = Callable[[str], Sequence[tuple[str, str | None]]]


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


class Deliveries(Protocol):
    """The delivery ledger as code outside the store uses it: the engine's lanes read what is
    due, the admin API and metrics read counters, the subscription registry drops a deleted
    subscription's deliveries, and the app tells it which subscriptions a topic has."""

    subscriptions_of: SubscriptionsOf

    def due(
        self, subscription: str, now: float, limit: int, skip: set[int] | frozenset[int]
    ) -> list[DueDelivery]:
        """Up to `limit` deliveries due by `now`, earliest first, not in `skip` (in flight)."""
        ...

    def next_due(self, subscription: str, after: float) -> float | None: ...

    def counters(self, subscription: str) -> dict[str, int]: ...

    def last_outcome(self, subscription: str) -> LastOutcome:
        """When the subscription's last attempts succeeded and failed, and what failed."""
        ...

    def oldest_pending(self, subscription: str) -> float | None: ...

    def state(self, subscription: str, seq: int) -> DeliveryState | None: ...

    def delete_subscription(self, txn: Transaction, subscription: str) -> int:
        """Inside `txn`: drop the subscription's pending deliveries, counters and spec row."""
        ...


class Store(Protocol):
    """Every member the rest of the gateway uses (receiver, engine, admin and pretry APIs,
    registries, retention, metrics, app); `LmdbStore` is checked against it by mypy."""

    fanout: Fanout  # set by the app once the subscription registry is loaded
    on_commit: Callable[[int, float], None]  # (operations, seconds) after each commit

    @property
    def db(self) -> Mapping[str, Any]:
        """Table handles for `read`/`write`: the subscription registry and the pretry API keep
        their own rows in `meta` (an LMDB detail a second implementation would have to map)."""
        ...

    @property
    def deliveries(self) -> Deliveries: ...

    @property
    def full(self) -> bool:
        """The last commit failed for want of space and the map is at its maximum."""
        ...

    @property
    def max_map_size(self) -> int: ...

    @property
    def commits(self) -> int:
        """Write transactions committed so far (each one fsync with full durability)."""
        ...

    def read(self, run: Callable[[Transaction], T]) -> T: ...

    async def write(
        self, run: Callable[[Transaction], T], announced: bool = False, grows: bool = False
    ) -> T: ...

    def announce(self) -> None:
        """A publish is on its way (lets group commit wait for it briefly)."""
        ...

    def withdraw(self) -> None: ...

    def topics(self) -> list[TopicSettings]: ...

    async def put_topic(self, topic: TopicSettings) -> bool:
        """Create or replace; True when it was created."""
        ...

    async def delete_topic(self, name: str) -> None: ...

    def event_count(self, topic: str) -> int: ...

    async def publish(
        self, topic: str, events: Sequence[IncomingEvent], now: float, announced: bool = False
    ) -> PublishResult: ...

    async def record(self, settlements: Sequence[Settlement], now: float) -> set[str]:
        """Record attempts' outcomes in one transaction; returns subscriptions to wake."""
        ...

    def browse(
        self, topic: str, after: str | None, limit: int, selection: Selection | None = None
    ) -> Page: ...

    def browse_newest(
        self, topic: str, before: str | None, limit: int, selection: Selection | None = None
    ) -> Page: ...

    async def redrive(
        self, topic: str, selection: Selection, retention_of: RetentionOf, now: float
    ) -> DeadLetterResult: ...

    async def purge(self, topic: str, selection: Selection) -> DeadLetterResult: ...

    async def sweep(self, now: float, wall: float) -> SweepResult: ...

    def used_bytes(self) -> int: ...

    def map_size(self) -> int: ...

    def close(self) -> None: ...
