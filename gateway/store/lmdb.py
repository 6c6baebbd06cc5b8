"""The embedded store: one LMDB environment under the data directory.

Opened with `sync=True, metasync=True` (full durability) unless `server.fsync: false` opts out.
Writes go through the group `Committer`; reads are short read transactions that never span an
`await`. An exclusive lock on the data directory refuses a second gateway (RELIABILITY R15);
stale reader slots left by a killed process are reclaimed at open (R14).
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar

import lmdb
import msgspec
import orjson

from gateway.events import IncomingEvent
from gateway.problems import GatewayError, InvalidRequest, NotFound, StoreFailure, StoreFull
from gateway.settings import TopicSettings
from gateway.store import keys
from gateway.store.base import (
    DeadLetterResult,
    Fanout,
    Page,
    PublishResult,
    StoredEvent,
    SweepResult,
)
from gateway.store.committer import Committer, Transaction
from gateway.store.deliveries import NO_DEDUP, DeliveryLedger, Settlement, event_attributes
from gateway.store.redrive import RetentionOf, Selection, purge_action, redrive_action, run_batch

T = TypeVar("T")
log = logging.getLogger("gateway.store")

ENV_FILE = "gateway.mdb"
LOCK_FILE = "gateway.lock"
GROW_AT = 0.8
SWEEP_BATCH = 5000
TABLES = ("events", "dedup", "deliveries", "due", "meta")


class DataDirInUse(RuntimeError):
    """Another gateway holds this data directory."""


class LmdbStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        map_size: int = 256 * 1024**2,
        max_map_size: int = 32 * 1024**3,
        fsync: bool = True,
        fanout: Fanout | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_data_dir(data_dir)
        self.max_map_size = max(max_map_size, map_size)
        # Called by the writer thread after each commit with (operations, seconds).
        self.on_commit: Callable[[int, float], None] = lambda operations, seconds: None
        self._read_gate = threading.Lock()
        self.fanout: Fanout = fanout or (lambda topic, attributes: ())
        self.full = False
        self.env = lmdb.open(
            str(data_dir / ENV_FILE),
            subdir=False,
            map_size=map_size,
            max_dbs=len(TABLES),
            max_readers=1024,
            sync=fsync,
            metasync=fsync,
            readahead=False,
        )
        reclaimed = self.env.reader_check()
        log.info("store opened at %s; stale reader slots reclaimed: %d", data_dir, reclaimed)
        self.reclaimed_readers = reclaimed
        self.db = {name: self.env.open_db(name.encode()) for name in TABLES}
        self._committer = Committer(
            begin=lambda: self.env.begin(write=True),
            commit=self._commit_transaction,
            before_batch=self._grow_if_needed,
            on_map_full=self._grow_on_full,
            translate=_translate,
            observe=lambda operations, seconds: self.on_commit(operations, seconds),
        )
        self._committer.start()
        self.deliveries = DeliveryLedger(self)

    # -- lifecycle and stats ---------------------------------------------------------------

    @property
    def commits(self) -> int:
        return self._committer.stats.commits

    @property
    def committed_operations(self) -> int:
        return self._committer.stats.operations

    def close(self) -> None:
        self._committer.stop()
        self.env.close()
        os.close(self._lock_fd)

    def used_bytes(self) -> int:
        """Pages ever used (a high-water mark: freed pages are reused, not returned)."""
        with self._read_gate:  # the writer thread may be resizing the map
            return int((self.env.info()["last_pgno"] + 1) * self.env.stat()["psize"])

    def map_size(self) -> int:
        with self._read_gate:
            return int(self.env.info()["map_size"])

    def _commit_transaction(self, txn: Transaction) -> None:
        """The one place a write transaction is committed (a test seam for fault injection)."""
        txn.commit()
        self.full = False

    def _grow_if_needed(self) -> None:
        if self.used_bytes() > GROW_AT * self.map_size():
            self._resize()

    def _grow_on_full(self) -> bool:
        if self.map_size() >= self.max_map_size:
            self.full = True
            return False
        self._resize()
        return True

    def _resize(self) -> None:
        new_size = min(self.max_map_size, self.map_size() * 2)
        if new_size > self.map_size():
            with self._read_gate:  # LMDB: no transaction may be active while the map is resized
                self.env.set_mapsize(new_size)
            log.info("store map grown to %d bytes", new_size)

    def read(self, run: Callable[[Transaction], T]) -> T:
        """Run `run` in a short read transaction (never held across an await)."""
        with self._read_gate, self.env.begin() as txn:
            return run(txn)

    def announce(self) -> None:
        """A publish is on its way: the group committer may wait briefly to share a commit."""
        self._committer.announce()

    def withdraw(self) -> None:
        """The announced publish will not come (it failed before reaching the store)."""
        self._committer.withdraw()

    async def write(self, run: Callable[[Transaction], T], announced: bool = False) -> T:
        """Run `run` in the next group-committed write transaction."""
        return await self._committer.submit(run, announced)

    # -- topics ----------------------------------------------------------------------------

    def topics(self) -> list[TopicSettings]:
        def run(txn: Transaction) -> list[TopicSettings]:
            cursor = txn.cursor(db=self.db["meta"])
            found = []
            if cursor.set_range(b"topic/"):
                for key, value in cursor:
                    if not key.startswith(b"topic/"):
                        break
                    found.append(msgspec.json.decode(value, type=TopicSettings))
            return found

        return self.read(run)

    async def put_topic(self, topic: TopicSettings) -> bool:
        def run(txn: Transaction) -> bool:
            key = b"topic/" + topic.name.encode()
            created = txn.get(key, db=self.db["meta"]) is None
            txn.put(key, msgspec.json.encode(topic), db=self.db["meta"])
            return created

        return await self.write(run)

    async def delete_topic(self, name: str) -> None:
        def run(txn: Transaction) -> None:
            key = b"topic/" + name.encode()
            if txn.get(key, db=self.db["meta"]) is None:
                raise NotFound(f"topic {name!r} does not exist")
            txn.delete(key, db=self.db["meta"])
            txn.delete(keys.topic_count_key(name), db=self.db["meta"])
            self._delete_topic_events(txn, name)

        await self.write(run)

    def count_events(self, txn: Transaction, topic: str, by: int) -> None:
        """Keep the per-topic event count (dead-letter depth) in the same transaction."""
        key = keys.topic_count_key(topic)
        value = txn.get(key, db=self.db["meta"])
        total = max(0, (int(keys.SEQ.unpack(value)[0]) if value else 0) + by)
        txn.put(key, keys.SEQ.pack(total), db=self.db["meta"])

    def event_count(self, topic: str) -> int:
        def run(txn: Transaction) -> int:
            value = txn.get(keys.topic_count_key(topic), db=self.db["meta"])
            return int(keys.SEQ.unpack(value)[0]) if value else 0

        return self.read(run)

    def _delete_topic_events(self, txn: Transaction, topic: str) -> None:
        cursor = txn.cursor(db=self.db["events"])
        prefix = keys.topic_prefix(topic)
        if not cursor.set_range(prefix):
            return
        while cursor.key().startswith(prefix):
            _, dedup, _ = keys.split_event_value(cursor.value())
            txn.delete(dedup, db=self.db["dedup"])
            if not cursor.delete():
                break

    def _retention(self, txn: Transaction, topic: str) -> float:
        value = txn.get(b"topic/" + topic.encode(), db=self.db["meta"])
        if value is None:
            raise NotFound(f"topic {topic!r} does not exist")
        return msgspec.json.decode(value, type=TopicSettings).retention

    # -- publish and browse ----------------------------------------------------------------

    async def publish(
        self, topic: str, events: Sequence[IncomingEvent], now: float, announced: bool = False
    ) -> PublishResult:
        return await self.write(lambda txn: self._publish(txn, topic, events, now), announced)

    def _publish(
        self, txn: Transaction, topic: str, events: Sequence[IncomingEvent], now: float
    ) -> PublishResult:
        retention = self._retention(txn, topic)
        seq = self._next_seq(txn)
        accepted = duplicates = 0
        enqueued: dict[str, int] = {}
        for event in events:
            dedup = keys.dedup_key(topic, event.source, event.id)
            if self._is_duplicate(txn, dedup, retention, now):
                duplicates += 1
                continue
            seq += 1
            txn.put(
                keys.event_key(topic, seq),
                keys.event_value(now, dedup, event.payload),
                db=self.db["events"],
            )
            txn.put(dedup, keys.DEDUP_VALUE.pack(seq, now), db=self.db["dedup"])
            for subscription, delay in self.fanout(topic, event.attributes):
                self.deliveries.enqueue(
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
            self.deliveries.count(txn, subscription, "published", count)
        subscriptions = set(enqueued)
        txn.put(b"seq", keys.SEQ.pack(seq), db=self.db["meta"])
        if accepted:
            self.count_events(txn, topic, accepted)
        return PublishResult(accepted, duplicates, frozenset(subscriptions))

    def _next_seq(self, txn: Transaction) -> int:
        value = txn.get(b"seq", db=self.db["meta"])
        return int(keys.SEQ.unpack(value)[0]) if value else 0

    def _is_duplicate(self, txn: Transaction, dedup: bytes, retention: float, now: float) -> bool:
        existing = txn.get(dedup, db=self.db["dedup"])
        if existing is None:
            return False
        _, received = keys.DEDUP_VALUE.unpack(existing)
        return bool(received + retention > now)

    def has_topic(self, txn: Transaction, topic: str) -> bool:
        return txn.get(b"topic/" + topic.encode(), db=self.db["meta"]) is not None

    def append(self, txn: Transaction, topic: str, payload: bytes, now: float) -> set[str]:
        """Store an event that bypasses dedup (a dead letter) and fan it out; returns the
        subscriptions that got a delivery."""
        retention = self._retention(txn, topic)
        seq = self._next_seq(txn) + 1
        txn.put(
            keys.event_key(topic, seq),
            keys.event_value(now, NO_DEDUP, payload),
            db=self.db["events"],
        )
        txn.put(b"seq", keys.SEQ.pack(seq), db=self.db["meta"])
        self.count_events(txn, topic, 1)
        subscriptions: set[str] = set()
        for subscription, delay in self.fanout(topic, event_attributes(payload)):
            self.deliveries.enqueue(
                txn, subscription, topic, seq, now + delay, now + retention, enqueued=now
            )
            subscriptions.add(subscription)
        return subscriptions

    async def record(self, settlement: Settlement, now: float) -> set[str]:
        """Record one attempt's outcome (group-committed); returns subscriptions to wake."""
        return await self.write(lambda txn: self.deliveries.settle(txn, settlement, now))

    def browse(
        self, topic: str, after: str | None, limit: int, selection: Selection | None = None
    ) -> Page:
        """A page of the topic's events after the cursor `after`, optionally only those a
        dead-letter `selection` matches (scanning a bounded window per page)."""
        start = _cursor_seq(after) + 1
        prefix = keys.topic_prefix(topic)
        window = limit * 10 + 1000

        def run(txn: Transaction) -> Page:
            self._retention(txn, topic)  # 404 for an unknown topic
            cursor = txn.cursor(db=self.db["events"])
            found: list[StoredEvent] = []
            scanned = 0
            if not cursor.set_range(keys.event_key(topic, start)):
                return Page(found, None)
            for key, value in cursor:
                if not key.startswith(prefix):
                    return Page(found, None)
                if len(found) == limit or scanned == window:
                    return Page(found, str(keys.seq_of(key) - 1))
                scanned += 1
                received, _, payload = keys.split_event_value(value)
                if selection is None or selection.matches(orjson.loads(payload)):
                    found.append(StoredEvent(keys.seq_of(key), received, payload))
            return Page(found, None)

        return self.read(run)

    def get_event(self, topic: str, seq: int) -> StoredEvent | None:
        def run(txn: Transaction) -> StoredEvent | None:
            value = txn.get(keys.event_key(topic, seq), db=self.db["events"])
            if value is None:
                return None
            received, _, payload = keys.split_event_value(value)
            return StoredEvent(seq, received, payload)

        return self.read(run)

    # -- dead-letter topics -------------------------------------------------------------------

    async def redrive(
        self, topic: str, selection: Selection, retention_of: RetentionOf, now: float
    ) -> DeadLetterResult:
        """Move selected dead letters back to their subscriptions, a batch per transaction."""

        def batch(after: int, woken: set[str], txn: Transaction) -> tuple[int, int, int, bool]:
            self._retention(txn, topic)  # 404 for an unknown topic
            act = redrive_action(txn, self.db, self.deliveries, topic, retention_of, now, woken)
            moved, skipped, last, done = run_batch(txn, self.db, topic, selection, after, act)
            self.count_events(txn, topic, -moved)
            return moved, skipped, last, done

        return await self._batches(batch)

    async def purge(self, topic: str, selection: Selection) -> DeadLetterResult:
        def batch(after: int, woken: set[str], txn: Transaction) -> tuple[int, int, int, bool]:
            self._retention(txn, topic)
            act = purge_action(txn, self.db, self.deliveries, topic)
            purged, skipped, last, done = run_batch(txn, self.db, topic, selection, after, act)
            self.count_events(txn, topic, -purged)
            return purged, skipped, last, done

        return await self._batches(batch)

    async def _batches(
        self, batch: Callable[[int, set[str], Transaction], tuple[int, int, int, bool]]
    ) -> DeadLetterResult:
        handled = skipped = after = 0
        woken: set[str] = set()
        done = False
        while not done:
            moved, left, after, done = await self.write(partial(batch, after, woken))
            handled, skipped = handled + moved, skipped + left
        return DeadLetterResult(handled, skipped, frozenset(woken))

    # -- retention ---------------------------------------------------------------------------

    async def sweep(self, now: float, wall: float) -> SweepResult:
        """Delete events whose retention has ended (in bounded batches), settling their
        pending deliveries as expired first."""
        total = 0
        woken: set[str] = set()
        for topic in self.topics():
            while True:
                removed = await self.write(
                    partial(self._sweep_topic, topic=topic, now=now, wall=wall, woken=woken)
                )
                total += removed
                if removed < SWEEP_BATCH:
                    break
        return SweepResult(total, frozenset(woken))

    def _sweep_topic(
        self, txn: Transaction, *, topic: TopicSettings, now: float, wall: float, woken: set[str]
    ) -> int:
        cursor = txn.cursor(db=self.db["events"])
        prefix = keys.topic_prefix(topic.name)
        removed = 0
        if not cursor.set_range(prefix):
            return 0
        while removed < SWEEP_BATCH and cursor.key().startswith(prefix):
            received, dedup, _ = keys.split_event_value(cursor.value())
            if received + topic.retention > now:
                break
            seq = keys.seq_of(cursor.key())
            woken |= self.deliveries.settle_expired(txn, topic.name, seq, now, wall)
            pointer = txn.get(dedup, db=self.db["dedup"])
            if pointer is not None and keys.DEDUP_VALUE.unpack(pointer)[0] == seq:
                txn.delete(dedup, db=self.db["dedup"])
            removed += 1
            if not cursor.delete():
                break
        if removed:
            self.count_events(txn, topic.name, -removed)
        return removed


def _cursor_seq(after: str | None) -> int:
    if after is None or after == "":
        return 0
    if not re.fullmatch(r"[0-9]{1,19}", after) or int(after) >= 2**63:
        raise InvalidRequest(f"after {after!r} is not a cursor from a previous page", field="after")
    return int(after)


def _lock_data_dir(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(
            f"data directory {data_dir} is in use by another gateway (pid {holder}); "
            "one data directory serves exactly one gateway process"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd


def _translate(error: BaseException) -> BaseException:
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, lmdb.MapFullError):
        return StoreFull(
            "the event store reached server.maxMapSize; purge dead letters, shorten retention "
            "or raise server.maxMapSize"
        )
    if isinstance(error, lmdb.Error):
        return StoreFailure(f"the store could not commit ({error.__class__.__name__}); retry")
    return StoreFailure(f"the store could not commit ({error.__class__.__name__}); retry")
