"""The delivery tables: pending deliveries, the due-time index, and per-subscription counters.

A delivery lives in one of two places. Until its first attempt fails it is *fresh*: one row in
`fresh`, keyed by seq, which for one subscription is also due order (due = publish time plus the
subscription's delay), so it needs no due-index row and an ack is one delete. That is the whole
happy path, and it matters: every LMDB call the writer thread makes hands the GIL to the busy
event loop and waits to get it back (bench/RESULTS.md, "Session 6"). A retried delivery moves
to `deliveries` with a row in the `due` index, where it is read in due order whatever its seq.

Every state change of a delivery happens in one write transaction with what it implies: an ack
deletes the delivery; a retry moves it in the due index; a dead letter deletes it and appends
the event to the dead-letter topic (fanned out to that topic's subscriptions) in the same
transaction, so an event is dead-lettered exactly once (RELIABILITY R7). Counters are kept in
the same transactions, so at every moment, per subscription,
published = acked + deadlettered + dropped + pending (R8).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec
import orjson

from gateway.deadletters import Failure, dead_letter_attributes, dead_letter_payload
from gateway.outcomes import Ack, DeadLetter, Decision, RetryAt
from gateway.store import keys
from gateway.store.base import SubscriptionsOf
from gateway.store.committer import Transaction
from gateway.store.scan import delete_prefix, scan_keys, scan_prefix

if TYPE_CHECKING:
    from gateway.store.lmdb import LmdbStore

NO_DEDUP = bytes(32)  # dead letters are never deduplicated (two subscriptions may give up)
COUNTERS = ("published", "acked", "deadlettered", "dropped")


@dataclass(frozen=True, slots=True)
class DueDelivery:
    subscription: str
    seq: int
    state: keys.DeliveryState
    payload: bytes | None  # None: the event is gone (its topic was deleted); nothing to push


@dataclass(frozen=True, slots=True)
class Settlement:
    """The outcome of one attempt, as the engine decided it, to be recorded atomically."""

    subscription: str
    seq: int
    decision: Decision
    attempts: int
    failure: Failure | None
    dead_letter_topic: str | None = None
    wall: float = 0.0  # for the dltime attribute
    due: float | None = None  # the due time it was taken at (lets an ack skip a read)


class DeliveryLedger:
    def __init__(self, store: LmdbStore) -> None:
        self._store = store
        self._db = store.db
        # Set by the app from the subscription registry; expiry, purge and redrive use it.
        self.subscriptions_of: SubscriptionsOf = lambda topic: ()

    # -- writes inside a transaction -------------------------------------------------------

    def enqueue(
        self,
        txn: Transaction,
        subscription: str,
        topic: str,
        seq: int,
        due: float,
        expires: float,
        payload: bytes | None = None,
        *,
        enqueued: float | None = None,
        counted: bool = True,
    ) -> None:
        """Create a pending delivery of event `seq` to `subscription`, due at `due` (later
        than `enqueued`, now, when the subscription delays deliveries). `counted=False`: the
        caller adds to the `published` counter itself, once for many."""
        created = due if enqueued is None else enqueued
        state = keys.DeliveryState(topic, seq, 0, due, expires, payload=payload, enqueued=created)
        txn.put(
            keys.delivery_key(subscription, seq), keys.encode_delivery(state), db=self._db["fresh"]
        )
        if counted:
            self.count(txn, subscription, "published")

    def count(self, txn: Transaction, subscription: str, kind: str, by: int = 1) -> None:
        key = keys.counter_key(subscription, kind)
        value = txn.get(key, db=self._db["meta"])
        total = (int(keys.SEQ.unpack(value)[0]) if value else 0) + by
        txn.put(key, keys.SEQ.pack(total), db=self._db["meta"])

    def settle_all(
        self, txn: Transaction, settlements: Iterable[Settlement], now: float
    ) -> set[str]:
        """Apply many attempts' decisions; returns subscriptions that got new deliveries.
        Acks (the common case) are tallied and counted once per subscription, not per ack."""
        woken: set[str] = set()
        acked: collections.Counter[str] = collections.Counter()
        for settlement in settlements:
            if isinstance(settlement.decision, Ack) and settlement.due is not None:
                if self._ack(txn, settlement, settlement.due):
                    acked[settlement.subscription] += 1
            else:
                woken |= self.settle(txn, settlement, now)
        for subscription, count in acked.items():
            self.count(txn, subscription, "acked", count)
        return woken

    def settle(self, txn: Transaction, settlement: Settlement, now: float) -> set[str]:
        """Apply one attempt's decision; returns subscriptions that got new deliveries."""
        state = self._state(txn, settlement.subscription, settlement.seq)
        if state is None:  # settled already (e.g. expired meanwhile) or subscription deleted
            return set()
        decision = settlement.decision
        if isinstance(decision, RetryAt):
            self._reschedule(txn, settlement, state, decision.due)
            return set()
        self._delete(txn, settlement.subscription, state.seq, state.due)
        if isinstance(decision, Ack):
            self.count(txn, settlement.subscription, "acked")
            return set()
        return self._dead_letter(txn, settlement, state, decision, now)

    def _ack(self, txn: Transaction, settlement: Settlement, due: float) -> bool:
        """The common case, without reading the record: only this lane settles it, and if it
        is gone (expired or deleted meanwhile) there is nothing to do. True if it was pending
        (the caller counts it)."""
        return self._delete(txn, settlement.subscription, settlement.seq, due)

    def _reschedule(
        self, txn: Transaction, settlement: Settlement, state: keys.DeliveryState, due: float
    ) -> None:
        failure = settlement.failure or Failure(None, None, None)
        updated = msgspec.structs.replace(
            state,
            attempts=settlement.attempts,
            due=due,
            last_status=failure.status,
            last_error=failure.error,
            last_body=failure.body,
        )
        subscription = settlement.subscription
        self._delete(txn, subscription, state.seq, state.due)
        txn.put(keys.due_key(subscription, due, state.seq), b"", db=self._db["due"])
        txn.put(
            keys.delivery_key(subscription, state.seq),
            keys.encode_delivery(updated),
            db=self._db["deliveries"],
        )

    def _delete(self, txn: Transaction, subscription: str, seq: int, due: float) -> bool:
        """Delete a pending delivery wherever it lives; True if it was pending. A fresh one
        (the common case) costs one LMDB call."""
        key = keys.delivery_key(subscription, seq)
        if txn.delete(key, db=self._db["fresh"]):
            return True
        if not txn.delete(key, db=self._db["deliveries"]):
            return False
        txn.delete(keys.due_key(subscription, due, seq), db=self._db["due"])
        return True

    def _state(self, txn: Transaction, subscription: str, seq: int) -> keys.DeliveryState | None:
        """A pending delivery's state, fresh or retried; None if it is not pending."""
        key = keys.delivery_key(subscription, seq)
        value = txn.get(key, db=self._db["fresh"]) or txn.get(key, db=self._db["deliveries"])
        return None if value is None else keys.decode_delivery(value)

    def _dead_letter(
        self,
        txn: Transaction,
        settlement: Settlement,
        state: keys.DeliveryState,
        decision: DeadLetter,
        now: float,
    ) -> set[str]:
        subscription = settlement.subscription
        topic = settlement.dead_letter_topic
        if topic is None or not self._store.has_topic(txn, topic):
            self.count(txn, subscription, "dropped")
            self.count(txn, subscription, f"dropped.{decision.reason}")
            return set()
        payload = self._payload(txn, state)
        if payload is None:  # the event is gone: nothing left to dead-letter
            self.count(txn, subscription, "dropped")
            self.count(txn, subscription, "dropped.missing")
            return set()
        attributes = dead_letter_attributes(
            subscription=subscription,
            reason=decision.reason,
            attempts=settlement.attempts,
            failure=settlement.failure or Failure(None, None, None),
            at=settlement.wall,
        )
        self.count(txn, subscription, "deadlettered")
        self.count(txn, subscription, f"deadlettered.{decision.reason}")
        return self._store.append(txn, topic, dead_letter_payload(payload, attributes), now)

    def _payload(self, txn: Transaction, state: keys.DeliveryState) -> bytes | None:
        if state.payload is not None:
            return state.payload
        value = txn.get(keys.event_key(state.topic, state.seq), db=self._db["events"])
        return None if value is None else keys.split_event_value(value)[2]

    def settle_expired(
        self, txn: Transaction, topic: str, seq: int, now: float, wall: float
    ) -> set[str]:
        """The event's retention ended: every delivery still pending is dead-lettered/dropped."""
        woken: set[str] = set()
        for subscription, dead_letter_topic in self.subscriptions_of(topic):
            state = self._state(txn, subscription, seq)
            if state is None:
                continue
            failure = Failure(state.last_status, state.last_error, state.last_body)
            settlement = Settlement(
                subscription,
                seq,
                DeadLetter("expired"),
                state.attempts,
                failure,
                dead_letter_topic,
                wall,
            )
            woken |= self.settle(txn, settlement, now)
        return woken

    def drop_event(self, txn: Transaction, topic: str, seq: int, reason: str) -> None:
        """The event left its topic (purged, redriven): its pending deliveries to that topic's
        subscriptions can never be made, so they are dropped and counted, not left stuck."""
        for subscription, _ in self.subscriptions_of(topic):
            state = self._state(txn, subscription, seq)
            if state is not None:
                self._delete(txn, subscription, state.seq, state.due)
                self.count(txn, subscription, "dropped")
                self.count(txn, subscription, f"dropped.{reason}")

    def delete_subscription(self, txn: Transaction, subscription: str) -> int:
        """Drop every pending delivery of `subscription` and its counters; returns how many."""
        prefix = keys.delivery_prefix(subscription)
        dropped = delete_prefix(txn, self._db["fresh"], prefix)
        dropped += delete_prefix(txn, self._db["deliveries"], prefix)
        delete_prefix(txn, self._db["due"], keys.due_prefix(subscription))
        delete_prefix(txn, self._db["meta"], keys.counter_key(subscription, ""))
        txn.delete(keys.subscription_key(subscription), db=self._db["meta"])
        return dropped

    # -- reads -----------------------------------------------------------------------------

    def due(
        self, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[DueDelivery]:
        """Up to `limit` deliveries due by `now`, earliest first, not in `skip` (in flight):
        fresh ones and retries, merged by due time."""

        def run(txn: Transaction) -> list[DueDelivery]:
            fresh = self._due_fresh(txn, subscription, now, limit, skip)
            retries = self._due_retries(txn, subscription, now, limit, skip)
            if not retries:  # the happy path: nothing failed, fresh ones are in due order
                return fresh
            return sorted(fresh + retries, key=lambda found: found.state.due)[:limit]

        return self._store.read(run)

    def _due_fresh(
        self, txn: Transaction, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[DueDelivery]:
        """Fresh deliveries in seq order up to the first one not yet due. (A subscription's
        delay lowered, or the wall clock stepped back across a restart, can put a later due
        time ahead in seq order; what follows it then waits at most that difference.)"""
        found: list[DueDelivery] = []
        for key, value in scan_prefix(txn, self._db["fresh"], keys.delivery_prefix(subscription)):
            if len(found) >= limit:
                break
            seq = keys.seq_of(key)
            if seq in skip:
                continue
            state = keys.decode_delivery(value)
            if state.due > now:
                break
            found.append(DueDelivery(subscription, seq, state, self._payload(txn, state)))
        return found

    def _due_retries(
        self, txn: Transaction, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[DueDelivery]:
        """Retried deliveries from the due index, earliest first."""
        horizon = keys.due_key(subscription, now, 2**64 - 1)
        found: list[DueDelivery] = []
        for key in scan_keys(txn, self._db["due"], keys.due_prefix(subscription)):
            if len(found) >= limit or key > horizon:
                break
            _, seq = keys.split_due_key(key)
            if seq not in skip:
                found.extend(self._load(txn, subscription, seq))
        return found

    def _load(self, txn: Transaction, subscription: str, seq: int) -> list[DueDelivery]:
        value = txn.get(keys.delivery_key(subscription, seq), db=self._db["deliveries"])
        if value is None:
            return []
        state = keys.decode_delivery(value)
        return [DueDelivery(subscription, seq, state, self._payload(txn, state))]

    def next_due(self, subscription: str, after: float) -> float | None:
        """The earliest due time later than `after`, if any."""
        prefix = keys.due_prefix(subscription)
        start = keys.due_key(subscription, after, 2**64 - 1)

        def run(txn: Transaction) -> float | None:
            found = [self._next_fresh(txn, subscription, after)]
            cursor = txn.cursor(db=self._db["due"])
            if cursor.set_range(start) and cursor.key().startswith(prefix):
                found.append(keys.split_due_key(cursor.key())[0])
            return min((due for due in found if due is not None), default=None)

        return self._store.read(run)

    def _next_fresh(self, txn: Transaction, subscription: str, after: float) -> float | None:
        """The first fresh due time later than `after`. Those before it are in flight (the
        lane asks only when nothing due is left to take), so the walk is short."""
        for _, value in scan_prefix(txn, self._db["fresh"], keys.delivery_prefix(subscription)):
            due = keys.decode_delivery(value).due
            if due > after:
                return due
        return None

    def counters(self, subscription: str) -> dict[str, int]:
        prefix = keys.counter_key(subscription, "")

        def run(txn: Transaction) -> dict[str, int]:
            found = dict.fromkeys(COUNTERS, 0)
            for key, value in scan_prefix(txn, self._db["meta"], prefix):
                found[key[len(prefix) :].decode()] = int(keys.SEQ.unpack(value)[0])
            return found

        return self._store.read(run)

    def oldest_pending(self, subscription: str) -> float | None:
        """When the oldest pending delivery was created (both tables are keyed in seq order)."""
        prefix = keys.delivery_prefix(subscription)

        def run(txn: Transaction) -> float | None:
            heads = (
                keys.decode_delivery(value).enqueued
                for table in ("fresh", "deliveries")
                for _, value in itertools.islice(scan_prefix(txn, self._db[table], prefix), 1)
            )
            return min(heads, default=None)

        return self._store.read(run)

    def pending(self, subscription: str) -> int:
        """Pending deliveries counted row by row: an O(n) scan, for tests to check the
        `published - settled` figure the counters give (the gateway itself never calls it)."""
        prefix = keys.delivery_prefix(subscription)

        def run(txn: Transaction) -> int:
            return sum(
                1
                for table in ("fresh", "deliveries")
                for _ in scan_keys(txn, self._db[table], prefix)
            )

        return self._store.read(run)


def event_attributes(payload: bytes) -> dict[str, object]:
    document: dict[str, object] = orjson.loads(payload)
    document.pop("data", None)
    document.pop("data_base64", None)
    return document
