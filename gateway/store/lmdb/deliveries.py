"""The delivery tables: pending deliveries, the due-time index, and per-subscription counters.

Every state change of a delivery happens in one write transaction with what it implies: an ack
deletes the delivery; a retry moves it in the due index; a dead letter deletes it and appends
the event to the dead-letter topic (fanned out to that topic's subscriptions) in the same
transaction, so an event is dead-lettered exactly once (RELIABILITY R7). Counters are kept in
the same transactions, so at every moment, per subscription,
published = acked + deadlettered + dropped + pending (R8).
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from typing import TYPE_CHECKING

import msgspec
import orjson

from gateway.policy.deadletters import Failure, dead_letter_attributes, dead_letter_payload
from gateway.policy.outcomes import Ack, DeadLetter, RetryAt
from gateway.store.lmdb import keys
from gateway.store.lmdb.acks import PlainAck, apply_acks, settled_successes
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.scan import delete_prefix, scan_keys, scan_prefix
from gateway.store.records import (
    COUNTERS,
    DELIVERY_STATES,
    Delivery,
    DeliveryRecord,
    LastOutcome,
    Settlement,
)

if TYPE_CHECKING:
    from gateway.store.lmdb.store import LmdbStore

NO_DEDUP = bytes(32)  # dead letters are never deduplicated (two subscriptions may give up)


ACKED, DEADLETTERED, DROPPED = (DELIVERY_STATES.index(s) for s in DELIVERY_STATES[1:])


def plain_ack(settlement: Settlement) -> PlainAck | None:
    """A first-attempt ack whose due-index row is known (the engine's common case): settled
    without reading the delivery record (`gateway.store.lmdb.acks`), its log row being that
    one attempt. None for anything else (an ack after failures keeps its earlier log)."""
    if (
        isinstance(settlement.decision, Ack)
        and settlement.due is not None
        and settlement.attempts == 1
    ):
        attempt = keys.attempt_row(settlement.attempt)
        log = [] if attempt is None else [attempt]
        row = keys.encode_settled(keys.SettledRow(ACKED, 1, log=log))
        return settlement.subscription, settlement.seq, settlement.due, row
    return None


class DeliveryLedger:
    def __init__(self, store: LmdbStore) -> None:
        self._store = store
        self._db = store.db

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
            keys.delivery_key(subscription, seq),
            keys.encode_delivery(state),
            db=self._db["deliveries"],
        )
        txn.put(keys.due_key(subscription, due, seq), b"", db=self._db["due"])
        if counted:
            self.count(subscription, "published")

    def count(self, subscription: str, kind: str, by: int = 1) -> None:
        """Add to a counter of `subscription`, written once at the commit (`tallies`)."""
        self._store.tallies.count(subscription, kind, by)

    def settle_all(
        self,
        txn: Transaction,
        settlements: Iterable[Settlement],
        now: float,
        *,
        keep_logs: bool = True,
    ) -> set[str]:
        """Apply many attempts' decisions; returns subscriptions that got new deliveries.
        Acks (the common case) are tallied and counted once per subscription, not per ack.
        `keep_logs=False` (the store is full): nothing is added to the attempt logs."""
        woken: set[str] = set()
        acks: list[PlainAck] = []
        succeeded: dict[str, float] = {}
        for settlement in settlements:
            ack = plain_ack(settlement)
            if ack is not None:
                acks.append(ack if keep_logs else (*ack[:3], b""))
                succeeded[settlement.subscription] = settlement.wall
            else:
                woken |= self.settle(txn, settlement, now, keep_logs=keep_logs)
        acked = apply_acks(txn, self._db, acks)
        for subscription, wall in settled_successes(succeeded, acked):
            self._store.tallies.succeeded(subscription, wall)
        return woken

    def settle(
        self, txn: Transaction, settlement: Settlement, now: float, *, keep_logs: bool = True
    ) -> set[str]:
        """Apply one attempt's decision; returns subscriptions that got new deliveries."""
        key = keys.delivery_key(settlement.subscription, settlement.seq)
        value = txn.get(key, db=self._db["deliveries"])
        if value is None:  # settled already (e.g. expired meanwhile) or subscription deleted
            return set()
        state = keys.decode_delivery(value)
        decision = settlement.decision
        if settlement.attempts > state.attempts:  # an attempt, not an expiry without one
            self._last_outcome(settlement)
        log = state.log
        if keep_logs:
            log = keys.log_with(state.log, keys.attempt_row(settlement.attempt))
        if isinstance(decision, RetryAt):
            self._reschedule(txn, settlement, state, decision.due, log)
            return set()
        self._remove(txn, settlement.subscription, state)
        if isinstance(decision, Ack):
            self.count(settlement.subscription, "acked")
            final = ACKED
            woken: set[str] | None = set()
        else:
            woken = self._dead_letter(txn, settlement, state, decision, now)
            final = DEADLETTERED if woken is not None else DROPPED
        if keep_logs:
            self._keep_log(txn, settlement, final, log)
        return woken or set()

    def _keep_log(
        self, txn: Transaction, settlement: Settlement, state: int, log: list[keys.AttemptRow]
    ) -> None:
        """The settled delivery's row: its outcome and attempt log, kept with the event."""
        failure = settlement.failure or Failure(None, None, None)
        row = keys.SettledRow(state, settlement.attempts, failure.status, failure.error, log)
        txn.put(
            keys.delivery_key(settlement.subscription, settlement.seq),
            keys.encode_settled(row),
            db=self._db["log"],
        )

    def _last_outcome(self, settlement: Settlement) -> None:
        """What the subscription's status shows as its last success or last failure."""
        subscription, wall = settlement.subscription, settlement.wall
        if isinstance(settlement.decision, Ack):
            self._store.tallies.succeeded(subscription, wall)
        else:
            failure = settlement.failure or Failure(None, None, None)
            self._store.tallies.failed(subscription, wall, failure.status, failure.error)

    def _reschedule(
        self,
        txn: Transaction,
        settlement: Settlement,
        state: keys.DeliveryState,
        due: float,
        log: list[keys.AttemptRow],
    ) -> None:
        failure = settlement.failure or Failure(None, None, None)
        updated = msgspec.structs.replace(
            state,
            attempts=settlement.attempts,
            due=due,
            last_status=failure.status,
            last_error=failure.error,
            last_body=failure.body,
            log=log,
        )
        subscription = settlement.subscription
        txn.delete(keys.due_key(subscription, state.due, state.seq), db=self._db["due"])
        txn.put(keys.due_key(subscription, due, state.seq), b"", db=self._db["due"])
        txn.put(
            keys.delivery_key(subscription, state.seq),
            keys.encode_delivery(updated),
            db=self._db["deliveries"],
        )

    def _remove(self, txn: Transaction, subscription: str, state: keys.DeliveryState) -> None:
        txn.delete(keys.delivery_key(subscription, state.seq), db=self._db["deliveries"])
        txn.delete(keys.due_key(subscription, state.due, state.seq), db=self._db["due"])

    def _dead_letter(
        self,
        txn: Transaction,
        settlement: Settlement,
        state: keys.DeliveryState,
        decision: DeadLetter,
        now: float,
    ) -> set[str] | None:
        """The subscriptions to wake; None when the delivery was dropped instead."""
        subscription = settlement.subscription
        topic = settlement.dead_letter_topic
        if topic is None or not self._store.has_topic(txn, topic):
            self.count(subscription, "dropped")
            self.count(subscription, f"dropped.{decision.reason}")
            return None
        payload = self._payload(txn, state)
        if payload is None:  # the event is gone: nothing left to dead-letter
            self.count(subscription, "dropped")
            self.count(subscription, "dropped.missing")
            return None
        attributes = dead_letter_attributes(
            subscription=subscription,
            reason=decision.reason,
            attempts=settlement.attempts,
            failure=settlement.failure or Failure(None, None, None),
            at=settlement.wall,
        )
        try:
            dead_letter = dead_letter_payload(payload, attributes)
        except (ValueError, TypeError):  # a stored event that is no JSON object (issue 19, F1)
            # It can be no dead letter; failing here would fail the whole batch of outcomes,
            # again on every try. Dropped and counted instead (the engine logs it).
            self.count(subscription, "dropped")
            self.count(subscription, f"dropped.{decision.reason}")
            return None
        self.count(subscription, "deadlettered")
        self.count(subscription, f"deadlettered.{decision.reason}")
        return self._store.append(txn, topic, dead_letter, now)

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
        for subscription, dead_letter_topic in self._store.routing.subscriptions_of(topic):
            value = txn.get(keys.delivery_key(subscription, seq), db=self._db["deliveries"])
            if value is None:
                continue
            state = keys.decode_delivery(value)
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
        for subscription, _ in self._store.routing.subscriptions_of(topic):
            value = txn.get(keys.delivery_key(subscription, seq), db=self._db["deliveries"])
            if value is not None:
                self._remove(txn, subscription, keys.decode_delivery(value))
                self.count(subscription, "dropped")
                self.count(subscription, f"dropped.{reason}")
        self.forget_logs(txn, topic, seq)

    def forget_logs(self, txn: Transaction, topic: str, seq: int) -> None:
        """The event is gone: so are its settled deliveries' logs."""
        for subscription, _ in self._store.routing.subscriptions_of(topic):
            txn.delete(keys.delivery_key(subscription, seq), db=self._db["log"])

    def delete_subscription(self, txn: Transaction, subscription: str) -> int:
        """Drop every pending delivery of `subscription`, its counters, last outcome and spec
        row; returns how many deliveries."""
        dropped = delete_prefix(txn, self._db["deliveries"], keys.delivery_prefix(subscription))
        delete_prefix(txn, self._db["log"], keys.delivery_prefix(subscription))
        delete_prefix(txn, self._db["due"], keys.due_prefix(subscription))
        delete_prefix(txn, self._db["meta"], keys.counter_key(subscription, ""))
        delete_prefix(txn, self._db["meta"], keys.last_prefix(subscription))
        self._store.tallies.subscription_deleted(subscription)
        txn.delete(keys.subscription_key(subscription), db=self._db["meta"])
        return dropped

    # -- reads -----------------------------------------------------------------------------

    def due(
        self, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[Delivery]:
        """Up to `limit` deliveries due by `now`, earliest first, not in `skip` (in flight)."""
        prefix = keys.due_prefix(subscription)
        horizon = keys.due_key(subscription, now, 2**64 - 1)

        def run(txn: Transaction) -> list[Delivery]:
            found: list[Delivery] = []
            for key in scan_keys(txn, self._db["due"], prefix):
                if len(found) >= limit or key > horizon:
                    break
                _, seq = keys.split_due_key(key)
                if seq not in skip:
                    found.extend(self._load(txn, subscription, seq))
            return found

        return self._store.read(run)

    def _load(self, txn: Transaction, subscription: str, seq: int) -> list[Delivery]:
        value = txn.get(keys.delivery_key(subscription, seq), db=self._db["deliveries"])
        if value is None:
            return []
        state = keys.decode_delivery(value)
        return [delivery_record(subscription, state, self._payload(txn, state))]

    def next_due(self, subscription: str, after: float) -> float | None:
        """The earliest due time later than `after`, if any."""
        prefix = keys.due_prefix(subscription)
        start = keys.due_key(subscription, after, 2**64 - 1)

        def run(txn: Transaction) -> float | None:
            cursor = txn.cursor(db=self._db["due"])
            if cursor.set_range(start) and cursor.key().startswith(prefix):
                return keys.split_due_key(cursor.key())[0]
            return None

        return self._store.read(run)

    def counters(self, subscription: str) -> dict[str, int]:
        prefix = keys.counter_key(subscription, "")

        def run(txn: Transaction) -> dict[str, int]:
            found = dict.fromkeys(COUNTERS, 0)
            for key, value in scan_prefix(txn, self._db["meta"], prefix):
                found[key[len(prefix) :].decode()] = int(keys.SEQ.unpack(value)[0])
            return found

        return self._store.read(run)

    def last_outcome(self, subscription: str) -> LastOutcome:
        """The subscription's last success and last failure (what its status shows)."""
        meta = self._db["meta"]

        def run(txn: Transaction) -> LastOutcome:
            success = txn.get(keys.last_success_key(subscription), db=meta)
            return keys.decode_last(success, txn.get(keys.last_failure_key(subscription), db=meta))

        return self._store.read(run)

    def oldest_pending(self, subscription: str) -> float | None:
        """When the oldest pending delivery was created (deliveries are keyed in seq order)."""
        prefix = keys.delivery_prefix(subscription)

        def run(txn: Transaction) -> float | None:
            cursor = txn.cursor(db=self._db["deliveries"])
            if cursor.set_range(prefix) and cursor.key().startswith(prefix):
                return keys.decode_delivery(cursor.value()).enqueued
            return None

        return self._store.read(run)

    def delivery(self, subscription: str, seq: int) -> Delivery | None:
        """The pending delivery of event `seq` to `subscription`, if there is one."""
        key = keys.delivery_key(subscription, seq)

        def run(txn: Transaction) -> Delivery | None:
            value = txn.get(key, db=self._db["deliveries"])
            if value is None:
                return None
            state = keys.decode_delivery(value)
            return delivery_record(subscription, state, self._payload(txn, state))

        return self._store.read(run)

    def event_deliveries(self, topic: str, seq: int) -> list[DeliveryRecord]:
        """Every delivery of event `seq` of `topic`, pending or settled, with its log."""

        def run(txn: Transaction) -> list[DeliveryRecord]:
            found: list[DeliveryRecord] = []
            for subscription, _ in self._store.routing.subscriptions_of(topic):
                key = keys.delivery_key(subscription, seq)
                value = txn.get(key, db=self._db["deliveries"])
                if value is not None:
                    state = keys.decode_delivery(value)
                    if state.topic == topic:
                        found.append(pending_record(subscription, state))
                        continue
                settled = txn.get(key, db=self._db["log"])
                if settled is not None:
                    found.append(settled_record(subscription, keys.decode_settled(settled)))
            return found

        return self._store.read(run)

    def pending(self, subscription: str) -> int:
        """Pending deliveries counted row by row: an O(n) scan, for tests to check the
        `published - settled` figure the counters give (the gateway itself never calls it)."""
        prefix = keys.delivery_prefix(subscription)

        def run(txn: Transaction) -> int:
            return sum(1 for _ in scan_keys(txn, self._db["deliveries"], prefix))

        return self._store.read(run)


def delivery_record(
    subscription: str, state: keys.DeliveryState, payload: bytes | None
) -> Delivery:
    """The row as the value crossing the seam."""
    failure = Failure(state.last_status, state.last_error, state.last_body)
    return Delivery(
        subscription, state.seq, state.attempts, state.due, state.expires, payload, failure
    )


def pending_record(subscription: str, state: keys.DeliveryState) -> DeliveryRecord:
    log = tuple(keys.attempt_of(row) for row in state.log)
    return DeliveryRecord(
        subscription, "pending", state.attempts, state.due, state.last_status, state.last_error, log
    )


def settled_record(subscription: str, row: keys.SettledRow) -> DeliveryRecord:
    log = tuple(keys.attempt_of(attempt) for attempt in row.log)
    state = DELIVERY_STATES[row.state]
    return DeliveryRecord(
        subscription, state, row.attempts, None, row.last_status, row.last_error, log
    )


def event_attributes(payload: bytes) -> dict[str, object]:
    document: dict[str, object] = orjson.loads(payload)
    document.pop("data", None)
    document.pop("data_base64", None)
    return document
