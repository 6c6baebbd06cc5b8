"""What survives closing and opening the store again, what a failed commit leaves (RELIABILITY
R3a: the publish raises, and after reopening its events are absent or whole, never partial),
and the statistics the metrics and readiness read."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest

from gateway.problems import StoreFailure
from gateway.store.base import Store
from tests.store_contract.conftest import Faults, Opened
from tests.store_contract.support import (
    T0,
    Ack,
    RetryAt,
    Routing,
    assert_reconciled,
    document,
    event,
    events,
    pending,
    settlement,
    stored_ids,
    topic,
)

Reopen = Callable[[], Store]
NONE: frozenset[int] = frozenset()


async def test_events_and_dedup_survive_reopening(
    store: Store, routing: Routing, reopen: Reopen
) -> None:
    """R4: the same pair before and after a restart: accepted once, one delivery."""
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    sent = events("e", 3)
    await store.publish("orders", sent, T0)
    store = reopen()
    assert [s.payload for s in (await store.browse("orders", None, 10)).events] == [
        e.payload for e in sent
    ]
    result = await store.publish("orders", [event("e1"), event("e3")], T0 + 1)
    assert (result.accepted, result.duplicates) == (1, 1)
    assert await stored_ids(store, "orders") == ["e0", "e1", "e2", "e3"]
    assert sorted(document(d.payload)["id"] for d in await pending(store, "s1")) == [
        "e0",
        "e1",
        "e2",
        "e3",
    ]


async def test_due_deliveries_and_counters_survive_reopening(
    store: Store, routing: Routing, reopen: Reopen
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", 3), T0)
    acked, retried, _ = await pending(store, "s1")
    await store.settle([settlement(acked, Ack())], T0 + 1)
    await store.settle([settlement(retried, RetryAt(T0 + 60, "503"))], T0 + 1)
    before = await store.counters("s1")
    store = reopen()
    assert await store.counters("s1") == before
    [due_now] = await store.claim("s1", T0 + 1, 10, NONE)
    assert document(due_now.payload)["id"] == "e2"
    assert await store.next_due("s1", T0 + 1) == T0 + 60
    [later] = await store.claim("s1", T0 + 60, 10, {due_now.seq})
    assert (document(later.payload)["id"], later.attempts) == ("e1", 1)
    counts = await assert_reconciled(store, "s1")
    assert (counts["acked"], counts["pending"]) == (1, 2)


async def test_topic_subscription_and_extension_rows_survive_reopening(
    store: Store, reopen: Reopen
) -> None:
    await store.put_topic(topic("orders", retention=3600.0))
    await store.put_subscription("s1", b'{"name":"s1"}', lambda: lambda: None)
    await store.put_extension_row("pretry", "p1", b"{}")
    store = reopen()
    assert [(t.name, t.retention) for t in await store.topics()] == [("orders", 3600.0)]
    assert await store.subscription_rows() == [("s1", b'{"name":"s1"}')]
    assert await store.extension_row("pretry", "p1") == b"{}"


async def test_sequence_numbers_keep_growing_across_reopening(store: Store, reopen: Reopen) -> None:
    """A cursor from before a restart still pages on to events published after it."""
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("a", 3), T0)
    cursor = (await store.browse("orders", None, 2)).next
    store = reopen()
    await store.publish("orders", events("b", 2), T0 + 1)
    page = await store.browse("orders", cursor, 10)
    assert [document(s.payload)["id"] for s in page.events] == ["a2", "b0", "b1"]


@pytest.mark.parametrize("n", range(1, 6))
async def test_the_nth_commit_failing_raises_and_leaves_each_event_absent_or_whole(
    store: Store, routing: Routing, faults: Faults, reopen: Reopen, n: int
) -> None:
    """R3a: eight publishes of two events each, one commit each; the n-th commit fails."""
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    faults.fail_nth(n)
    accepted: list[str] = []
    failures = 0
    for index in range(8):
        batch = [event(f"p{index}a"), event(f"p{index}b")]
        try:
            await store.publish("orders", batch, T0 + index)
        except StoreFailure:
            failures += 1
            continue
        accepted += [e.id for e in batch]
    assert (failures, faults.failed) == (1, 1)
    store = reopen()
    sent = {f"p{index}{part}": event(f"p{index}{part}") for index in range(8) for part in "ab"}
    stored = (await store.browse("orders", None, 100)).events
    assert [document(s.payload)["id"] for s in stored] == accepted
    assert all(s.payload == sent[document(s.payload)["id"]].payload for s in stored)
    assert sorted(document(d.payload)["id"] for d in await pending(store, "s1")) == sorted(accepted)
    counts = await assert_reconciled(store, "s1")
    assert counts["published"] == len(accepted) == 14
    lost = f"p{n - 1}a"  # the failed publish may be sent again: it is new, not a duplicate
    assert (await store.publish("orders", [sent[lost]], T0 + 9)).accepted == 1


async def test_a_failed_settle_commit_leaves_the_delivery_as_it_was(
    store: Store, routing: Routing, faults: Faults, reopen: Reopen
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("e1")], T0)
    [delivery] = await pending(store, "s1")
    faults.fail_nth(1)
    with pytest.raises(StoreFailure):
        await store.settle([settlement(delivery, RetryAt(T0 + 60, "503"))], T0 + 1)
    store = reopen()
    [still] = await store.claim("s1", T0, 10, NONE)
    assert (still.seq, still.attempts, still.due) == (delivery.seq, 0, T0)
    assert (await assert_reconciled(store, "s1"))["pending"] == 1


async def test_a_failed_subscription_commit_stores_no_row(
    store: Store, faults: Faults, reopen: Reopen
) -> None:
    faults.fail_nth(1)
    with pytest.raises(StoreFailure):
        await store.put_subscription("s1", b'{"name":"s1"}', lambda: lambda: None)
    assert await store.subscription_rows() == []
    store = reopen()
    assert await store.subscription_rows() == []


async def test_statistics_count_commits_and_used_storage(store: Store) -> None:
    before = store.statistics()  # a snapshot, not awaited
    await store.put_topic(topic("orders"))
    for n in range(3):
        await store.publish("orders", [event(f"e{n}")], T0)
    after = store.statistics()
    assert after.commits >= before.commits + 4  # each awaited write is committed
    assert after.used_bytes > 0
    assert 0 < after.capacity_bytes <= after.max_bytes
    assert after.used_bytes <= after.capacity_bytes
    assert after.full is False


async def test_used_storage_grows_as_events_are_stored(store: Store) -> None:
    await store.put_topic(topic("orders"))
    before = store.statistics().used_bytes
    big = [event(f"e{n}", pad="x" * 4000) for n in range(200)]
    await store.publish("orders", big, T0)
    assert store.statistics().used_bytes > before


async def test_maintenance_runs_beside_the_store_and_stops_when_cancelled(store: Store) -> None:
    await store.put_topic(topic("orders"))
    task = asyncio.create_task(store.maintain())
    await asyncio.sleep(0)
    await store.publish("orders", events("e", 3), T0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert await stored_ids(store, "orders") == ["e0", "e1", "e2"]


async def test_on_commit_hears_of_each_commit_with_its_operations(
    store: Store, opened: Opened
) -> None:
    """What the commit metrics count: `on_commit(operations, seconds)` after each commit."""
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", 3), T0)
    seen = list(opened.commits_seen)
    assert sum(operations for operations, _ in seen) >= 2  # the topic row and the publish
    assert all(operations >= 1 and seconds >= 0 for operations, seconds in seen)
