"""Dead-letter topics: select, redrive and purge, each batch in one write transaction.

Redrive moves a dead letter back to its original subscription as a fresh delivery that
carries the event itself (without the `dl*` attributes, keeping id and source so subscribers can
deduplicate) and deletes it from the dead-letter topic in the same transaction: a crash halfway
loses nothing, and repeating a redrive duplicates nothing (RELIABILITY R18).

`redrive_dead_letters` and `purge_dead_letters` drive the batches for `LmdbStore`; `run_batch`
and the actions are what one batch does inside its transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import orjson

from gateway.policy.deadletters import redriven_payload
from gateway.store.base import DeadLetterResult
from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.deliveries import DeliveryLedger
from gateway.store.lmdb.scan import scan_keys
from gateway.store.lmdb.topic_rows import topic_retention

if TYPE_CHECKING:
    from gateway.store.lmdb.store import LmdbStore

BATCH = 1000
SCAN_WINDOW = 4 * BATCH

# For a subscription name: its retention in seconds (from its topic), or None if it is gone.
RetentionOf = Callable[[str], float | None]


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters: these event ids (or all), optionally of one subscription/reason."""

    ids: frozenset[str] | None = None
    subscription: str | None = None
    reason: str | None = None

    def matches(self, document: dict[str, object]) -> bool:
        if self.ids is not None and document.get("id") not in self.ids:
            return False
        if self.subscription is not None and document.get("dlsubscription") != self.subscription:
            return False
        return self.reason is None or document.get("dlreason") == self.reason


# One batch in its write transaction: (after, woken, txn) -> (handled, skipped, last, done).
Batch = Callable[[int, set[str], Transaction], tuple[int, int, int, bool]]


async def redrive_dead_letters(
    store: LmdbStore, topic: str, selection: Selection, retention_of: RetentionOf, now: float
) -> DeadLetterResult:
    """Move selected dead letters back to their subscriptions, a batch per transaction."""

    def batch(after: int, woken: set[str], txn: Transaction) -> tuple[int, int, int, bool]:
        topic_retention(txn, store.db, topic)  # 404 for an unknown topic
        act = redrive_action(txn, store.db, store.deliveries, topic, retention_of, now, woken)
        moved, skipped, last, done = run_batch(txn, store.db, topic, selection, after, act)
        store.tallies.count_events(topic, -moved)
        return moved, skipped, last, done

    return await _batches(store, batch)


async def purge_dead_letters(
    store: LmdbStore, topic: str, selection: Selection
) -> DeadLetterResult:
    """Delete selected dead letters, a batch per transaction."""

    def batch(after: int, woken: set[str], txn: Transaction) -> tuple[int, int, int, bool]:
        topic_retention(txn, store.db, topic)  # 404 for an unknown topic
        act = purge_action(txn, store.db, store.deliveries, topic)
        purged, skipped, last, done = run_batch(txn, store.db, topic, selection, after, act)
        store.tallies.count_events(topic, -purged)
        return purged, skipped, last, done

    return await _batches(store, batch)


async def _batches(store: LmdbStore, batch: Batch) -> DeadLetterResult:
    handled = skipped = after = 0
    woken: set[str] = set()
    done = False
    while not done:
        moved, left, after, done = await store.write(partial(batch, after, woken))
        handled, skipped = handled + moved, skipped + left
    return DeadLetterResult(handled, skipped, frozenset(woken))


# What to do with one selected dead letter: True if handled (moved or removed), False if it
# had to be left in place (skipped), inside the batch's transaction.
Action = Callable[[int, bytes, dict[str, object]], bool]


def run_batch(
    txn: Transaction,
    db: Mapping[str, Any],
    topic: str,
    selection: Selection,
    after: int,
    act: Action,
) -> tuple[int, int, int, bool]:
    """Apply `act` to up to BATCH selected dead letters after seq `after`.

    Returns (handled, skipped, last seq examined, done)."""
    handled = skipped = 0
    last = after
    scanned, complete = _scan(txn, db, topic, after)
    for seq in scanned:
        if handled + skipped >= BATCH:
            return handled, skipped, last, False
        last = seq
        value = txn.get(keys.event_key(topic, seq), db=db["events"])
        if value is None:
            continue
        payload = keys.split_event_value(value)[2]
        document = orjson.loads(payload)
        if selection.matches(document):
            if act(seq, payload, document):
                handled += 1
            else:
                skipped += 1
    return handled, skipped, last, complete


def redrive_action(
    txn: Transaction,
    db: Mapping[str, Any],
    ledger: DeliveryLedger,
    topic: str,
    retention_of: RetentionOf,
    now: float,
    woken: set[str],
) -> Action:
    def act(seq: int, payload: bytes, document: dict[str, object]) -> bool:
        subscription = str(document.get("dlsubscription", ""))
        retention = retention_of(subscription)
        if retention is None:
            return False
        # Drop the dead letter's own deliveries (to the dead-letter topic's subscriptions) first:
        # the redriven delivery may share its key when that subscription is on this topic.
        txn.delete(keys.event_key(topic, seq), db=db["events"])
        ledger.drop_event(txn, topic, seq, "redriven")
        ledger.enqueue(
            txn, subscription, topic, seq, now, now + retention, redriven_payload(payload)
        )
        woken.add(subscription)
        return True

    return act


def purge_action(
    txn: Transaction, db: Mapping[str, Any], ledger: DeliveryLedger, topic: str
) -> Action:
    def act(seq: int, payload: bytes, document: dict[str, object]) -> bool:
        txn.delete(keys.event_key(topic, seq), db=db["events"])
        ledger.drop_event(txn, topic, seq, "purged")
        return True

    return act


def _scan(
    txn: Transaction, db: Mapping[str, Any], topic: str, after: int
) -> tuple[list[int], bool]:
    """The seqs of up to a window of the topic's events after seq `after` (keys only: the
    caller deletes as it goes and reads each payload when it gets to it), and whether the
    window reached the topic's end."""
    prefix = keys.topic_prefix(topic)
    found: list[int] = []
    for key in scan_keys(txn, db["events"], prefix, start=keys.event_key(topic, after + 1)):
        if len(found) >= SCAN_WINDOW:
            return found, False
        found.append(keys.seq_of(key))
    return found, True
