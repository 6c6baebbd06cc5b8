"""The attempt log (DESIGN "Delivery visibility"): each delivery keeps its first attempt and
its last 20, recorded with the outcome, kept after an ack for as long as the event is, removed
with the event (sweep, purge, topic deletion) and with its subscription; bounded in size."""

from __future__ import annotations

import dataclasses

import orjson

from gateway.store.base import Store
from gateway.store.records import LOG_ERROR, LOG_RECENT, LOG_RESPONSE, Attempt, Delivery
from tests.store_contract.support import (
    DAY,
    T0,
    WALL,
    Ack,
    DeadLetter,
    Failure,
    RetryAt,
    Routing,
    Selection,
    event,
    pending,
    settlement,
    topic,
)
from tests.store_contract.test_contract_rows import SPEC, Applied

NONE: frozenset[int] = frozenset()


def attempt(n: int, status: int | str = 503, response: bytes = b"") -> Attempt:
    error = None if status == 200 else f"failure {n}"
    return Attempt(WALL + n, status, error, 10 + n, response)


async def one_event(store: Store, routing: Routing, **route: object) -> Delivery:
    routing.add("orders", "s1", **route)  # type: ignore[arg-type]
    await store.put_topic(topic("orders", retention=DAY))
    await store.publish("orders", [event("e1")], T0)
    [delivery] = await pending(store, "s1")
    return delivery


async def fail(store: Store, delivery: Delivery, n: int, **attempt_fields: object) -> Delivery:
    """Attempt `n` fails with a retry due at once; returns the delivery claimed again."""
    failed = dataclasses.replace(
        settlement(delivery, RetryAt(T0 + n, "503"), failure=Failure("503", f"failure {n}", None)),
        attempt=attempt(n, **attempt_fields),  # type: ignore[arg-type]
    )
    await store.settle([failed], T0 + n)
    [again] = [d for d in await store.claim("s1", T0 + n, 10, NONE) if d.seq == delivery.seq]
    return again


async def ack(store: Store, delivery: Delivery, n: int) -> None:
    acked = dataclasses.replace(settlement(delivery, Ack()), attempt=attempt(n, 200, b"ok"))
    await store.settle([acked], T0 + n)


async def test_a_first_attempt_ack_keeps_its_one_attempt(store: Store, routing: Routing) -> None:
    delivery = await one_event(store, routing)
    await ack(store, delivery, 1)
    [record] = await store.event_deliveries("orders", delivery.seq)
    assert (record.subscription, record.state, record.attempts) == ("s1", "acked", 1)
    assert record.log == (attempt(1, 200, b"ok"),)


async def test_two_failures_then_an_ack_log_three_attempts(store: Store, routing: Routing) -> None:
    delivery = await one_event(store, routing)
    delivery = await fail(store, delivery, 1)
    delivery = await fail(store, delivery, 2, status="timeout")
    await ack(store, delivery, 3)
    [record] = await store.event_deliveries("orders", delivery.seq)
    assert (record.state, record.attempts) == ("acked", 3)
    assert [a.status for a in record.log] == [503, "timeout", 200]
    assert [a.duration_ms for a in record.log] == [11, 12, 13]


async def test_a_pending_delivery_shows_its_log_and_next_attempt(
    store: Store, routing: Routing
) -> None:
    delivery = await one_event(store, routing)
    failed = dataclasses.replace(
        settlement(delivery, RetryAt(T0 + 60, "503"), failure=Failure("503", "HTTP 503", None)),
        attempt=attempt(1),
    )
    await store.settle([failed], T0 + 1)
    [record] = await store.event_deliveries("orders", delivery.seq)
    assert (record.state, record.attempts, record.due) == ("pending", 1, T0 + 60)
    assert (record.last_status, record.last_error) == ("503", "HTTP 503")
    assert record.log == (attempt(1),)


async def test_a_never_attempted_delivery_is_pending_with_an_empty_log(
    store: Store, routing: Routing
) -> None:
    delivery = await one_event(store, routing)
    [record] = await store.event_deliveries("orders", delivery.seq)
    assert (record.state, record.attempts, record.log) == ("pending", 0, ())


async def test_thirty_attempts_keep_the_first_and_the_last_twenty(
    store: Store, routing: Routing
) -> None:
    delivery = await one_event(store, routing)
    for n in range(1, 30):
        delivery = await fail(store, delivery, n)
    await ack(store, delivery, 30)
    [record] = await store.event_deliveries("orders", delivery.seq)
    assert record.attempts == 30
    assert [a.time - WALL for a in record.log] == [1, *range(30 - LOG_RECENT + 1, 31)]


