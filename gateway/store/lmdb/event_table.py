"""The `events` and `dedup` tables: publishing, appending dead letters, and browsing.

A publish assigns sequence numbers, skips duplicates within the topic's retention
(RELIABILITY R4) and fans each new event out into deliveries, all in the one write transaction
that stores the event, so no subscription can miss an acked event. A dead letter is appended
the same way but without dedup. Browsing pages through a topic in seq order (the console also
newest first).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson

from gateway.events import IncomingEvent
from gateway.problems import InvalidRequest
from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.deliveries import NO_DEDUP, event_attributes
from gateway.store.lmdb.scan import scan_prefix
from gateway.store.lmdb.topic_rows import topic_retention
from gateway.store.records import Page, PublishResult, Selection, StoredEvent

if TYPE_CHECKING:
    from gateway.store.lmdb.store import LmdbStore


def publish_events(
    txn: Transaction, store: LmdbStore, topic: str, events: Sequence[IncomingEvent], now: float
) -> PublishResult:
    db = store.db
    tallies = store.tallies
    retention = tallies.retention(txn, topic)
    seq = tallies.last_seq(txn)
    accepted = duplicates = 0
    enqueued: dict[str, int] = {}
    for event in events:
        dedup = keys.dedup_key(topic, event.source, event.id)
        if _is_duplicate(txn, db, dedup, retention, now):
            duplicates += 1
            continue
        seq += 1
        txn.put(
            keys.event_key(topic, seq),
            keys.event_value(now, dedup, event.payload),
            db=db["events"],
        )
        txn.put(dedup, keys.DEDUP_VALUE.pack(seq, now), db=db["dedup"])
        for subscription, delay in store.routing.fanout(topic, event.attributes):
            store.deliveries.enqueue(
                txn,
                subscription,
                topic,
                seq,
                now + delay,
                now + retention,
                enqueued=now,
                counted=False,
            )
            enqueued[subscription] = enqueued.get(subscription, 0) + 1
        accepted += 1
    for subscription, count in enqueued.items():  # one counter update per subscription
        tallies.count(subscription, "published", count)
    if accepted:
        tallies.assigned(seq)
        tallies.count_events(topic, accepted)
    return PublishResult(accepted, duplicates, frozenset(enqueued))


def append_event(
    txn: Transaction, store: LmdbStore, topic: str, payload: bytes, now: float
) -> set[str]:
    """Store an event that bypasses dedup (a dead letter) and fan it out; returns the
    subscriptions that got a delivery."""
    db = store.db
    tallies = store.tallies
    retention = tallies.retention(txn, topic)
    seq = tallies.last_seq(txn) + 1
    txn.put(
        keys.event_key(topic, seq),
        keys.event_value(now, NO_DEDUP, payload),
        db=db["events"],
    )
    tallies.assigned(seq)
    tallies.count_events(topic, 1)
    subscriptions: set[str] = set()
    for subscription, delay in store.routing.fanout(topic, event_attributes(payload)):
        store.deliveries.enqueue(
            txn, subscription, topic, seq, now + delay, now + retention, enqueued=now
        )
        subscriptions.add(subscription)
    return subscriptions


def browse_page(
    txn: Transaction,
    db: Mapping[str, Any],
    topic: str,
    start: int,
    limit: int,
    selection: Selection | None,
) -> Page:
    """A page of the topic's events from seq `start`, optionally only those a dead-letter
    `selection` matches (scanning a bounded window per page)."""
    topic_retention(txn, db, topic)  # 404 for an unknown topic
    window = limit * 10 + 1000
    found: list[StoredEvent] = []
    scanned = 0
    prefix = keys.topic_prefix(topic)
    for key, value in scan_prefix(txn, db["events"], prefix, start=keys.event_key(topic, start)):
        if len(found) == limit or scanned == window:
            return Page(found, str(keys.seq_of(key) - 1))
        scanned += 1
        received, _, payload = keys.split_event_value(value)
        if selection is None or selection.matches(orjson.loads(payload)):
            found.append(StoredEvent(keys.seq_of(key), received, payload))
    return Page(found, None)


def browse_newest_page(
    txn: Transaction,
    db: Mapping[str, Any],
    topic: str,
    before: int | None,
    limit: int,
    selection: Selection | None,
) -> Page:
    """`browse_page` backwards: events with seq below `before` (None: from the newest), newest
    first; the page's `next` is the `before` of the following page (issue 23, the console)."""
    topic_retention(txn, db, topic)  # 404 for an unknown topic
    window = limit * 10 + 1000
    found: list[StoredEvent] = []
    prefix = keys.topic_prefix(topic)
    cursor = txn.cursor(db=db["events"])
    end = keys.event_key(topic, 2**64 - 1 if before is None else before)
    more = cursor.prev() if cursor.set_range(end) else cursor.last()
    for scanned in range(window + 1):
        if not more or not cursor.key().startswith(prefix):
            break
        if len(found) == limit or scanned == window:
            return Page(found, str(keys.seq_of(cursor.key()) + 1))
        received, _, payload = keys.split_event_value(cursor.value())
        if selection is None or selection.matches(orjson.loads(payload)):
            found.append(StoredEvent(keys.seq_of(cursor.key()), received, payload))
        more = cursor.prev()
    return Page(found, None)


def cursor_seq(after: str | None) -> int:
    """The seq a page's `after` cursor names (0: from the start); a 400 naming `after` if it
    is not one."""
    if after is None or after == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,19}", after) or int(after) >= 2**63:
        raise InvalidRequest(f"after {after!r} is not a cursor from a previous page", field="after")
    return int(after)


def _is_duplicate(
    txn: Transaction, db: Mapping[str, Any], dedup: bytes, retention: float, now: float
) -> bool:
    existing = txn.get(dedup, db=db["dedup"])
    if existing is None:
        return False
    _, received = keys.DEDUP_VALUE.unpack(existing)
    return bool(received + retention > now)


def find_events(
    txn: Transaction, db: Mapping[str, Any], topic: str, event_id: str, source: str | None
) -> list[StoredEvent]:
    """The topic's events with this id (and source, when given): a dedup look-up when the
    source is known, else a scan of the topic (ids are not indexed, so publishing pays
    nothing for this look-up)."""
    topic_retention(txn, db, topic)  # 404 for an unknown topic
    if source is not None:
        pointer = txn.get(keys.dedup_key(topic, source, event_id), db=db["dedup"])
        if pointer is not None:
            seq = int(keys.DEDUP_VALUE.unpack(pointer)[0])
            value = txn.get(keys.event_key(topic, seq), db=db["events"])
            if value is not None:
                received, _, payload = keys.split_event_value(value)
                return [StoredEvent(seq, received, payload)]
    found: list[StoredEvent] = []
    for key, value in scan_prefix(txn, db["events"], keys.topic_prefix(topic)):
        received, _, payload = keys.split_event_value(value)
        document = orjson.loads(payload)
        if document.get("id") == event_id and source in (None, document.get("source")):
            found.append(StoredEvent(keys.seq_of(key), received, payload))
    return found
