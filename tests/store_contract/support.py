"""What the contract tests build and check, through the Store Protocol's members only.

Time is injected: every test passes `now` (scheduling time) and `wall` explicitly, from T0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.policy.deadletters import Failure
from gateway.policy.outcomes import Ack, DeadLetter, Decision, RetryAt
from gateway.store.base import Store
from gateway.store.records import Delivery, Selection, Settlement

__all__ = ["Ack", "DeadLetter", "Failure", "RetryAt", "Selection", "Settlement"]

T0 = 1_000_000.0  # the scheduling time every test starts at
WALL = 1_700_000_000.0  # the wall time settlements carry (dltime)
DAY = 86_400.0
FAR = T0 + 1000 * DAY  # later than anything a test schedules
TYPE = "com.example.order.created"


def event(event_id: str, source: str = "/shop", **attributes: Any) -> IncomingEvent:
    """An event as ingress hands it to the store: its dedup pair, attributes and JSON bytes."""
    document = {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": TYPE,
        **attributes,
    }
    payload = orjson.dumps({**document, "data": {"id": event_id}})
    return IncomingEvent(source, event_id, document, payload)


def events(prefix: str, count: int) -> list[IncomingEvent]:
    return [event(f"{prefix}{n}") for n in range(count)]


def topic(name: str, retention: float = DAY) -> TopicSettings:
    return TopicSettings(name, retention)


@dataclass
class Route:
    subscription: str
    delay: float = 0.0
    dead_letter: str | None = None
    where: Callable[[Mapping[str, Any]], bool] | None = None


@dataclass
class Routing:
    """A `Routing` the test controls: which subscriptions each topic fans out to."""

    routes: dict[str, list[Route]] = field(default_factory=dict)
    fanned: list[str] = field(default_factory=list)  # topics fanout was asked about

    def add(
        self,
        topic: str,
        subscription: str,
        *,
        delay: float = 0.0,
        dead_letter: str | None = None,
        where: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.routes.setdefault(topic, []).append(Route(subscription, delay, dead_letter, where))

    def remove(self, subscription: str) -> None:
        for topic, routes in self.routes.items():
            self.routes[topic] = [r for r in routes if r.subscription != subscription]

    def fanout(self, topic: str, attributes: Mapping[str, Any]) -> Sequence[tuple[str, float]]:
        self.fanned.append(topic)
        return [
            (route.subscription, route.delay)
            for route in self.routes.get(topic, ())
            if route.where is None or route.where(attributes)
        ]

    def subscriptions_of(self, topic: str) -> Sequence[tuple[str, str | None]]:
        return [(route.subscription, route.dead_letter) for route in self.routes.get(topic, ())]


def document(payload: bytes | None) -> dict[str, Any]:
    """The stored JSON event (a delivery's payload is None only when its event is gone)."""
    assert payload is not None, "the event is gone"
    loaded: dict[str, Any] = orjson.loads(payload)
    return loaded


async def stored_ids(store: Store, name: str, limit: int = 1000) -> list[str]:
    """The ids of every event the topic holds, in order, following the cursor."""
    found: list[str] = []
    after: str | None = None
    for _ in range(10_000):
        page = await store.browse(name, after, limit)
        found.extend(document(stored.payload)["id"] for stored in page.events)
        if page.next is None:
            return found
        after = page.next
    raise AssertionError("browse never ended")


async def pending(store: Store, subscription: str) -> list[Delivery]:
    """Every pending delivery of the subscription, whenever due (claimed at a far time)."""
    return await store.claim(subscription, FAR, 100_000, frozenset())


async def pending_ids(store: Store, subscription: str) -> list[str]:
    return [document(delivery.payload)["id"] for delivery in await pending(store, subscription)]


async def assert_reconciled(store: Store, subscription: str) -> dict[str, int]:
    """R8: published = acked + deadlettered + dropped + pending, pending counted by claiming."""
    counters: dict[str, int] = await store.counters(subscription)
    waiting = len(await pending(store, subscription))
    settled = counters["acked"] + counters["deadlettered"] + counters["dropped"]
    assert counters["published"] == settled + waiting, (subscription, counters, waiting)
    return {**counters, "pending": waiting}


def settlement(
    delivery: Delivery,
    decision: Decision,
    *,
    attempts: int | None = None,
    failure: Failure | None = None,
    dead_letter: str | None = None,
    wall: float = WALL,
) -> Settlement:
    """The engine's settlement of one claimed delivery (it passes the due it claimed at)."""
    return Settlement(
        delivery.subscription,
        delivery.seq,
        decision,
        delivery.attempts + 1 if attempts is None else attempts,
        failure,
        dead_letter,
        wall,
        due=delivery.due,
    )
