"""Retention expiry (RELIABILITY R8): a sweep past an event's retention deletes it and settles
each delivery still pending: dead-lettered with reason `expired`, or dropped and counted when
the subscription has no dead-letter topic. Nothing disappears uncounted."""

from __future__ import annotations

from gateway.store.base import Store
from tests.store_contract.support import (
    DAY,
    T0,
    WALL,
    Ack,
    Failure,
    RetryAt,
    Routing,
    assert_reconciled,
    document,
    event,
    pending,
    pending_ids,
    settlement,
    stored_ids,
    topic,
)


async def backlog(store: Store, routing: Routing, dead_letter: str | None) -> None:
    """`old` at T0 and `new` 12 h later on `orders` (retention 1 day), both pending for s1."""
    routing.add("orders", "s1", dead_letter=dead_letter)
    await store.put_topic(topic("orders", retention=DAY))
    if dead_letter is not None:
        await store.put_topic(topic(dead_letter, retention=7 * DAY))
    await store.publish("orders", [event("old")], T0)
    await store.publish("orders", [event("new")], T0 + DAY / 2)


async def test_a_sweep_dead_letters_pending_deliveries_whose_retention_ended(
    store: Store, routing: Routing
) -> None:
    await backlog(store, routing, dead_letter="dead")
    [old, _] = await pending(store, "s1")
    failure = Failure("503", None, b"down")
    await store.settle([settlement(old, RetryAt(T0 + 600, "503"), failure=failure)], T0 + 1)
    result = await store.sweep(T0 + DAY, WALL)
    assert result.expired_events == 1
    assert await stored_ids(store, "orders") == ["new"]
    assert await pending_ids(store, "s1") == ["new"]
    [letter] = [
        document(stored.payload) for stored in (await store.browse("dead", None, 10)).events
    ]
    assert (letter["id"], letter["dlreason"], letter["dlsubscription"]) == ("old", "expired", "s1")
    assert (letter["dlattempts"], letter["dlstatus"]) == ("1", "503")  # the last attempt's
    counts = await assert_reconciled(store, "s1")
    assert (counts["deadlettered"], counts["deadlettered.expired"], counts["pending"]) == (1, 1, 1)


async def test_a_sweep_drops_and_counts_pending_deliveries_with_no_dead_letter_topic(
    store: Store, routing: Routing
) -> None:
    await backlog(store, routing, dead_letter=None)
    await store.sweep(T0 + DAY * 2, WALL)
    assert await stored_ids(store, "orders") == []
    counts = await assert_reconciled(store, "s1")
    assert (counts["dropped"], counts["dropped.expired"], counts["pending"]) == (2, 2, 0)


async def test_a_sweep_keeps_events_within_their_retention(store: Store, routing: Routing) -> None:
    await backlog(store, routing, dead_letter=None)
    result = await store.sweep(T0 + DAY - 1, WALL)
    assert result.expired_events == 0
    assert await stored_ids(store, "orders") == ["old", "new"]
    assert (await assert_reconciled(store, "s1"))["pending"] == 2


async def test_a_sweep_leaves_settled_deliveries_settled(store: Store, routing: Routing) -> None:
    """An event delivered before its retention ended goes without a dead letter or a drop."""
    await backlog(store, routing, dead_letter="dead")
    [old, new] = await pending(store, "s1")
    await store.settle([settlement(old, Ack()), settlement(new, Ack())], T0 + DAY / 2 + 1)
    await store.sweep(T0 + 2 * DAY, WALL)
    assert await stored_ids(store, "orders") == []
    assert await stored_ids(store, "dead") == []
    counts = await assert_reconciled(store, "s1")
    assert (counts["acked"], counts["deadlettered"], counts["dropped"]) == (2, 0, 0)


async def test_reconciled_at_every_step_of_a_day_and_a_half(store: Store, routing: Routing) -> None:
    """Events published hour by hour, never delivered: each sweep moves exactly the expired
    ones into dropped, and the counters add up at every step."""
    routing.add("orders", "s1")
    await store.put_topic(topic("orders", retention=DAY))
    hour = 3600.0
    for n in range(12):
        await store.publish("orders", [event(f"h{n}")], T0 + n * hour)
    for step in range(36):
        now = T0 + step * hour
        await store.sweep(now, WALL)
        counts = await assert_reconciled(store, "s1")
        expired = max(0, min(12, step - 24 + 1))  # h{n} ends at T0 + (n + 24) h
        assert (counts["dropped"], counts["pending"]) == (expired, 12 - expired), step
