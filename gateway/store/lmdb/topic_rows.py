"""Topic rows in the `meta` table: a topic's settings, the count of events it holds (its
dead-letter depth), and deleting a topic together with its events.

These are kept apart from `lmdb.py` so the environment module owns only the environment; every
function here runs inside a transaction its caller holds, so it composes with the other writes
of that transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from gateway.config.settings import TopicSettings
from gateway.problems import NotFound
from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.scan import delete_prefix, scan_prefix


def stored_topics(txn: Transaction, db: Mapping[str, Any]) -> list[TopicSettings]:
    return [
        msgspec.json.decode(value, type=TopicSettings)
        for _, value in scan_prefix(txn, db["meta"], keys.TOPIC_PREFIX)
    ]


def put_topic(txn: Transaction, db: Mapping[str, Any], topic: TopicSettings) -> bool:
    """Create or replace; True when it was created."""
    key = keys.topic_key(topic.name)
    created = txn.get(key, db=db["meta"]) is None
    txn.put(key, msgspec.json.encode(topic), db=db["meta"])
    return created


def delete_topic(
    txn: Transaction, db: Mapping[str, Any], name: str, forget: Callable[[int], None]
) -> None:
    key = keys.topic_key(name)
    if txn.get(key, db=db["meta"]) is None:
        raise NotFound(f"topic {name!r} does not exist")
    txn.delete(key, db=db["meta"])
    txn.delete(keys.topic_count_key(name), db=db["meta"])
    _delete_topic_events(txn, db, name, forget)


def has_topic(txn: Transaction, db: Mapping[str, Any], topic: str) -> bool:
    return txn.get(keys.topic_key(topic), db=db["meta"]) is not None


def topic_retention(txn: Transaction, db: Mapping[str, Any], topic: str) -> float:
    """The topic's retention in seconds; NotFound (a 404) for an unknown topic."""
    value = txn.get(keys.topic_key(topic), db=db["meta"])
    if value is None:
        raise NotFound(f"topic {topic!r} does not exist")
    return msgspec.json.decode(value, type=TopicSettings).retention


def count_events(txn: Transaction, db: Mapping[str, Any], topic: str, by: int) -> None:
    """Keep the per-topic event count (dead-letter depth) in the same transaction."""
    key = keys.topic_count_key(topic)
    value = txn.get(key, db=db["meta"])
    total = max(0, (int(keys.SEQ.unpack(value)[0]) if value else 0) + by)
    txn.put(key, keys.SEQ.pack(total), db=db["meta"])


def event_count(txn: Transaction, db: Mapping[str, Any], topic: str) -> int:
    value = txn.get(keys.topic_count_key(topic), db=db["meta"])
    return int(keys.SEQ.unpack(value)[0]) if value else 0


def _delete_topic_events(
    txn: Transaction, db: Mapping[str, Any], topic: str, forget: Callable[[int], None]
) -> None:
    def forget_dedup(key: bytes, value: bytes) -> None:
        _, dedup, _ = keys.split_event_value(value)
        txn.delete(dedup, db=db["dedup"])
        forget(keys.seq_of(key))

    delete_prefix(txn, db["events"], keys.topic_prefix(topic), each=forget_dedup)
