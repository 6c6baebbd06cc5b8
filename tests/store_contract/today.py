"""TEMPORARY: today's `LmdbStore` behind the seam's target names (notes/SEAM.md), so the
contract suite runs before `open_store` lands. It calls only LmdbStore's current public members
(plus raw `meta` rows for subscription and extension rows, as the registries do today). Deleted
once `gateway.store.open_store` exists (conftest then opens the store through it).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.policy.deadletters import Failure
from gateway.store.lmdb import keys
from gateway.store.lmdb.scan import scan_prefix
from gateway.store.lmdb.store import LmdbStore

EXTENSION_PREFIX = b"x/"  # the adapter's own key space for extension rows


@dataclass(frozen=True)
class Delivery:
    subscription: str
    seq: int
    attempts: int
    due: float
    expires: float
    payload: bytes | None
    last_failure: Failure


@dataclass(frozen=True)
class Statistics:
    commits: int
    used_bytes: int
    capacity_bytes: int
    max_bytes: int
    full: bool


class Hint:
    def __init__(self, store: LmdbStore) -> None:
        self._store = store
        self.used = False

    def __enter__(self) -> Hint:
        self._store.announce()
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.used:
            self._store.withdraw()


def _delivery(found: Any) -> Any:
    if hasattr(found, "last_failure"):  # already the seam's Delivery record
        return found
    state = getattr(found, "state", found)
    return _record(found.subscription, state, found.payload)


def _record(subscription: str, state: Any, payload: bytes | None) -> Delivery:
    failure = Failure(state.last_status, state.last_error, state.last_body)
    return Delivery(
        subscription, state.seq, state.attempts, state.due, state.expires, payload, failure
    )


class Adapted:
    def __init__(self, store: LmdbStore) -> None:
        self._s = store

    def publishing(self) -> Hint:
        return Hint(self._s)

    async def publish(
        self, topic: str, events: Sequence[Any], now: float, hint: Hint | None = None
    ) -> Any:
        if hint is not None:
            hint.used = True
        return await self._s.publish(topic, events, now, announced=hint is not None)

    async def claim(
        self, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[Delivery]:
        found = self._s.deliveries.due(subscription, now, limit, skip)  # type: ignore[arg-type]
        return [_delivery(item) for item in found]

    async def delivery(self, subscription: str, seq: int) -> Any:
        ledger: Any = self._s.deliveries
        found = getattr(ledger, "delivery", None) or ledger.state
        state = found(subscription, seq)
        if state is None or hasattr(state, "last_failure"):
            return state
        return _record(subscription, state, state.payload)

    async def last_outcome(self, subscription: str) -> Any:
        return self._s.deliveries.last_outcome(subscription)

    async def next_due(self, subscription: str, after: float) -> float | None:
        return self._s.deliveries.next_due(subscription, after)

    async def settle(self, settlements: Sequence[Any], now: float) -> set[str]:
        return await self._s.record(settlements, now)

    async def counters(self, subscription: str) -> dict[str, int]:
        return self._s.deliveries.counters(subscription)

    async def oldest_pending(self, subscription: str) -> float | None:
        return self._s.deliveries.oldest_pending(subscription)

    async def browse(
        self,
        topic: str,
        cursor: str | None,
        limit: int,
        selection: Any = None,
        *,
        newest_first: bool = False,
    ) -> Any:
        if newest_first:
            return self._s.browse_newest(topic, cursor, limit, selection)
        return self._s.browse(topic, cursor, limit, selection)

    async def redrive(self, topic: str, selection: Any, retention_of: Any, now: float) -> Any:
        return await self._s.redrive(topic, selection, retention_of, now)

    async def purge(self, topic: str, selection: Any) -> Any:
        return await self._s.purge(topic, selection)

    async def sweep(self, now: float, wall: float) -> Any:
        return await self._s.sweep(now, wall)

    async def topics(self) -> list[Any]:
        return self._s.topics()

    async def put_topic(self, topic: Any) -> bool:
        return await self._s.put_topic(topic)

    async def delete_topic(self, name: str) -> None:
        await self._s.delete_topic(name)

    async def event_count(self, topic: str) -> int:
        return self._s.event_count(topic)

    async def subscription_rows(self) -> list[tuple[str, bytes]]:
        meta, prefix = self._s.db["meta"], keys.SUBSCRIPTION_PREFIX

        def run(txn: Any) -> list[tuple[str, bytes]]:
            rows = scan_prefix(txn, meta, prefix)
            return [(bytes(k)[len(prefix) :].decode(), bytes(v)) for k, v in rows]

        return self._s.read(run)

    async def put_subscription(self, name: str, spec: bytes, apply: Callable[[], None]) -> bool:
        key, meta = keys.subscription_key(name), self._s.db["meta"]

        def run(txn: Any) -> bool:
            created = txn.get(key, db=meta) is None
            txn.put(key, spec, db=meta)
            apply()
            return created

        return await self._s.write(run)

    async def delete_subscription(self, name: str, apply: Callable[[], None]) -> int:
        def run(txn: Any) -> int:
            dropped = self._s.deliveries.delete_subscription(txn, name)
            apply()
            return dropped

        return await self._s.write(run)

    async def extension_row(self, kind: str, key: str) -> bytes | None:
        row, meta = _extension_key(kind, key), self._s.db["meta"]
        value = self._s.read(lambda txn: txn.get(row, db=meta))
        return None if value is None else bytes(value)

    async def put_extension_row(self, kind: str, key: str, value: bytes) -> None:
        row, meta = _extension_key(kind, key), self._s.db["meta"]
        await self._s.write(lambda txn: txn.put(row, value, db=meta))

    async def delete_extension_row(self, kind: str, key: str) -> None:
        row, meta = _extension_key(kind, key), self._s.db["meta"]
        await self._s.write(lambda txn: txn.delete(row, db=meta))

    def statistics(self) -> Statistics:
        s = self._s
        return Statistics(s.commits, s.used_bytes(), s.map_size(), s.max_map_size, s.full)

    async def maintain(self) -> None:
        return None

    def close(self) -> None:
        self._s.close()


def _extension_key(kind: str, key: str) -> bytes:
    return EXTENSION_PREFIX + kind.encode() + b"/" + key.encode()


def adapt(store: LmdbStore, routing: Any) -> Adapted:
    store.fanout = routing.fanout
    store.deliveries.subscriptions_of = routing.subscriptions_of
    return Adapted(store)
