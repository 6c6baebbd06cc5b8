"""Subscription and extension rows in the `meta` table.

A subscription row is its spec as JSON under `subscription/<name>` (the registry decodes it;
deleting one is `DeliveryLedger.delete_subscription`, which drops its deliveries with it). An
extension row is opaque bytes under `<kind>/<key>` (Pretry configurations: kind "pretry").
Every function runs inside a transaction its caller holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.store.lmdb import keys
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.scan import scan_prefix

EXTENSION_KINDS = frozenset({"pretry"})  # a kind must never collide with the gateway's own rows


def subscription_rows(txn: Transaction, db: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    rows = scan_prefix(txn, db["meta"], keys.SUBSCRIPTION_PREFIX)
    prefix = len(keys.SUBSCRIPTION_PREFIX)
    return [(bytes(key[prefix:]).decode(errors="replace"), bytes(value)) for key, value in rows]


def put_subscription(txn: Transaction, db: Mapping[str, Any], name: str, spec: bytes) -> bool:
    """Store the spec; True when it was created."""
    key = keys.subscription_key(name)
    created = txn.get(key, db=db["meta"]) is None
    txn.put(key, spec, db=db["meta"])
    return created


def extension_key(kind: str, key: str) -> bytes:
    if kind not in EXTENSION_KINDS:
        raise ValueError(f"unknown extension row kind {kind!r}")
    return kind.encode() + b"/" + key.encode()


def extension_row(txn: Transaction, db: Mapping[str, Any], kind: str, key: str) -> bytes | None:
    value = txn.get(extension_key(kind, key), db=db["meta"])
    return None if value is None else bytes(value)


def put_extension_row(
    txn: Transaction, db: Mapping[str, Any], kind: str, key: str, value: bytes
) -> None:
    txn.put(extension_key(kind, key), value, db=db["meta"])


def delete_extension_row(txn: Transaction, db: Mapping[str, Any], kind: str, key: str) -> None:
    txn.delete(extension_key(kind, key), db=db["meta"])
