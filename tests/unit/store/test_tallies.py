"""The write transaction's tallies (gateway.store.tallies): the last seq, topic retention and
counters that the operations of one commit share, read once and written just before the commit.
Each test puts several operations into one transaction on purpose (the writer thread is held
while they queue), on real LMDB."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import orjson

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.problems import InvalidRequest, NotFound
from gateway.store.lmdb.acks import add_to_counter
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.store import LmdbStore
from gateway.store.records import Selection
from tests.conftest import FixedRouting

DAY = 86_400.0
NOW = 1_000_000.0


def event(event_id: str) -> IncomingEvent:
    return IncomingEvent("/shop", event_id, {}, orjson.dumps({"id": event_id}))


@contextlib.asynccontextmanager
async def opened(path: Path) -> AsyncIterator[LmdbStore]:
    store = LmdbStore(path)
    try:
        yield store
    finally:
        store.close()


async def in_one_commit(store: LmdbStore, *writes: Awaitable[Any]) -> list[Any]:
    """Run `writes` in one write transaction: the writer thread is held in an operation of
    its own while they queue, then all of them are gathered into the next commit."""
    entered, release = threading.Event(), threading.Event()

    def hold(txn: Transaction) -> None:
        entered.set()
        release.wait(5)

    held = asyncio.ensure_future(store.write(hold))
    assert await asyncio.to_thread(entered.wait, 5)
    commits = store.commits
    tasks = [asyncio.ensure_future(write) for write in writes]
    await asyncio.sleep(0)  # each task runs to its submit: all are queued now
    release.set()
    await held
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert store.commits == commits + 2, "the writes did not share one commit"
    return results


async def seqs(store: LmdbStore, topic: str = "orders") -> list[int]:
    return [stored.seq for stored in (await store.browse(topic, None, 1000)).events]


async def test_publishes_in_one_commit_take_consecutive_seqs_and_are_counted(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        await store.put_topic(TopicSettings("audit", DAY))
        await in_one_commit(
            store,
            store.publish("orders", [event("a"), event("b")], NOW),
            store.publish("audit", [event("c")], NOW),
            store.publish("orders", [event("a"), event("d")], NOW),  # "a": a duplicate
        )
        assert await seqs(store, "orders") == [1, 2, 4]
        assert await seqs(store, "audit") == [3]
        assert (await store.event_count("orders"), await store.event_count("audit")) == (3, 1)
    async with opened(tmp_path) as store:  # the last seq was written: seqs go on after it
        await store.publish("audit", [event("e")], NOW)
        assert await seqs(store, "audit") == [3, 5]
        assert await store.event_count("audit") == 2


async def test_an_operation_that_fails_leaves_the_others_counted_once(tmp_path: Path) -> None:
    """The committer re-runs the batch without the failed operation; what the first run
    tallied must not be written as well."""

    def refuse(txn: Transaction) -> None:
        raise InvalidRequest("refused on purpose")

    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        store.routing = FixedRouting(("s1", 0.0))
        results = await in_one_commit(
            store,
            store.publish("orders", [event("a")], NOW),
            store.write(refuse),
            store.publish("orders", [event("b")], NOW),
        )
        assert isinstance(results[1], InvalidRequest)
        assert await seqs(store) == [1, 2]
        assert await store.event_count("orders") == 2
        assert store.deliveries.counters("s1")["published"] == 2


async def test_a_topic_deleted_in_the_commit_of_a_publish_keeps_no_count(tmp_path: Path) -> None:
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        results = await in_one_commit(
            store,
            store.publish("orders", [event("a"), event("b")], NOW),
            store.delete_topic("orders"),
            store.publish("orders", [event("c")], NOW),
        )
        assert isinstance(results[2], NotFound)
        await store.put_topic(TopicSettings("orders", DAY))
        assert await store.event_count("orders") == 0
        assert await seqs(store) == []


async def test_a_publish_after_a_retention_change_in_its_commit_uses_the_new_retention(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        await store.publish("orders", [event("a")], NOW)
        later = NOW + 60
        first, _, again = await in_one_commit(
            store,
            store.publish("orders", [event("a")], later),  # within a day: a duplicate
            store.put_topic(TopicSettings("orders", 30.0)),
            store.publish("orders", [event("a")], later),  # 60 s on, retention 30 s: new
        )
        assert (first.accepted, first.duplicates) == (0, 1)
        assert (again.accepted, again.duplicates) == (1, 0)


async def test_a_subscription_deleted_in_the_commit_of_a_publish_keeps_no_counters(
    tmp_path: Path,
) -> None:
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        store.routing = FixedRouting(("s1", 0.0))
        await in_one_commit(
            store,
            store.publish("orders", [event("a")], NOW),
            store.write(lambda txn: store.deliveries.delete_subscription(txn, "s1")),
        )
        assert store.deliveries.counters("s1")["published"] == 0
        assert store.deliveries.pending("s1") == 0


async def test_a_purge_in_the_commit_of_a_publish_to_its_topic_leaves_the_count_right(
    tmp_path: Path,
) -> None:
    """The count is kept at 0 or more: a purge of the event just published, in the same
    commit, must not leave the count at 1 (every change to it goes through the tallies)."""
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("dl", DAY))
        await in_one_commit(
            store,
            store.publish("dl", [event("a")], NOW),
            store.purge("dl", Selection()),
        )
        assert await seqs(store, "dl") == []
        assert await store.event_count("dl") == 0


async def test_subscription_counters_added_to_directly_in_the_commit_are_added_to(
    tmp_path: Path,
) -> None:
    """Acks add to counters directly (in the ack writer process too); the tallied counts of
    the same commit add to what they wrote."""
    async with opened(tmp_path) as store:
        await store.put_topic(TopicSettings("orders", DAY))
        store.routing = FixedRouting(("s1", 0.0))

        def acked_elsewhere(txn: Transaction) -> None:
            add_to_counter(txn, store.db["meta"], "s1", "published", 5)

        await in_one_commit(
            store,
            store.publish("orders", [event("a")], NOW),
            store.write(acked_elsewhere),
        )
        assert store.deliveries.counters("s1")["published"] == 1 + 5
