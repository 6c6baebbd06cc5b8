"""The store seam: the named operations the rest of the gateway needs from its store.

No transaction, table handle, key format or map size crosses it; the values that do live in
`gateway.store.records`. LMDB (`gateway.store.lmdb.store.LmdbStore`, opened by
`gateway.store.open.open_store`) is the embedded implementation; the seam is what lets a
networked store take its place. What such a store must wait for is `async` here (LMDB may
complete at once).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from typing import Protocol

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.store.records import (
    DeadLetterResult,
    Delivery,
    DeliveryPage,
    DeliveryRecord,
    LastOutcome,
    Page,
    PublishResult,
    RetentionOf,
    Routing,
    Selection,
    Settlement,
    StoredEvent,
    StoreStatistics,
    SubscriptionCounters,
    SweepResult,
)

__all__ = ["PublishHint", "Routing", "Store"]


# A routing change the store makes in its commit order; it returns its own undo, which the
# store calls (in the same order) when the change does not commit.
RoutingChange = Callable[[], Callable[[], None]]


class PublishHint(Protocol):
    """A publish is on its way (`Store.publishing`): lets group commit wait for it briefly.
    LMDB announces it on enter and withdraws it on an exit that never reached `publish`."""

    def __enter__(self) -> PublishHint: ...

    def __exit__(self, *exc: object) -> None: ...


class Store(Protocol):
    """What the receiver, engine, registries, admin and Pretry APIs, retention, metrics and
    console use; `LmdbStore` is checked against it by mypy.

    Routing (`records.Routing`, given to `open_store`) is called inside the transaction that
    stores an event, so no subscription can miss an acked event.

    ORDERING GUARANTEE routing relies on: `put_subscription` and `delete_subscription` call
    `apply` (which swaps the routing indexes) at the point of the store's commit order where
    the change takes effect (LMDB: inside the one writer's transaction). So a publish ordered
    after the change fans out with the new routing, one ordered before it with the old, and
    none sees half of it. `apply` returns its undo: if the change does not commit, the store
    calls it at the same place in its commit order, so no later publish fans out with a
    change that never happened. A second implementation must keep this (PostgreSQL: a config
    version bumped under an advisory lock, checked by each publish transaction).
    """

    # -- publishing -----------------------------------------------------------------------

    def publishing(self) -> PublishHint:
        """A group-commit hint to hold while a publish is parsed; may do nothing."""
        ...

    async def publish(
        self,
        topic: str,
        events: Sequence[IncomingEvent],
        now: float,
        hint: PublishHint | None = None,
    ) -> PublishResult:
        """Store the batch all or nothing, deduplicated on (source, id) within retention, and
        fan it out (`Routing.fanout`). `hint`: the one held since the request arrived."""
        ...

    # -- deliveries -------------------------------------------------------------------------

    async def claim(
        self, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[Delivery]:
        """Up to `limit` deliveries due by `now`, earliest first, not in `skip` (in flight)."""
        ...

    async def next_due(self, subscription: str, after: float) -> float | None:
        """The earliest due time later than `after`, if any."""
        ...

    async def delivery(self, subscription: str, seq: int) -> Delivery | None:
        """The pending delivery of event `seq` to `subscription`, if there is one."""
        ...

    async def settle(self, settlements: Sequence[Settlement], now: float) -> set[str]:
        """Record attempts' outcomes atomically; returns subscriptions to wake (they got new
        deliveries: dead letters fanned out)."""
        ...

    async def counters(self, subscription: str) -> SubscriptionCounters:
        """The subscription's counters (`records.COUNTERS`, and per reason)."""
        ...

    async def last_outcome(self, subscription: str) -> LastOutcome:
        """When the subscription's last attempts succeeded and failed, and what failed."""
        ...

    async def event_deliveries(self, topic: str, seq: int) -> list[DeliveryRecord]:
        """Every delivery of event `seq` of `topic` to the topic's subscriptions, pending or
        settled (acked, dead-lettered, dropped), each with its attempt log: the first attempt
        and the last `records.LOG_RECENT`. Logs go with the event (retention, purge, topic
        deletion) and with their subscription."""
        ...

    async def subscription_deliveries(
        self, subscription: str, topic: str, state: str | None, after: str | None, limit: int
    ) -> DeliveryPage:
        """A page of the subscription's deliveries (of events of `topic`, its topic), pending
        and settled, in event order after the opaque cursor `after`; only those in `state`
        (`records.DELIVERY_STATES`) when given. Events gone from the store are left out."""
        ...

    async def events_by_id(
        self, topic: str, event_id: str, source: str | None = None
    ) -> list[StoredEvent]:
        """The topic's events with this id (of this source, when given); NotFound for an
        unknown topic."""
        ...

    async def oldest_pending(self, subscription: str) -> float | None:
        """When the oldest pending delivery was created (scheduling clock)."""
        ...

    # -- events -----------------------------------------------------------------------------

    async def browse(
        self,
        topic: str,
        cursor: str | None,
        limit: int,
        selection: Selection | None = None,
        *,
        newest_first: bool = False,
    ) -> Page:
        """A page of the topic's events after `cursor` (oldest first), or before it
        (`newest_first`), optionally only the dead letters `selection` matches."""
        ...

    async def redrive(
        self, topic: str, selection: Selection, retention_of: RetentionOf, now: float
    ) -> DeadLetterResult:
        """Move selected dead letters back to their subscriptions (crash-safe, no duplicate)."""
        ...

    async def purge(self, topic: str, selection: Selection) -> DeadLetterResult: ...

    async def sweep(self, now: float, wall: float) -> SweepResult:
        """Delete events whose retention ended, settling their pending deliveries first."""
        ...

    # -- topic rows -------------------------------------------------------------------------

    async def topics(self) -> list[TopicSettings]: ...

    async def put_topic(self, topic: TopicSettings) -> bool:
        """Create or replace; True when it was created."""
        ...

    async def delete_topic(self, name: str) -> None:
        """Delete the topic and its events."""
        ...

    async def event_count(self, topic: str) -> int: ...

    # -- subscription rows (the spec as stored JSON bytes; the registry decodes) ------------

    async def subscription_rows(self) -> list[tuple[str, bytes]]:
        """(name, spec) of every stored subscription."""
        ...

    async def put_subscription(self, name: str, spec: bytes, apply: RoutingChange) -> bool:
        """Store the spec and call `apply` in the same commit (see the ordering guarantee);
        True when it was created."""
        ...

    async def delete_subscription(self, name: str, apply: RoutingChange) -> int:
        """Drop the spec, pending deliveries, counters and last outcome, calling `apply` in
        the same commit; returns how many pending deliveries were dropped."""
        ...

    # -- extension rows (opaque bytes by kind and key: Pretry configs are kind "pretry") ----

    async def extension_row(self, kind: str, key: str) -> bytes | None: ...

    async def put_extension_row(self, kind: str, key: str, value: bytes) -> None: ...

    async def delete_extension_row(self, kind: str, key: str) -> None: ...

    # -- operations -------------------------------------------------------------------------

    def statistics(self) -> StoreStatistics:
        """A snapshot; never waits."""
        ...

    @property
    def full(self) -> bool:
        """Writes are refused for want of space (as `statistics().full`, but cheap enough for
        readiness, which is asked on every publish)."""
        ...

    async def maintain(self) -> None:
        """What the store needs done while it is open, run by the app as a task until
        cancelled (LMDB: trims the mapped memory); may return at once."""
        ...

    def close(self) -> None: ...
