"""Where a pending delivery lives (`gateway.store.deliveries`), on real LMDB.

A delivery not yet attempted is one `fresh` row, taken in seq order and acked with one delete;
a retried one is a `deliveries` row plus a `due` index row. These tests pin the moves between
the two, the order pages come out in when both hold due deliveries, and that a data directory
written before `fresh` existed is still delivered from.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.outcomes import Ack, Decision, RetryAt
from gateway.store import keys
from gateway.store.committer import Transaction
from gateway.store.deliveries import Settlement
from gateway.store.lmdb import LmdbStore
from gateway.store.scan import scan_keys

SUBSCRIPTION = "orders-sink"
DAY = 86_400.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LmdbStore]:
    opened = LmdbStore(tmp_path, fsync=False)
    yield opened
    opened.close()


async def enqueue(store: LmdbStore, seq: int, due: float, enqueued: float | None = None) -> None:
    payload = b'{"id": "%d"}' % seq  # carried in the row, as a redriven dead letter's is

    def run(txn: Transaction) -> None:
        store.deliveries.enqueue(
            txn, SUBSCRIPTION, "orders", seq, due, due + DAY, payload, enqueued=enqueued
        )

    await store.write(run)


async def settle(store: LmdbStore, seq: int, decision: Decision, due: float, attempts: int) -> None:
    settlement = Settlement(SUBSCRIPTION, seq, decision, attempts, None, due=due)
    await store.record([settlement], now=due)


def due_seqs(store: LmdbStore, now: float, limit: int = 100) -> list[int]:
    return [delivery.seq for delivery in store.deliveries.due(SUBSCRIPTION, now, limit, ())]


def rows(store: LmdbStore) -> dict[str, int]:
    prefix = keys.delivery_prefix(SUBSCRIPTION)

    def run(txn: Transaction) -> dict[str, int]:
        return {
            table: sum(1 for _ in scan_keys(txn, store.db[table], prefix))
            for table in ("fresh", "deliveries", "due")
        }

    result: dict[str, int] = store.read(run)
    return result


async def test_a_fresh_delivery_is_one_row_and_its_ack_leaves_none(store: LmdbStore) -> None:
    await enqueue(store, 1, due=100.0)
    assert rows(store) == {"fresh": 1, "deliveries": 0, "due": 0}
    assert due_seqs(store, now=100.0) == [1]
    await settle(store, 1, Ack(), due=100.0, attempts=1)
    assert rows(store) == {"fresh": 0, "deliveries": 0, "due": 0}
    assert store.deliveries.counters(SUBSCRIPTION)["acked"] == 1
    assert store.deliveries.pending(SUBSCRIPTION) == 0


async def test_a_retry_moves_it_to_the_due_index_and_its_ack_removes_both(
    store: LmdbStore,
) -> None:
    await enqueue(store, 1, due=100.0)
    await settle(store, 1, RetryAt(200.0, "status"), due=100.0, attempts=1)
    assert rows(store) == {"fresh": 0, "deliveries": 1, "due": 1}
    assert due_seqs(store, now=150.0) == []
    assert store.deliveries.next_due(SUBSCRIPTION, after=150.0) == 200.0
    (retried,) = store.deliveries.due(SUBSCRIPTION, 200.0, 10, ())
    assert (retried.seq, retried.state.attempts) == (1, 1)
    await settle(store, 1, Ack(), due=200.0, attempts=2)
    assert rows(store) == {"fresh": 0, "deliveries": 0, "due": 0}
    assert store.deliveries.counters(SUBSCRIPTION)["acked"] == 1


async def test_a_retry_due_before_fresh_deliveries_comes_first(store: LmdbStore) -> None:
    await enqueue(store, 1, due=100.0)
    await settle(store, 1, RetryAt(105.0, "status"), due=100.0, attempts=1)
    await enqueue(store, 2, due=104.0)
    await enqueue(store, 3, due=110.0)
    assert due_seqs(store, now=120.0) == [2, 1, 3]
    assert due_seqs(store, now=120.0, limit=2) == [2, 1]
    assert due_seqs(store, now=106.0) == [2, 1]


async def test_a_delayed_fresh_delivery_waits_for_its_due_time(store: LmdbStore) -> None:
    await enqueue(store, 1, due=160.0, enqueued=100.0)
    await enqueue(store, 2, due=170.0, enqueued=110.0)
    assert due_seqs(store, now=100.0) == []
    assert store.deliveries.next_due(SUBSCRIPTION, after=100.0) == 160.0
    assert due_seqs(store, now=165.0) == [1]
    in_flight = store.deliveries.due(SUBSCRIPTION, 165.0, 10, {1})
    assert in_flight == []
    assert store.deliveries.next_due(SUBSCRIPTION, after=165.0) == 170.0
    assert store.deliveries.oldest_pending(SUBSCRIPTION) == 100.0


async def test_oldest_pending_looks_at_fresh_and_retried_deliveries(store: LmdbStore) -> None:
    await enqueue(store, 1, due=100.0)
    await settle(store, 1, RetryAt(700.0, "status"), due=100.0, attempts=1)
    await enqueue(store, 2, due=110.0)
    assert store.deliveries.oldest_pending(SUBSCRIPTION) == 100.0
    assert store.deliveries.pending(SUBSCRIPTION) == 2


async def test_a_delivery_stored_before_fresh_existed_is_still_delivered_and_acked(
    store: LmdbStore,
) -> None:
    """Data directories written by earlier versions keep every delivery in `deliveries`
    with a `due` row, attempted or not."""
    state = keys.DeliveryState("orders", 7, 0, 100.0, 100.0 + DAY, payload=b"{}", enqueued=100.0)

    def write_old_layout(txn: Transaction) -> None:
        txn.put(
            keys.delivery_key(SUBSCRIPTION, 7),
            keys.encode_delivery(state),
            db=store.db["deliveries"],
        )
        txn.put(keys.due_key(SUBSCRIPTION, 100.0, 7), b"", db=store.db["due"])

    await store.write(write_old_layout)
    assert due_seqs(store, now=100.0) == [7]
    await settle(store, 7, Ack(), due=100.0, attempts=1)
    assert rows(store) == {"fresh": 0, "deliveries": 0, "due": 0}
