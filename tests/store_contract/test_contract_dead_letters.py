"""Redrive and purge of a dead-letter topic (RELIABILITY R18): redrive moves a dead letter back
to its subscription as a fresh delivery of the original event, and out of the dead-letter topic,
in one step; purge deletes it. The dead letter's own deliveries (to the dead-letter topic's
subscribers) are dropped and counted either way."""

from __future__ import annotations

import pytest

from gateway.policy.deadletters import DL_ATTRIBUTES
from gateway.problems import NotFound
from gateway.store.base import Store
from tests.store_contract.support import (
    DAY,
    T0,
    DeadLetter,
    Routing,
    Selection,
    assert_reconciled,
    document,
    event,
    events,
    pending,
    pending_ids,
    settlement,
    stored_ids,
    topic,
)

LATER = T0 + 100


def retention_of(subscription: str) -> float | None:
    return DAY if subscription in ("s1", "s2") else None


async def dead_lettered(store: Store, routing: Routing, count: int = 3) -> None:
    """`count` events on `orders` given up by s1 into `dead`, which `watcher` subscribes to."""
    routing.add("orders", "s1", dead_letter="dead")
    routing.add("dead", "watcher")
    await store.put_topic(topic("orders"))
    await store.put_topic(topic("dead"))
    await store.publish("orders", events("e", count), T0)
    given_up = [
        settlement(delivery, DeadLetter("exhausted"), dead_letter="dead")
        for delivery in await pending(store, "s1")
    ]
    await store.settle(given_up, T0 + 1)
    assert await stored_ids(store, "dead") == [f"e{n}" for n in range(count)]


async def test_redrive_makes_a_dead_letter_claimable_again_by_its_subscription(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 1)
    result = await store.redrive("dead", Selection(), retention_of, LATER)
    assert (result.handled, result.skipped) == (1, 0)
    assert "s1" in result.woken
    [again] = await store.claim("s1", LATER, 10, frozenset())
    redriven = document(again.payload)
    original = document((await store.browse("orders", None, 1)).events[0].payload)
    assert redriven == original  # the event itself: same id and source, no dl* attributes
    assert not set(redriven) & set(DL_ATTRIBUTES)
    assert again.attempts == 0
    assert again.expires == LATER + DAY  # the subscription's retention, from the redrive
    assert await stored_ids(store, "dead") == []
    counts = await assert_reconciled(store, "s1")
    assert (counts["published"], counts["deadlettered"], counts["pending"]) == (2, 1, 1)


async def test_redrive_drops_the_dead_letters_own_deliveries_and_counts_them(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 2)
    assert len(await pending(store, "watcher")) == 2
    await store.redrive("dead", Selection(), retention_of, LATER)
    counts = await assert_reconciled(store, "watcher")
    assert (counts["dropped"], counts["dropped.redriven"], counts["pending"]) == (2, 2, 0)


async def test_redrive_of_selected_ids_leaves_the_other_dead_letters(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 3)
    result = await store.redrive("dead", Selection(ids=frozenset({"e1"})), retention_of, LATER)
    assert result.handled == 1
    assert await stored_ids(store, "dead") == ["e0", "e2"]
    assert await pending_ids(store, "s1") == ["e1"]


async def test_redriving_twice_duplicates_nothing(store: Store, routing: Routing) -> None:
    await dead_lettered(store, routing, 2)
    await store.redrive("dead", Selection(), retention_of, LATER)
    second = await store.redrive("dead", Selection(), retention_of, LATER + 1)
    assert (second.handled, second.skipped) == (0, 0)
    assert sorted(await pending_ids(store, "s1")) == ["e0", "e1"]


async def test_a_dead_letter_whose_subscription_is_gone_is_skipped_and_kept(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 2)
    result = await store.redrive("dead", Selection(), lambda name: None, LATER)
    assert (result.handled, result.skipped) == (0, 2)
    assert await stored_ids(store, "dead") == ["e0", "e1"]
    assert await pending_ids(store, "s1") == []


async def test_purge_deletes_the_selected_dead_letters_and_counts_their_deliveries_dropped(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 3)
    result = await store.purge("dead", Selection(ids=frozenset({"e0", "e2"})))
    assert (result.handled, result.skipped) == (2, 0)
    assert await stored_ids(store, "dead") == ["e1"]
    assert await store.event_count("dead") == 1
    assert await pending_ids(store, "watcher") == ["e1"]
    counts = await assert_reconciled(store, "watcher")
    assert (counts["dropped"], counts["dropped.purged"]) == (2, 2)
    assert await pending_ids(store, "s1") == []  # nothing was redriven


async def test_purging_everything_empties_the_dead_letter_topic(
    store: Store, routing: Routing
) -> None:
    await dead_lettered(store, routing, 3)
    result = await store.purge("dead", Selection())
    assert result.handled == 3
    assert await stored_ids(store, "dead") == []
    assert await store.event_count("dead") == 0
    await assert_reconciled(store, "watcher")
    await assert_reconciled(store, "s1")


async def test_redrive_and_purge_of_an_unknown_topic_are_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.redrive("nowhere", Selection(), retention_of, LATER)
    with pytest.raises(NotFound):
        await store.purge("nowhere", Selection())


async def test_purge_by_reason_leaves_other_reasons(store: Store, routing: Routing) -> None:
    await store.put_topic(topic("dead"))
    letters = [event("p", dlreason="permanent"), event("x", dlreason="exhausted")]
    await store.publish("dead", letters, T0)
    result = await store.purge("dead", Selection(reason="permanent"))
    assert result.handled == 1
    assert await stored_ids(store, "dead") == ["x"]
