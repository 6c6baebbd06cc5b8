"""A subscription's deliveries, pending and settled, in event order (the admin listing
`/v1/subscriptions/{name}/deliveries`): the `deliveries` and `log` tables share their key
(subscription, seq), so the two are walked side by side, a bounded window per page.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from typing import Any

from gateway.problems import InvalidRequest
from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.deliveries import pending_record, settled_record
from gateway.store.lmdb.scan import scan_prefix
from gateway.store.records import DeliveryPage, DeliveryRecord, ListedDelivery

Row = tuple[bytes, bool, bytes]  # key, pending?, value


def delivery_page(
    txn: Transaction,
    db: Mapping[str, Any],
    subscription: str,
    topic: str,
    state: str | None,
    after: str | None,
    limit: int,
) -> DeliveryPage:
    """Up to `limit` deliveries of `subscription` (of events of `topic`) after the cursor,
    only those in `state` when given."""
    window, scanned = limit * 10 + 1000, 0
    found: list[ListedDelivery] = []
    for key, is_pending, value in _rows(txn, db, subscription, state, _start(after)):
        seq = keys.seq_of(key)
        if len(found) == limit or scanned == window:
            return DeliveryPage(found, str(seq - 1))
        scanned += 1
        record: DeliveryRecord
        if is_pending:
            delivery = keys.decode_delivery(value)
            record, event_topic = pending_record(subscription, delivery), delivery.topic
        else:
            record, event_topic = settled_record(subscription, keys.decode_settled(value)), topic
        if state not in (None, record.state):
            continue
        event = txn.get(keys.event_key(event_topic, seq), db=db["events"])
        if event is not None:
            received, _, payload = keys.split_event_value(event)
            found.append(ListedDelivery(seq, received, payload, record))
    return DeliveryPage(found, None)


def _start(after: str | None) -> int:
    if after is None:
        return 0
    if not (after.isascii() and after.isdigit()) or len(after) > 19:
        raise InvalidRequest(f"after {after!r} is not a cursor this listing gave", field="after")
    return int(after) + 1


def _rows(
    txn: Transaction, db: Mapping[str, Any], subscription: str, state: str | None, start: int
) -> Iterator[Row]:
    prefix, first = keys.delivery_prefix(subscription), keys.delivery_key(subscription, start)
    tables: list[Iterator[Row]] = []
    if state in (None, "pending"):
        pending = scan_prefix(txn, db["deliveries"], prefix, start=first)
        tables.append((key, True, value) for key, value in pending)
    if state != "pending":
        settled = scan_prefix(txn, db["log"], prefix, start=first)
        tables.append((key, False, value) for key, value in settled)
    return heapq.merge(*tables, key=lambda row: row[0])
