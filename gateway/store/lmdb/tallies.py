"""What the operations of one write transaction share: the last seq assigned, the topics'
retention, and the counters they add to (events per topic, deliveries per subscription), and
each subscription's last success and last failure.

Every publish reads the last seq and its topic's retention and adds to two or more counters.
Done per operation, that is five or more LMDB calls per publish, and each call hands the GIL
to the event loop and waits to get it back (bench/notes/, session 8). Tallied here for
the length of one transaction, each is read once and written once, just before the commit.

Only the writer thread uses the store's `Tallies`, between the begin and the commit of its
transaction. A transaction that is aborted (and re-run by the committer) starts again from a
fresh tally. Every change to a topic's event count goes through here (publish, dead letters,
redrive, purge, the retention sweep): the count is kept at 0 or more, so a purge that took a
count to 0 before a tallied +1 of the same transaction was added would leave it at 1 for
good. Subscription counters are never lowered, so writers that add to them directly (acks,
in the ack writer process too) stay correct: `write` reads each counter when it adds to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.store.lmdb import keys
from gateway.store.lmdb.acks import add_to_counter, record_successes
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.topic_rows import count_events, topic_retention

MAX_ERROR = 256  # the lastError a subscription's status shows, as a dead letter's dlerror


class Tallies:
    def __init__(self, db: Mapping[str, Any]) -> None:
        self._db = db
        self.reset()

    def reset(self) -> None:
        """A write transaction begins: nothing read yet, nothing to write."""
        self._last_seq: int | None = None
        self._seq_assigned = False
        self._retention: dict[str, float] = {}
        self._event_counts: dict[str, int] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._succeeded: dict[str, float] = {}
        self._failed: dict[str, tuple[float, str | None, str | None]] = {}

    def last_seq(self, txn: Transaction) -> int:
        """The last seq assigned in any topic (0 before the first event)."""
        if self._last_seq is None:
            value = txn.get(keys.LAST_SEQ, db=self._db["meta"])
            self._last_seq = int(keys.SEQ.unpack(value)[0]) if value else 0
        return self._last_seq

    def assigned(self, seq: int) -> None:
        """Seqs up to `seq` are taken."""
        self._last_seq = seq
        self._seq_assigned = True

    def retention(self, txn: Transaction, topic: str) -> float:
        """The topic's retention in seconds; NotFound (a 404) for an unknown topic."""
        retention = self._retention.get(topic)
        if retention is None:
            retention = self._retention[topic] = topic_retention(txn, self._db, topic)
        return retention

    def count_events(self, topic: str, by: int) -> None:
        self._event_counts[topic] = self._event_counts.get(topic, 0) + by

    def count(self, subscription: str, kind: str, by: int = 1) -> None:
        key = (subscription, kind)
        self._counters[key] = self._counters.get(key, 0) + by

    def succeeded(self, subscription: str, wall: float) -> None:
        """An attempt of `subscription` was acked at `wall` (its status' lastSuccessTime)."""
        self._succeeded[subscription] = wall

    def failed(self, subscription: str, wall: float, status: str | None, error: str | None) -> None:
        """An attempt of `subscription` failed at `wall`: only the last one is written."""
        self._failed[subscription] = (wall, status, error)

    def topic_changed(self, topic: str) -> None:
        """The topic's row was replaced (its retention may differ)."""
        self._retention.pop(topic, None)

    def topic_deleted(self, topic: str) -> None:
        """The topic and its count are gone: nothing tallied for it may bring the count back."""
        self.topic_changed(topic)
        self._event_counts.pop(topic, None)

    def subscription_deleted(self, subscription: str) -> None:
        """Its counters are gone: nothing tallied for it may bring them back."""
        for key in [key for key in self._counters if key[0] == subscription]:
            del self._counters[key]
        self._succeeded.pop(subscription, None)
        self._failed.pop(subscription, None)

    def write(self, txn: Transaction) -> None:
        """Just before the commit: write what the transaction's operations tallied."""
        if self._seq_assigned:
            txn.put(keys.LAST_SEQ, keys.SEQ.pack(self._last_seq), db=self._db["meta"])
        for topic, by in self._event_counts.items():
            if by:  # a publish and a purge of it in one commit: nothing to write
                count_events(txn, self._db, topic, by)
        for (subscription, kind), by in self._counters.items():
            add_to_counter(txn, self._db["meta"], subscription, kind, by)
        record_successes(txn, self._db["meta"], self._succeeded)
        for subscription, (wall, status, error) in self._failed.items():
            value = keys.encode_failure(wall, status, None if error is None else error[:MAX_ERROR])
            txn.put(keys.last_failure_key(subscription), value, db=self._db["meta"])
