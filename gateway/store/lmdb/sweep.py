"""The store side of the retention sweep (`gateway.ops.retention` schedules it): delete each
topic's events whose retention has ended, oldest first, settling their still-pending deliveries
as expired in the same transaction (dead-lettered, or dropped and counted).

Work is cut into batches of SWEEP_BATCH events, one write transaction each, so a large backlog
never holds the writer for long. Time comes in as arguments: the sweep reads no clock.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from gateway.config.settings import TopicSettings
from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.records import SweepResult

if TYPE_CHECKING:
    from gateway.store.lmdb.store import LmdbStore

SWEEP_BATCH = 5000


async def sweep_expired(store: LmdbStore, now: float, wall: float) -> SweepResult:
    """Delete events whose retention has ended (in bounded batches), settling their
    pending deliveries as expired first."""
    total = 0
    woken: set[str] = set()
    for topic in store.stored_topics():
        while True:
            removed = await store.write(
                partial(_sweep_topic, store=store, topic=topic, now=now, wall=wall, woken=woken)
            )
            total += removed
            if removed < SWEEP_BATCH:
                break
    return SweepResult(total, frozenset(woken))


def _sweep_topic(
    txn: Transaction,
    *,
    store: LmdbStore,
    topic: TopicSettings,
    now: float,
    wall: float,
    woken: set[str],
) -> int:
    """One batch: up to SWEEP_BATCH expired events of `topic`; returns how many went."""
    db = store.db
    cursor = txn.cursor(db=db["events"])
    prefix = keys.topic_prefix(topic.name)
    removed = 0
    if not cursor.set_range(prefix):
        return 0
    # Deletes as it walks (cursor.delete moves to the next row), so no `scan_prefix` here.
    while removed < SWEEP_BATCH and cursor.key().startswith(prefix):
        received, dedup, _ = keys.split_event_value(cursor.value())
        if received + topic.retention > now:
            break
        seq = keys.seq_of(cursor.key())
        woken |= store.deliveries.settle_expired(txn, topic.name, seq, now, wall)
        store.deliveries.forget_logs(txn, topic.name, seq)
        pointer = txn.get(dedup, db=db["dedup"])
        if pointer is not None and keys.DEDUP_VALUE.unpack(pointer)[0] == seq:
            txn.delete(dedup, db=db["dedup"])
        removed += 1
        if not cursor.delete():
            break
    if removed:
        store.tallies.count_events(topic.name, -removed)
    return removed