async def test_the_log_is_bounded_whatever_the_subscriber_answers(
    store: Store, routing: Routing
) -> None:
    delivery = await one_event(store, routing)
    huge = Attempt(WALL, "connect", "é" * 10_000, 5, b"x" * 100_000)
    failed = dataclasses.replace(
        settlement(delivery, RetryAt(T0 + 1, "connect"), failure=Failure("connect", "e", None)),
        attempt=huge,
    )
    await store.settle([failed], T0)
    [record] = await store.event_deliveries("orders", delivery.seq)
    [logged] = record.log
    assert logged.response == b"x" * LOG_RESPONSE
    assert logged.error is not None and len(logged.error.encode()) <= LOG_ERROR
    assert logged.error == "é" * (LOG_ERROR // 2)


async def test_dead_lettered_and_dropped_deliveries_keep_their_logs(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s2")
    delivery = await one_event(store, routing, dead_letter="dead")
    await store.put_topic(topic("dead"))
    [other] = await pending(store, "s2")
    failure = Failure("410", "HTTP 410", None)
    given_up = dataclasses.replace(
        settlement(delivery, DeadLetter("permanent"), failure=failure, dead_letter="dead"),
        attempt=attempt(1, 410),
    )
    dropped = dataclasses.replace(
        settlement(other, DeadLetter("permanent"), failure=failure), attempt=attempt(1, 410)
    )
    await store.settle([given_up, dropped], T0 + 1)
    records = {r.subscription: r for r in await store.event_deliveries("orders", delivery.seq)}
    assert {name: r.state for name, r in records.items()} == {
        "s1": "deadlettered",
        "s2": "dropped",
    }
    assert records["s1"].log == (attempt(1, 410),)
    assert records["s1"].last_status == "410"


async def test_a_sweep_removes_the_logs_with_the_event(store: Store, routing: Routing) -> None:
    delivery = await one_event(store, routing)
    await ack(store, delivery, 1)
    await store.sweep(T0 + 2 * DAY, WALL)
    assert await store.event_deliveries("orders", delivery.seq) == []


async def test_a_purge_removes_the_dead_letters_logs(store: Store, routing: Routing) -> None:
    delivery = await one_event(store, routing, dead_letter="dead")
    await store.put_topic(topic("dead"))
    routing.add("dead", "d1")
    given_up = settlement(delivery, DeadLetter("permanent"), dead_letter="dead")
    await store.settle([given_up], T0 + 1)
    [dead] = await pending(store, "d1")
    await ack(store, dead, 2)
    assert [r.state for r in await store.event_deliveries("dead", dead.seq)] == ["acked"]
    await store.purge("dead", Selection())
    assert await store.event_deliveries("dead", dead.seq) == []


async def test_deleting_the_topic_removes_its_logs(store: Store, routing: Routing) -> None:
    delivery = await one_event(store, routing)
    await ack(store, delivery, 1)
    await store.delete_topic("orders")
    assert await store.event_deliveries("orders", delivery.seq) == []


async def test_deleting_the_subscription_removes_its_logs(store: Store, routing: Routing) -> None:
    await store.put_topic(topic("orders"))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    await store.publish("orders", [event("e1"), event("e2")], T0)
    first, second = await pending(store, "s1")
    await ack(store, first, 1)
    await fail(store, second, 1)
    await store.delete_subscription("s1", Applied(routing, add=False))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))  # the same name again
    assert await store.event_deliveries("orders", first.seq) == []
    assert await store.event_deliveries("orders", second.seq) == []


async def test_events_are_found_by_id_and_source(store: Store, routing: Routing) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("e1", "/a"), event("e1", "/b"), event("e2", "/a")], T0)
    assert len(await store.events_by_id("orders", "e1")) == 2
    [found] = await store.events_by_id("orders", "e1", "/b")
    assert b'"source":"/b"' in found.payload
    assert await store.events_by_id("orders", "e3") == []
    assert await store.events_by_id("orders", "e2", "/b") == []


def id_of(payload: bytes) -> str:
    return str(orjson.loads(payload)["id"])


async def listing(store: Store, state: str | None = None, limit: int = 2) -> list[list[str]]:
    """Every page of s1's deliveries: (event id, state) per delivery."""
    pages: list[list[str]] = []
    after: str | None = None
    for _ in range(100):
        page = await store.subscription_deliveries("s1", "orders", state, after, limit)
        pages.append([f"{id_of(one.payload)} {one.delivery.state}" for one in page.deliveries])
        if page.next is None:
            return pages
        after = page.next
    raise AssertionError("the listing never ended")


async def test_a_subscriptions_deliveries_are_listed_in_event_order_by_state(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event(f"e{n}") for n in range(5)], T0)
    e0, e1, e2, e3, _ = await pending(store, "s1")
    await ack(store, e0, 1)
    await fail(store, e1, 1)
    await ack(store, await fail(store, e2, 1), 2)
    await store.settle([settlement(e3, DeadLetter("permanent"))], T0 + 5)
    everything = await listing(store)
    assert [row for page in everything for row in page] == [
        "e0 acked",
        "e1 pending",
        "e2 acked",
        "e3 dropped",
        "e4 pending",
    ]
    assert [len(page) for page in everything] == [2, 2, 1]
    assert await listing(store, "acked", limit=10) == [["e0 acked", "e2 acked"]]
    assert await listing(store, "pending", limit=1) == [["e1 pending"], ["e4 pending"]]
