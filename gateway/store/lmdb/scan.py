"""Prefix scans over one LMDB table: every table keys its rows by a prefix (a topic, a
subscription, `topic/`, `count/...`), and walking or deleting the rows under one is the same
cursor loop wherever it happens, so it is written once here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from gateway.store.lmdb.committer import Transaction


def scan_prefix(
    txn: Transaction, db: Any, prefix: bytes, *, start: bytes | None = None
) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) rows of `db` whose key starts with `prefix`, in key order, from `start`
    (a key under `prefix`) or from the first. Nothing may be written to `db` meanwhile."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix if start is None else start):
        return
    for key, value in cursor:
        if not key.startswith(prefix):
            return
        yield key, value


def scan_keys(
    txn: Transaction, db: Any, prefix: bytes, *, start: bytes | None = None
) -> Iterator[bytes]:
    """`scan_prefix` without reading the values."""
    cursor = txn.cursor(db=db)
    if not cursor.set_range(prefix if start is None else start):
        return
    for key in cursor.iternext(keys=True, values=False):
        if not key.startswith(prefix):
            return
        yield key


def delete_prefix(
    txn: Transaction,
    db: Any,
    prefix: bytes,
    *,
    each: Callable[[bytes, bytes], None] | None = None,
) -> int:
    """Delete every row of `db` under `prefix`, first passing each (key, value) to `each`;
    returns how many were deleted."""
    cursor = txn.cursor(db=db)
    deleted = 0
    if not cursor.set_range(prefix):
        return 0
    while cursor.key().startswith(prefix):
        if each is not None:
            each(cursor.key(), cursor.value())
        deleted += 1
        if not cursor.delete():
            break
    return deleted
