"""Publish with dedup (RELIABILITY R4): a (source, id) pair is stored once per topic within the
topic's retention, however it arrives; a batch is stored whole or not at all (R3a)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.problems import NotFound, StoreFailure
from gateway.store.base import Store
from tests.store_contract.conftest import Faults
from tests.store_contract.support import (
    DAY,
    T0,
    WALL,
    Routing,
    document,
    event,
    events,
    pending_ids,
    stored_ids,
    topic,
)


async def test_a_published_event_is_stored_as_given(store: Store) -> None:
    await store.put_topic(topic("orders"))
    sent = event("e1")
    result = await store.publish("orders", [sent], T0)
    assert (result.accepted, result.duplicates) == (1, 0)
    page = await store.browse("orders", None, 10)
    [stored] = page.events
    assert stored.payload == sent.payload
    assert stored.received == T0
    assert await store.event_count("orders") == 1


async def test_the_same_pair_twice_is_stored_once(store: Store) -> None:
    await store.put_topic(topic("orders"))
    first = await store.publish("orders", [event("e1")], T0)
    second = await store.publish("orders", [event("e1")], T0 + 1)
    assert (first.accepted, first.duplicates) == (1, 0)
    assert (second.accepted, second.duplicates) == (0, 1)
    assert await stored_ids(store, "orders") == ["e1"]


async def test_a_pair_repeated_within_one_batch_is_stored_once(store: Store) -> None:
    await store.put_topic(topic("orders"))
    result = await store.publish("orders", [event("a"), event("b"), event("a")], T0)
    assert (result.accepted, result.duplicates) == (2, 1)
    assert await stored_ids(store, "orders") == ["a", "b"]


async def test_a_batch_whose_commit_fails_stores_none_of_it(store: Store, faults: Faults) -> None:
    """All or nothing: retried after the failure, every event of it is new, none a duplicate."""
    await store.put_topic(topic("orders"))
    batch = events("b", 5)
    faults.fail_nth(1)
    with pytest.raises(StoreFailure):
        await store.publish("orders", batch, T0)
    assert faults.failed == 1
    assert await stored_ids(store, "orders") == []
    result = await store.publish("orders", batch, T0 + 1)
    assert (result.accepted, result.duplicates) == (5, 0)
    assert await stored_ids(store, "orders") == [f"b{n}" for n in range(5)]


async def test_fifty_concurrent_publishes_of_one_pair_store_one_event(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    results = await asyncio.gather(
        *(store.publish("orders", [event("same")], T0) for _ in range(50))
    )
    assert sum(result.accepted for result in results) == 1
    assert sum(result.duplicates for result in results) == 49
    assert await stored_ids(store, "orders") == ["same"]
    assert await pending_ids(store, "s1") == ["same"]  # one delivery, not fifty


async def test_a_2kb_source_and_a_2kb_id_still_dedup(store: Store) -> None:
    await store.put_topic(topic("orders"))
    huge = event("i" * 2048, source="/" + "s" * 2048)
    assert (await store.publish("orders", [huge], T0)).accepted == 1
    assert (await store.publish("orders", [huge], T0 + 1)).duplicates == 1
    assert await stored_ids(store, "orders") == ["i" * 2048]


async def test_long_pairs_that_differ_only_at_their_end_are_different_events(
    store: Store,
) -> None:
    await store.put_topic(topic("orders"))
    source = "/" + "s" * 2048
    pairs = [event("i" * 2048 + end, source=source) for end in "ab"]
    pairs.append(event("i" * 2048 + "a", source=source + "x"))
    result = await store.publish("orders", pairs, T0)
    assert (result.accepted, result.duplicates) == (3, 0)


async def test_the_same_pair_on_another_topic_is_another_event(store: Store) -> None:
    await store.put_topic(topic("orders"))
    await store.put_topic(topic("audit"))
    assert (await store.publish("orders", [event("x")], T0)).accepted == 1
    assert (await store.publish("audit", [event("x")], T0)).accepted == 1
    assert await stored_ids(store, "orders") == await stored_ids(store, "audit") == ["x"]


async def test_the_same_id_from_another_source_is_another_event(store: Store) -> None:
    await store.put_topic(topic("orders"))
    result = await store.publish("orders", [event("x", "/a"), event("x", "/b")], T0)
    assert (result.accepted, result.duplicates) == (2, 0)


async def test_the_pair_stays_a_duplicate_until_its_retention_ends(store: Store) -> None:
    await store.put_topic(topic("orders", retention=DAY))
    await store.publish("orders", [event("old")], T0)
    await store.sweep(T0 + DAY - 1, WALL)
    assert (await store.publish("orders", [event("old")], T0 + DAY - 1)).duplicates == 1
    assert await stored_ids(store, "orders") == ["old"]


async def test_after_retention_and_a_sweep_the_pair_is_accepted_as_new(store: Store) -> None:
    """R4: 24 h + 1 s later (injected time) the pair is new again, as documented."""
    await store.put_topic(topic("orders", retention=DAY))
    await store.publish("orders", [event("old")], T0)
    later = T0 + DAY + 1
    swept = await store.sweep(later, WALL)
    assert swept.expired_events == 1
    result = await store.publish("orders", [event("old")], later)
    assert (result.accepted, result.duplicates) == (1, 0)
    [stored] = (await store.browse("orders", None, 10)).events
    assert stored.received == later


async def test_a_publish_to_an_unknown_topic_is_not_found_and_stores_nothing(
    store: Store,
) -> None:
    await store.put_topic(topic("orders"))
    with pytest.raises(NotFound):
        await store.publish("nowhere", [event("e1")], T0)
    assert await stored_ids(store, "orders") == []


async def test_events_are_browsed_in_the_order_they_were_published(store: Store) -> None:
    await store.put_topic(topic("orders"))
    for n in range(3):
        await store.publish("orders", [event(f"x{n}"), event(f"y{n}")], T0 + n)
    page = await store.browse("orders", None, 100)
    ids = [document(stored.payload)["id"] for stored in page.events]
    assert ids == ["x0", "y0", "x1", "y1", "x2", "y2"]
    seqs = [stored.seq for stored in page.events]
    assert seqs == sorted(set(seqs))


async def test_a_publish_under_the_hint_is_stored(store: Store) -> None:
    await store.put_topic(topic("orders"))
    with store.publishing() as hint:
        result = await store.publish("orders", [event("h1")], T0, hint=hint)
    assert result.accepted == 1
    assert await stored_ids(store, "orders") == ["h1"]


async def test_a_hint_that_never_reaches_publish_leaves_later_publishes_working(
    store: Store,
) -> None:
    """A request that fails after the hint (bad body) withdraws it; the store carries on."""
    await store.put_topic(topic("orders"))
    with pytest.raises(ValueError), store.publishing():
        raise ValueError("the request body was refused")
    results = await asyncio.gather(
        *(store.publish("orders", [event(f"e{n}")], T0) for n in range(5))
    )
    assert sum(result.accepted for result in results) == 5
