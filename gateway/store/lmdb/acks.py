"""What an ack writes, in one place for both writers: the group committer's thread and the
ack writer process (`gateway.store.lmdb.ack_writer`). Kept light (no gateway imports beyond the key
layouts) because the ack writer process imports it at start-up.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from gateway.store.lmdb import keys

Transaction = Any  # lmdb.Transaction
# subscription, seq, the due time the delivery was taken at, and the settled row to keep
# (`keys.SettledRow`, encoded: the delivery's state and its one attempt)
PlainAck = tuple[str, int, float, bytes]


def add_to_counter(txn: Transaction, meta: Any, subscription: str, kind: str, by: int = 1) -> None:
    key = keys.counter_key(subscription, kind)
    value = txn.get(key, db=meta)
    total = (int(keys.SEQ.unpack(value)[0]) if value else 0) + by
    txn.put(key, keys.SEQ.pack(total), db=meta)


def apply_acks(
    txn: Transaction, db: Mapping[str, Any], acks: Iterable[PlainAck]
) -> collections.Counter[str]:
    """Delete each acked delivery and its due-index row, and count the acks once per
    subscription. No record is read: only the subscription's lane settles a delivery it took,
    and one that is gone meanwhile (expired, purged) is neither deleted nor counted, so
    applying the same ack twice changes nothing. The due row goes first because its key
    holds the due time the lane took: a delivery created again under the same key since
    (a redriven dead letter) has another due time, and an old ack leaves it alone.
    The delivery's log row (its one attempt) is written in its place.
    Returns how many acks of each subscription settled a delivery."""
    acked: collections.Counter[str] = collections.Counter()
    for subscription, seq, due, row in acks:
        if txn.delete(keys.due_key(subscription, due, seq), db=db["due"]):
            key = keys.delivery_key(subscription, seq)
            txn.delete(key, db=db["deliveries"])
            if row:  # none when the store is full: the ack is recorded without its log
                txn.put(key, row, db=db["log"])
            acked[subscription] += 1
    for subscription, count in acked.items():
        add_to_counter(txn, db["meta"], subscription, "acked", count)
    return acked


def settled_successes(
    succeeded: Mapping[str, float], acked: Mapping[str, int]
) -> Iterator[tuple[str, float]]:
    """Each subscription's last ack time, where its acks settled something: an ack of a
    subscription deleted meanwhile leaves no success behind for a later one of that name."""
    return ((name, wall) for name, wall in succeeded.items() if acked.get(name))


def record_successes(txn: Transaction, meta: Any, succeeded: Mapping[str, float]) -> None:
    """The wall time of each subscription's last acked attempt (its status'
    `lastSuccessTime`): written once per subscription per transaction, however many acks."""
    for subscription, wall in succeeded.items():
        txn.put(keys.last_success_key(subscription), keys.TIME.pack(wall), db=meta)
