"""The embedded store: one LMDB environment under the data directory.

Opened with `sync=True, metasync=True` (full durability) unless `server.fsync: false` opts out.
Writes go through the group `Committer`; reads are short read transactions that never span an
`await`. An exclusive lock on the data directory refuses a second gateway (RELIABILITY R15);
stale reader slots left by a killed process are reclaimed at open (R14).

This module owns only the environment: opening and locking it, growing the map, and running
read and group-committed write transactions. What the tables hold lives next to it: topic rows
in `topics`, publish and browse in `events`, dead-letter redrive and purge in `redrive`, the
retention sweep in `sweep`, deliveries in `deliveries`, subscription and extension rows in
`meta`. `LmdbStore`'s methods for those are thin delegates, so the rest of the gateway sees one
object (the `base.Store` protocol). Its reads complete at once: the protocol's `async` reads
are coroutines over a synchronous read transaction.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Container, Coroutine, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.problems import GatewayError, StoreFailure, StoreFull
from gateway.store.base import PublishHint, RoutingChange, Store
from gateway.store.lmdb import mapped, meta
from gateway.store.lmdb import topic_rows as topic_rows
from gateway.store.lmdb.ack_writer import AckWriter, AckWriterUnavailable
from gateway.store.lmdb.acks import PlainAck
from gateway.store.lmdb.committer import Committer, PublishAnnouncement, Transaction
from gateway.store.lmdb.deliveries import DeliveryLedger, plain_ack
from gateway.store.lmdb.environment import ENV_FILE, TABLES, open_environment
from gateway.store.lmdb.event_table import (
    append_event,
    browse_newest_page,
    browse_page,
    cursor_seq,
    find_events,
    publish_events,
)
from gateway.store.lmdb.listing import delivery_page
from gateway.store.lmdb.redrive import purge_dead_letters, redrive_dead_letters
from gateway.store.lmdb.sweep import sweep_expired
from gateway.store.lmdb.tallies import Tallies
from gateway.store.records import (
    DeadLetterResult,
    Delivery,
    DeliveryPage,
    DeliveryRecord,
    LastOutcome,
    Page,
    PublishResult,
    RetentionOf,
    Routing,
    Selection,
    Settlement,
    StoredEvent,
    StoreStatistics,
    SubscriptionCounters,
    SweepResult,
)

T = TypeVar("T")
log = logging.getLogger("gateway.store")

LOCK_FILE = "gateway.lock"
GROW_AT = 0.8


class DataDirInUse(RuntimeError):
    """Another gateway holds this data directory."""


class NoRouting:
    """Routing for a store opened without subscriptions (tools, LMDB unit tests)."""

    def fanout(self, topic: str, attributes: Mapping[str, Any]) -> Sequence[tuple[str, float]]:
        return ()

    def subscriptions_of(self, topic: str) -> Sequence[tuple[str, str | None]]:
        return ()


class LmdbStore:
    def __init__(
        self,
        data_dir: Path,
        *,
        map_size: int = 256 * 1024**2,
        max_map_size: int = 32 * 1024**3,
        fsync: bool = True,
        routing: Routing | None = None,
        on_commit: Callable[[int, float], None] | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = _lock_data_dir(data_dir)
        self.max_map_size = max(max_map_size, map_size)
        # Called by the writer thread after each commit with (operations, seconds).
        self.on_commit = on_commit or (lambda operations, seconds: None)
        self._read_gate = threading.Lock()
        self._closed = False
        # Called in the writer's transaction (`event_table`, `deliveries`); see `base.Store`.
        self.routing: Routing = routing or NoRouting()
        self.full = False
        self._file = data_dir / ENV_FILE
        # At least the map size the file records: the ack writer process maps that much, and
        # its commits must never reach past this process's map (LMDB would then refuse every
        # transaction here with MDB_MAP_RESIZED until this process grows its map).
        self.env = open_environment(self._file, fsync=fsync)
        if self.env.info()["map_size"] < map_size:
            self.env.set_mapsize(map_size)
        reclaimed = self.env.reader_check()
        log.info("store opened at %s; stale reader slots reclaimed: %d", data_dir, reclaimed)
        self.reclaimed_readers = reclaimed
        self.db = {name: self.env.open_db(name.encode()) for name in TABLES}
        self._page_size = int(self.env.stat()["psize"])
        # The writer thread's bookkeeping for the transaction it runs (see `tallies`).
        self.tallies = Tallies(self.db)
        self._committer = Committer(
            begin=self._begin_transaction,
            commit=self._commit_transaction,
            before_growth=self._grow_if_needed,
            on_map_full=self._grow_on_full,
            translate=_translate,
            observe=lambda operations, seconds: self.on_commit(operations, seconds),
        )
        self._committer.start()
        # Plain acks are committed by a process of their own (`ack_writer`), started on the
        # first; everything else, and acks that process could not commit, by the thread.
        self.ack_writer = AckWriter(
            self._file,
            fsync=fsync,
            observe=lambda operations, seconds: self.on_commit(operations, seconds),
        )
        self.deliveries = DeliveryLedger(self)

    # -- lifecycle and stats ---------------------------------------------------------------

    @property
    def commits(self) -> int:
        """Write transactions committed, by both writers."""
        return self._committer.stats.commits + self.ack_writer.commits

    @property
    def committed_operations(self) -> int:
        return self._committer.stats.operations + self.ack_writer.operations

    def close(self) -> None:
        try:
            self.ack_writer.close()
        finally:
            self._committer.stop()
            with self._read_gate:
                self.env.close()
                self._closed = True
            os.close(self._lock_fd)

    def statistics(self) -> StoreStatistics:
        with self._read_gate:  # the writer thread may be resizing the map
            info = self.env.info()
        return StoreStatistics(
            commits=self.commits,
            used_bytes=self._used_bytes(info),
            capacity_bytes=int(info["map_size"]),
            max_bytes=self.max_map_size,
            full=self.full,
        )

    async def maintain(self) -> None:
        """Keep the map's pages from filling the process's resident memory (`mapped`)."""
        await mapped.trim_periodically(self.release_mapped_pages)

    def used_bytes(self) -> int:
        """Pages ever used (a high-water mark: freed pages are reused, not returned)."""
        with self._read_gate:  # the writer thread may be resizing the map
            return self._used_bytes(self.env.info())

    def _used_bytes(self, info: Mapping[str, Any]) -> int:
        return int((info["last_pgno"] + 1) * self._page_size)

    def map_size(self) -> int:
        with self._read_gate:
            return int(self.env.info()["map_size"])

    def release_mapped_pages(self, budget: int = mapped.BUDGET) -> bool:
        """If the process holds more than `budget` bytes of file-backed memory (mostly the
        store's map; the rest is shared libraries), unmap the store's pages (see
        gateway.store.mapped); True if it did."""
        if mapped.resident_file_bytes() <= budget:
            return False
        with self._read_gate:  # the map is not resized (moved) or closed meanwhile
            if self._closed:
                return False
            mapped.release(self._file)
        return True

    def _begin_transaction(self) -> Transaction:
        self.tallies.reset()
        return self.env.begin(write=True)

    def _commit_transaction(self, txn: Transaction) -> None:
        """The one place a write transaction is committed (a test seam for fault injection)."""
        self.tallies.write(txn)
        txn.commit()
        self.full = False

    def _grow_if_needed(self) -> None:
        # Runs in the writer thread, the only one that resizes the map: no read gate (which
        # the event loop's reads hold) and one LMDB call, before every batch that adds data.
        info = self.env.info()
        if self._used_bytes(info) > GROW_AT * info["map_size"]:
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

    def publishing(self) -> PublishAnnouncement:
        """A publish is on its way: the group committer may wait briefly to share a commit."""
        return PublishAnnouncement(self._committer)

    def write(
        self, run: Callable[[Transaction], T], announced: bool = False, grows: bool = False
    ) -> Coroutine[Any, Any, T]:
        """Run `run` in the next group-committed write transaction (to be awaited). Not a
        coroutine of its own: a publish awaits through as few frames as it can."""
        return self._committer.submit(run, announced, grows)

    # -- delegates: each concern lives in its own module -----------------------------------

    def stored_topics(self) -> list[TopicSettings]:
        return self.read(lambda txn: topic_rows.stored_topics(txn, self.db))

    async def topics(self) -> list[TopicSettings]:
        return self.stored_topics()

    async def put_topic(self, topic: TopicSettings) -> bool:
        def run(txn: Transaction) -> bool:
            self.tallies.topic_changed(topic.name)
            return topic_rows.put_topic(txn, self.db, topic)

        return await self.write(run)

    async def delete_topic(self, name: str) -> None:
        def run(txn: Transaction) -> None:
            forget = partial(self.deliveries.forget_logs, txn, name)
            topic_rows.delete_topic(txn, self.db, name, forget)
            self.tallies.topic_deleted(name)

        await self.write(run)

    def has_topic(self, txn: Transaction, topic: str) -> bool:
        return topic_rows.has_topic(txn, self.db, topic)

    async def event_count(self, topic: str) -> int:
        return self.read(lambda txn: topic_rows.event_count(txn, self.db, topic))

    def publish(
        self,
        topic: str,
        events: Sequence[IncomingEvent],
        now: float,
        hint: PublishHint | None = None,
    ) -> Coroutine[Any, Any, PublishResult]:
        """Not a coroutine of its own: returns the committer's (one frame fewer per publish)."""
        announced = isinstance(hint, PublishAnnouncement) and hint.hand_over()
        return self.write(
            lambda txn: publish_events(txn, self, topic, events, now), announced, grows=True
        )

    def append(self, txn: Transaction, topic: str, payload: bytes, now: float) -> set[str]:
        """Store an event that bypasses dedup (a dead letter) and fan it out; returns the
        subscriptions that got a delivery."""
        return append_event(txn, self, topic, payload, now)

    async def settle(self, settlements: Sequence[Settlement], now: float) -> set[str]:
        """Record attempts' outcomes in one commit; returns subscriptions to wake. Plain acks
        go to the ack writer process, anything else to the next group commit."""
        acks, succeeded = _plain_acks(settlements)
        if acks:
            try:
                await self.ack_writer.record(acks, succeeded)
                return set()
            except AckWriterUnavailable:
                pass  # the writer thread records them; an ack applied twice changes nothing
        try:
            return await self.write(lambda txn: self.deliveries.settle_all(txn, settlements, now))
        except StoreFull:
            # A full store still settles deliveries (settling frees pages): the same outcomes
            # then, but without adding to their attempt logs.
            return await self.write(
                lambda txn: self.deliveries.settle_all(txn, settlements, now, keep_logs=False)
            )

    async def browse(
        self,
        topic: str,
        cursor: str | None,
        limit: int,
        selection: Selection | None = None,
        *,
        newest_first: bool = False,
    ) -> Page:
        """A page of the topic's events after `cursor` (or before it, `newest_first`),
        optionally only those a dead-letter `selection` matches (scanning a bounded window
        per page)."""
        if newest_first:
            end = cursor_seq(cursor) if cursor else None
            return self.read(
                lambda txn: browse_newest_page(txn, self.db, topic, end, limit, selection)
            )
        start = cursor_seq(cursor) + 1
        return self.read(lambda txn: browse_page(txn, self.db, topic, start, limit, selection))

    async def redrive(
        self, topic: str, selection: Selection, retention_of: RetentionOf, now: float
    ) -> DeadLetterResult:
        """Move selected dead letters back to their subscriptions, a batch per transaction."""
        return await redrive_dead_letters(self, topic, selection, retention_of, now)

    async def purge(self, topic: str, selection: Selection) -> DeadLetterResult:
        return await purge_dead_letters(self, topic, selection)

    async def sweep(self, now: float, wall: float) -> SweepResult:
        """Delete events whose retention has ended (in bounded batches), settling their
        pending deliveries as expired first."""
        return await sweep_expired(self, now, wall)

    # -- deliveries (the ledger's reads, as the protocol's coroutines) ----------------------

    async def claim(
        self, subscription: str, now: float, limit: int, skip: Container[int]
    ) -> list[Delivery]:
        return self.deliveries.due(subscription, now, limit, skip)

    async def next_due(self, subscription: str, after: float) -> float | None:
        return self.deliveries.next_due(subscription, after)

    async def delivery(self, subscription: str, seq: int) -> Delivery | None:
        return self.deliveries.delivery(subscription, seq)

    async def counters(self, subscription: str) -> SubscriptionCounters:
        return self.deliveries.counters(subscription)

    async def last_outcome(self, subscription: str) -> LastOutcome:
        return self.deliveries.last_outcome(subscription)

    async def event_deliveries(self, topic: str, seq: int) -> list[DeliveryRecord]:
        return self.deliveries.event_deliveries(topic, seq)

    async def subscription_deliveries(
        self, subscription: str, topic: str, state: str | None, after: str | None, limit: int
    ) -> DeliveryPage:
        return self.read(
            lambda txn: delivery_page(txn, self.db, subscription, topic, state, after, limit)
        )

    async def events_by_id(
        self, topic: str, event_id: str, source: str | None = None
    ) -> list[StoredEvent]:
        return self.read(lambda txn: find_events(txn, self.db, topic, event_id, source))

    async def oldest_pending(self, subscription: str) -> float | None:
        return self.deliveries.oldest_pending(subscription)

    # -- subscription and extension rows (`meta`) -------------------------------------------

    async def subscription_rows(self) -> list[tuple[str, bytes]]:
        return self.read(lambda txn: meta.subscription_rows(txn, self.db))

    async def put_subscription(self, name: str, spec: bytes, apply: RoutingChange) -> bool:
        """Store the spec and `apply` the routing change in the same write transaction."""
        return await self._changing_routing(
            lambda txn: meta.put_subscription(txn, self.db, name, spec), apply
        )

    async def delete_subscription(self, name: str, apply: RoutingChange) -> int:
        return await self._changing_routing(
            lambda txn: self.deliveries.delete_subscription(txn, name), apply
        )

    async def _changing_routing(self, write: Callable[[Transaction], T], apply: RoutingChange) -> T:
        """`write`, then `apply` the routing change, in one transaction; if that transaction
        is aborted, the change is undone before the next one begins."""
        undo: list[Callable[[], None]] = []

        def run(txn: Transaction) -> T:
            result = write(txn)
            undo.append(apply())
            return result

        return await self._committer.submit(run, on_abort=lambda: undo.pop()())

    async def extension_row(self, kind: str, key: str) -> bytes | None:
        return self.read(lambda txn: meta.extension_row(txn, self.db, kind, key))

    async def put_extension_row(self, kind: str, key: str, value: bytes) -> None:
        await self.write(lambda txn: meta.put_extension_row(txn, self.db, kind, key, value))

    async def delete_extension_row(self, kind: str, key: str) -> None:
        await self.write(lambda txn: meta.delete_extension_row(txn, self.db, kind, key))


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
    return StoreFailure(f"the store could not commit ({error.__class__.__name__}); retry")


if TYPE_CHECKING:
    _CONFORMS: type[Store] = LmdbStore  # mypy keeps `base.Store` true to this implementation


def _plain_acks(
    settlements: Sequence[Settlement],
) -> tuple[list[PlainAck] | None, dict[str, float]]:
    """The acks, if every settlement is a plain ack (the ack writer takes only those), and
    the wall time of each subscription's last one."""
    acks = []
    succeeded: dict[str, float] = {}
    for settlement in settlements:
        ack = plain_ack(settlement)
        if ack is None:
            return None, succeeded
        acks.append(ack)
        succeeded[settlement.subscription] = settlement.wall
    return acks, succeeded
