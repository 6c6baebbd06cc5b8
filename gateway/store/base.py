"""The store interface: what the receiver, the admin API and the delivery engine need.

LMDB (`gateway.store.lmdb`) is the embedded implementation; the interface is what lets a
distributed store take its place when one node is not enough.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.events import IncomingEvent
from gateway.settings import TopicSettings

# Which subscriptions of `topic` an event with these attributes goes to, each with the delay
# before its first attempt in seconds (decided in the write transaction that stores the event,
# so no subscription can miss an acked event).
Fanout = Callable[[str, Mapping[str, Any]], Sequence[tuple[str, float]]]


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


class Store(Protocol):
    @property
    def commits(self) -> int:
        """Write transactions committed so far (each one fsync with full durability)."""
        ...

    def topics(self) -> list[TopicSettings]: ...

    async def put_topic(self, topic: TopicSettings) -> bool:
        """Create or replace; True when it was created."""
        ...

    async def delete_topic(self, name: str) -> None: ...

    def announce(self) -> None:
        """A publish is on its way (lets group commit wait for it briefly)."""
        ...

    def withdraw(self) -> None: ...

    async def publish(
        self, topic: str, events: Sequence[IncomingEvent], now: float, announced: bool = False
    ) -> PublishResult: ...

    def browse(self, topic: str, after: str | None, limit: int) -> Page: ...

    async def sweep(self, now: float, wall: float) -> SweepResult: ...

    def close(self) -> None: ...
