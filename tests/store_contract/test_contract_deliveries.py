"""Fan-out, delivery delay, claim order and next due, and what each settlement does (ack,
retry, dead letter), with counters that reconcile: per subscription,
published = acked + deadlettered + dropped + pending (RELIABILITY R7, R8)."""

from __future__ import annotations

import dataclasses
from typing import Any

from gateway.policy.deadletters import DL_ATTRIBUTES
from gateway.policy.outcomes import Decision
from gateway.store.base import Store
from tests.store_contract.support import (
    DAY,
    T0,
    WALL,
    Ack,
    DeadLetter,
    Failure,
    RetryAt,
    Routing,
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

NONE: frozenset[int] = frozenset()


async def published(store: Store, routing: Routing, count: int = 1, **route: Any) -> list[Any]:
    """`count` events on `orders`, routed to s1; returns s1's deliveries, earliest first."""
    routing.add("orders", "s1", **route)
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", count), T0)
    return await pending(store, "s1")


async def test_each_new_event_fans_out_to_every_routed_subscription(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1")
    routing.add("orders", "s2")
    routing.add("audit", "s3")
    await store.put_topic(topic("orders"))
    await store.put_topic(topic("audit"))
    result = await store.publish("orders", events("e", 2), T0)
    assert result.subscriptions == {"s1", "s2"}
    assert await pending_ids(store, "s1") == await pending_ids(store, "s2") == ["e0", "e1"]
    assert await pending_ids(store, "s3") == []
    assert (await store.counters("s1"))["published"] == 2


async def test_fanout_sends_an_event_only_where_routing_says(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1", where=lambda attributes: attributes.get("region") == "eu")
    await store.put_topic(topic("orders"))
    result = await store.publish("orders", [event("eu1", region="eu"), event("us1")], T0)
    assert result.accepted == 2
    assert await pending_ids(store, "s1") == ["eu1"]
    assert (await store.counters("s1"))["published"] == 1


async def test_a_duplicate_fans_out_nothing(store: Store, routing: Routing) -> None:
    await published(store, routing)
    result = await store.publish("orders", [event("e0")], T0 + 1)
    assert result.subscriptions == frozenset()
    assert await pending_ids(store, "s1") == ["e0"]
    assert (await store.counters("s1"))["published"] == 1


async def test_a_delayed_subscription_is_not_claimable_before_its_delay(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1", delay=30.0)
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("e1")], T0)
    assert await store.claim("s1", T0 + 29, 10, NONE) == []
    [delivery] = await store.claim("s1", T0 + 30, 10, NONE)
    assert delivery.due == T0 + 30
    assert await store.next_due("s1", T0) == T0 + 30


async def test_a_claim_returns_the_event_with_no_attempts_yet(
    store: Store, routing: Routing
) -> None:
    [delivery] = await published(store, routing)
    assert (delivery.subscription, delivery.attempts, delivery.due) == ("s1", 0, T0)
    assert document(delivery.payload)["id"] == "e0"
    assert delivery.payload == (await store.browse("orders", None, 1)).events[0].payload


async def test_claim_returns_the_earliest_due_first(store: Store, routing: Routing) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    for at in (T0 + 20, T0 + 10, T0 + 30):  # published out of due order
        await store.publish("orders", [event(f"at{at - T0:.0f}")], at)
    claimed = await store.claim("s1", T0 + 100, 10, NONE)
    assert [document(d.payload)["id"] for d in claimed] == ["at10", "at20", "at30"]
    assert [d.due for d in claimed] == [T0 + 10, T0 + 20, T0 + 30]
    assert len(await store.claim("s1", T0 + 20, 10, NONE)) == 2  # only what is due by then


async def test_claim_leaves_out_the_deliveries_in_skip(store: Store, routing: Routing) -> None:
    first, second, third = await published(store, routing, 3)
    claimed = await store.claim("s1", T0, 10, {first.seq, third.seq})
    assert [d.seq for d in claimed] == [second.seq]


async def test_claim_returns_at_most_limit_deliveries(store: Store, routing: Routing) -> None:
    every = await published(store, routing, 5)
    claimed = await store.claim("s1", T0, 2, NONE)
    assert [d.seq for d in claimed] == [d.seq for d in every[:2]]


async def test_next_due_is_the_earliest_due_time_after_the_one_given(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    assert await store.next_due("s1", T0) is None
    await store.publish("orders", [event("a")], T0 + 10)
    await store.publish("orders", [event("b")], T0 + 50)
    assert await store.next_due("s1", T0) == T0 + 10
    assert await store.next_due("s1", T0 + 10) == T0 + 50
    assert await store.next_due("s1", T0 + 50) is None


async def test_an_ack_ends_the_delivery_and_is_counted(store: Store, routing: Routing) -> None:
    first, second = await published(store, routing, 2)
    assert await store.settle([settlement(first, Ack())], T0 + 1) == set()
    assert [d.seq for d in await pending(store, "s1")] == [second.seq]
    counts = await assert_reconciled(store, "s1")
    assert (counts["acked"], counts["pending"]) == (1, 1)


async def test_an_ack_that_does_not_say_when_it_was_due_is_the_same_ack(
    store: Store, routing: Routing
) -> None:
    """`Settlement.due` only lets a store skip a read (LMDB's ack writer); without it the
    outcome is the same."""
    first, second = await published(store, routing, 2)
    bare = dataclasses.replace(settlement(first, Ack()), due=None)
    await store.settle([bare], T0 + 1)
    assert [d.seq for d in await pending(store, "s1")] == [second.seq]
    counts = await assert_reconciled(store, "s1")
    assert (counts["acked"], counts["pending"]) == (1, 1)


async def test_acking_twice_counts_once(store: Store, routing: Routing) -> None:
    [delivery] = await published(store, routing)
    await store.settle([settlement(delivery, Ack())], T0 + 1)
    await store.settle([settlement(delivery, Ack())], T0 + 2)
    counts = await assert_reconciled(store, "s1")
    assert (counts["acked"], counts["pending"]) == (1, 0)


async def test_a_retry_moves_the_due_time_and_keeps_the_attempts(
    store: Store, routing: Routing
) -> None:
    [delivery] = await published(store, routing)
    failure = Failure("503", None, b"busy")
    retry = settlement(delivery, RetryAt(T0 + 40, "503"), failure=failure)
    await store.settle([retry], T0 + 1)
    assert await store.claim("s1", T0 + 39, 10, NONE) == []
    assert await store.next_due("s1", T0) == T0 + 40
    [again] = await store.claim("s1", T0 + 40, 10, NONE)
    assert (again.seq, again.attempts, again.due) == (delivery.seq, 1, T0 + 40)
    await store.settle([settlement(again, RetryAt(T0 + 100, "503"), failure=failure)], T0 + 41)
    [third] = await store.claim("s1", T0 + 100, 10, NONE)
    assert third.attempts == 2
    counts = await assert_reconciled(store, "s1")
    assert counts["pending"] == 1 and counts["acked"] == 0


async def test_a_dead_letter_is_appended_to_the_dead_letter_topic_with_dl_attributes(
    store: Store, routing: Routing
) -> None:
    await store.put_topic(topic("dead"))
    [delivery] = await published(store, routing, dead_letter="dead")
    failure = Failure("500", None, b"oops")
    given_up = settlement(
        delivery, DeadLetter("exhausted"), attempts=5, failure=failure, dead_letter="dead"
    )
    await store.settle([given_up], T0 + 1)
    [letter] = (await store.browse("dead", None, 10)).events
    dead = document(letter.payload)
    original = document((await store.browse("orders", None, 1)).events[0].payload)
    assert {key: dead[key] for key in original} == original  # id, source, type, data kept
    assert dead["dlsubscription"] == "s1"
    assert (dead["dlreason"], dead["dlattempts"], dead["dlstatus"]) == ("exhausted", "5", "500")
    assert dead["dlbody"] == "oops"
    assert set(dead) - set(original) <= set(DL_ATTRIBUTES)
    counts = await assert_reconciled(store, "s1")
    assert (counts["deadlettered"], counts["deadlettered.exhausted"], counts["pending"]) == (
        1,
        1,
        0,
    )


async def test_a_dead_letter_fans_out_to_the_dead_letter_topics_subscriptions(
    store: Store, routing: Routing
) -> None:
    routing.add("dead", "watcher")
    await store.put_topic(topic("dead"))
    [delivery] = await published(store, routing, dead_letter="dead")
    woken = await store.settle(
        [settlement(delivery, DeadLetter("permanent"), dead_letter="dead")], T0 + 1
    )
    assert woken == {"watcher"}
    [watched] = await pending(store, "watcher")
    assert document(watched.payload)["dlreason"] == "permanent"
    await assert_reconciled(store, "watcher")


async def test_a_dead_letter_without_a_dead_letter_topic_is_dropped_and_counted(
    store: Store, routing: Routing
) -> None:
    [delivery] = await published(store, routing)
    await store.settle([settlement(delivery, DeadLetter("permanent"))], T0 + 1)
    counts = await assert_reconciled(store, "s1")
    assert (counts["dropped"], counts["dropped.permanent"], counts["pending"]) == (1, 1, 0)


async def test_a_dead_letter_is_made_once_even_if_settled_twice(
    store: Store, routing: Routing
) -> None:
    await store.put_topic(topic("dead"))
    [delivery] = await published(store, routing, dead_letter="dead")
    given_up = settlement(delivery, DeadLetter("exhausted"), dead_letter="dead")
    await store.settle([given_up, given_up], T0 + 1)
    await store.settle([given_up], T0 + 2)
    assert len(await stored_ids(store, "dead")) == 1
    assert (await assert_reconciled(store, "s1"))["deadlettered"] == 1


async def test_counters_reconcile_after_a_mix_of_outcomes(store: Store, routing: Routing) -> None:
    await store.put_topic(topic("dead"))
    deliveries = await published(store, routing, 6, dead_letter="dead")
    decisions: list[Decision] = [Ack(), Ack(), RetryAt(T0 + 60, "503"), DeadLetter("permanent")]
    settled = [
        settlement(d, decision, dead_letter="dead")
        for d, decision in zip(deliveries, decisions, strict=False)
    ]
    await store.settle(settled, T0 + 1)
    counts = await assert_reconciled(store, "s1")
    assert counts == {
        **counts,
        "published": 6,
        "acked": 2,
        "deadlettered": 1,
        "dropped": 0,
        "pending": 3,
    }


async def test_oldest_pending_is_when_the_oldest_pending_delivery_was_created(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1", delay=5.0)
    await store.put_topic(topic("orders"))
    assert await store.oldest_pending("s1") is None
    await store.publish("orders", [event("a")], T0)
    await store.publish("orders", [event("b")], T0 + 10)
    assert await store.oldest_pending("s1") == T0  # created then, though due 5 s later
    first = (await store.claim("s1", T0 + 5, 1, NONE))[0]
    await store.settle([settlement(first, Ack())], T0 + 6)
    assert await store.oldest_pending("s1") == T0 + 10


async def test_a_pending_delivery_can_be_looked_up_with_what_its_last_attempt_saw(
    store: Store, routing: Routing
) -> None:
    [delivery] = await published(store, routing)
    assert delivery.expires == T0 + DAY  # the topic's retention from when it was published
    failure = Failure("503", "upstream busy", b"busy")
    await store.settle([settlement(delivery, RetryAt(T0 + 40, "503"), failure=failure)], T0 + 1)
    found = await store.delivery("s1", delivery.seq)
    assert found is not None
    assert (found.seq, found.attempts, found.due, found.expires) == (
        delivery.seq,
        1,
        T0 + 40,
        T0 + DAY,
    )
    assert found.last_failure == failure
    assert await store.delivery("s1", delivery.seq + 1000) is None
    [again] = await store.claim("s1", T0 + 40, 10, NONE)
    await store.settle([settlement(again, Ack())], T0 + 41)
    assert await store.delivery("s1", delivery.seq) is None


async def test_last_outcome_shows_the_last_success_and_the_last_failure(
    store: Store, routing: Routing
) -> None:
    first, second = await published(store, routing, 2)
    empty = await store.last_outcome("s1")
    assert (empty.success_time, empty.failure_time) == (None, None)
    failure = Failure("503", None, b"busy")
    retry = settlement(first, RetryAt(T0 + 40, "503"), failure=failure, wall=WALL + 1)
    await store.settle([retry], T0 + 1)
    failed = await store.last_outcome("s1")
    assert (failed.failure_time, failed.status, failed.success_time) == (WALL + 1, "503", None)
    await store.settle([settlement(second, Ack(), wall=WALL + 2)], T0 + 2)
    both = await store.last_outcome("s1")
    assert (both.success_time, both.failure_time, both.status) == (WALL + 2, WALL + 1, "503")


async def test_a_dead_letter_to_a_topic_that_does_not_exist_is_dropped_and_counted(
    store: Store, routing: Routing
) -> None:
    [delivery] = await published(store, routing, dead_letter="gone")
    await store.settle([settlement(delivery, DeadLetter("exhausted"), dead_letter="gone")], T0 + 1)
    counts = await assert_reconciled(store, "s1")
    assert (counts["dropped"], counts["deadlettered"], counts["pending"]) == (1, 0, 0)
