"""Group commit: one writer thread gathers concurrent write operations into one transaction.

Each caller awaits its own operation; the writer drains whatever is queued, runs every
operation in one LMDB write transaction, commits once (one fsync for the whole batch), and only
then resolves the callers' futures. The event loop never blocks on fsync, and a 2xx is only ever
sent after the commit that holds its event (RELIABILITY R3).

A request that will submit an operation soon can `announce()` itself first (the receiver does,
before reading the body). While announced operations are outstanding, the writer lingers up to
`linger` seconds for them before committing, so concurrent publishers share one fsync even when
fsync is fast; a lone publisher never waits.

Operations must raise only before their first write (check, then write). If one raises anyway,
the batch is aborted and re-run without it, so no half-applied operation is ever committed.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import lmdb

from gateway.problems import GatewayError

T = TypeVar("T")
Transaction = Any  # lmdb.Transaction (the binding ships no type hints)
log = logging.getLogger("gateway.store")


@dataclass(slots=True)
class Operation(Generic[T]):
    run: Callable[[Transaction], T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    announced: bool = False
    grows: bool = False  # adds data (a publish); refused first when the map is at its maximum
    result: Any = None
    error: BaseException | None = None
    # Undoes what `run` did outside the transaction (a routing swap) if it does not commit;
    # called in the writer thread, before any later transaction begins.
    on_abort: Callable[[], None] | None = None


@dataclass(slots=True)
class CommitStats:
    commits: int = 0
    operations: int = 0


_STOP = object()
FRESH_ANNOUNCEMENT = 0.01
POLL = 0.0005  # how often the writer looks again while announced publishes are outstanding
# Under load, publishes that keep arriving less than this apart belong to the same wave: the
# writer waits for the next one (up to `linger`) instead of committing part of the wave.
ARRIVAL_GAP = 0.0005
WAVES_REMEMBERED = 8
PROBE_EVERY = 7  # odd: a wave split in two alternates halves, and either may be the one that grew


class Committer:
    def __init__(
        self,
        begin: Callable[[], Transaction],
        commit: Callable[[Transaction], None],
        before_growth: Callable[[], None],
        on_map_full: Callable[[], bool],
        translate: Callable[[BaseException], BaseException],
        max_batch: int = 2048,
        # 8 ms was tried: no better for single publishes once the writer waits for the rest
        # of a wave, and slower for batches (bench/notes/, session 3).
        linger: float = 0.004,
        arrival_gap: float = ARRIVAL_GAP,
        observe: Callable[[int, float], None] = lambda operations, seconds: None,
    ) -> None:
        self._begin = begin
        self._commit = commit
        self._before_growth = before_growth
        self._on_map_full = on_map_full
        self._translate = translate
        self._max_batch = max_batch
        self._linger = linger
        self._arrival_gap = arrival_gap
        self._observe = observe
        self._announced = 0
        self._last_announced = 0.0
        self._announced_lock = threading.Lock()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waves = Waves()
        self._thread = threading.Thread(target=self._run, name="lmdb-writer", daemon=True)
        self.stats = CommitStats()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Finish every queued operation, then stop the writer thread."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def announce(self) -> None:
        """A write is coming from this caller: let the writer wait for it (see module doc)."""
        with self._announced_lock:
            self._announced += 1
            self._last_announced = time.monotonic()

    def withdraw(self) -> None:
        """The announced write will not come after all (the request failed first)."""
        with self._announced_lock:
            self._announced -= 1

    async def submit(
        self,
        run: Callable[[Transaction], T],
        announced: bool = False,
        grows: bool = False,
        on_abort: Callable[[], None] | None = None,
    ) -> T:
        """Queue `run` for the next commit; `announced` if `announce()` was called for it;
        `grows` if it adds data (refused first when the store is full); `on_abort` undoes
        `run`'s effects outside the transaction when the transaction it ran in is aborted."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        operation = Operation(
            run=run, loop=loop, future=future, announced=announced, grows=grows, on_abort=on_abort
        )
        self._queue.put(operation)
        return await future

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch, stopping = self._gather()
            if batch:
                self._execute(batch)
                self._resolve(batch)

    def _expecting(self) -> bool:
        """Announced writes are outstanding, and recently: a publisher still uploading a big
        or slow body announced long ago and is not worth holding every commit for."""
        fresh = time.monotonic() - self._last_announced < FRESH_ANNOUNCEMENT
        return self._announced > 0 and fresh

    def _take(self, item: Any) -> Any:
        if isinstance(item, Operation) and item.announced:
            self.withdraw()
        return item

    def _gather(self) -> tuple[list[Operation[Any]], bool]:
        first = self._take(self._queue.get())
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self._linger
        # A server that reads a whole request before calling the app (uvicorn) submits a
        # publish right after announcing it, so announcements alone rarely show a wave coming.
        whole_at = self._waves.whole_at()
        in_a_wave = self._waves.size > 1 and first.announced
        publishes = 1 if first.announced else 0
        while len(batch) < self._max_batch:
            try:
                item = self._take(self._queue.get_nowait())
            except queue.Empty:
                # A wave as large as the recent ones is whole: waiting for a straggler would
                # only hold every publisher in it (what is already queued still joins).
                wave_open = in_a_wave and (whole_at is None or publishes < whole_at)
                waiting = self._worth_waiting(deadline - time.monotonic(), wave_open)
                if waiting is None:
                    break
                wait, announced_coming = waiting
                try:
                    item = self._take(self._queue.get(timeout=wait))
                except queue.Empty:
                    if announced_coming:
                        continue  # look again until the linger ends
                    if publishes <= 1:
                        self._waves.forget()  # a lone publish waited in vain: the load is gone
                    break  # the wave is over
            if item is _STOP:
                return batch, True
            if item.announced:
                publishes += 1
            else:
                in_a_wave = False  # a push outcome came, not the next publish: stop waiting
            batch.append(item)
        self._waves.committed(publishes)
        return batch, False

    def _worth_waiting(self, remaining: float, wave_open: bool) -> tuple[float, bool] | None:
        """How long to wait for another operation before committing, and whether announced
        publishes are outstanding (then the writer keeps looking until the linger ends);
        None: commit now."""
        if remaining <= 0:
            return None
        if self._expecting():
            return min(remaining, POLL), True
        if wave_open:
            return min(remaining, self._arrival_gap), False
        return None

    def _execute(self, batch: list[Operation[Any]]) -> None:
        pending = list(batch)
        grown = False
        while pending:
            try:
                if any(operation.grows for operation in pending):
                    # Only a batch that adds data checks the map's room first (each LMDB call
                    # hands the GIL over: 0.7 ms of the writer's time per commit of pushes'
                    # outcomes, when it ran for every batch). Other batches grow on demand.
                    self._before_growth()
                self._apply(pending)
                return
            except lmdb.MapFullError as error:
                if not grown and self._on_map_full():
                    grown = True
                    continue
                pending = self._without_growth(pending, error)
                if not pending:
                    return
            except _OperationFailed as failed:
                # An operation raised: drop it and re-run the rest, so nothing half-applied lands.
                pending.remove(failed.operation)
            except Exception as error:  # commit failed: none of the batch is durable
                log.warning("commit failed: %s", error.__class__.__name__)
                self._fail(pending, error)
                return

    def _without_growth(
        self, pending: list[Operation[Any]], error: BaseException
    ) -> list[Operation[Any]]:
        """The map is full at its maximum: refuse what adds data (publishes get 507) and keep
        the rest, so acks, retries and purges still commit and free room (RELIABILITY R13).
        If nothing in the batch adds data, none of it can commit: fail it all."""
        growth = [operation for operation in pending if operation.grows]
        rest = [operation for operation in pending if not operation.grows]
        self._fail(growth or pending, error)
        return rest if growth else []

    def _apply(self, pending: list[Operation[Any]]) -> None:
        txn = self._begin()
        ran: list[Operation[Any]] = []
        try:
            for operation in pending:
                try:
                    operation.result = operation.run(txn)
                    ran.append(operation)
                except lmdb.MapFullError:
                    raise
                except Exception as error:
                    if not isinstance(error, GatewayError):  # a bug, not a refusal: show it
                        log.error("write operation failed", exc_info=error)
                    operation.error = error
                    raise _OperationFailed(operation) from error
            started = time.perf_counter()
            self._commit(txn)
        except BaseException:
            txn.abort()
            _undo(ran)  # before the next transaction: no later write sees what did not commit
            raise
        self._observe(len(pending), time.perf_counter() - started)
        self.stats.commits += 1
        self.stats.operations += len(pending)

    def _fail(self, pending: list[Operation[Any]], error: BaseException) -> None:
        for operation in pending:
            operation.error = error

    def _resolve(self, batch: list[Operation[Any]]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[Operation[Any]]] = {}
        for operation in batch:
            by_loop.setdefault(operation.loop, []).append(operation)
        for loop, operations in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle, operations, self._translate)
            except RuntimeError:  # the loop closed while we committed; nobody is waiting
                pass


def _undo(ran: list[Operation[Any]]) -> None:
    for operation in reversed(ran):
        if operation.on_abort is not None:
            operation.on_abort()


class PublishAnnouncement:
    """`LmdbStore.publishing()`: announces a publish on enter; withdraws it on an exit that
    never handed it to a publish (the request failed before reaching the store)."""

    __slots__ = ("_committer", "_pending")

    def __init__(self, committer: Committer) -> None:
        self._committer = committer
        self._pending = False

    def __enter__(self) -> PublishAnnouncement:
        self._committer.announce()
        self._pending = True
        return self

    def hand_over(self) -> bool:
        """The publish takes the announcement over (True if there was one to take)."""
        pending, self._pending = self._pending, False
        return pending

    def __exit__(self, *exc: object) -> None:
        if self._pending:
            self._pending = False
            self._committer.withdraw()


class Waves:
    """How many publishes a wave under load holds, for the writer to know when one is whole:
    the largest of the last few commits, so that a wave a pause split once is joined up again.
    Every few waves one is not cut at that size but waits for stragglers as long as they keep
    coming: that is how a wave that has grown is found (a cut at the old size would keep it
    split in two for good). Forgotten once a lone publish waits in vain: the load is gone."""

    def __init__(self, remembered: int = WAVES_REMEMBERED, probe_every: int = PROBE_EVERY):
        self._sizes: collections.deque[int] = collections.deque([0], maxlen=remembered)
        self._probe_every = probe_every
        self._waves = 0

    @property
    def size(self) -> int:
        return max(self._sizes)

    def whole_at(self) -> int | None:
        """For the wave about to be gathered: the publishes that make it whole, or None for a
        wave that waits for stragglers instead (every `probe_every`th)."""
        self._waves += 1
        return None if self._waves % self._probe_every == 0 else self.size

    def committed(self, publishes: int) -> None:
        self._sizes.append(publishes)

    def forget(self) -> None:
        self._sizes.clear()
        self._sizes.append(0)


class _OperationFailed(Exception):
    def __init__(self, operation: Operation[Any]) -> None:
        super().__init__("operation failed")
        self.operation = operation


def _settle(
    operations: list[Operation[Any]], translate: Callable[[BaseException], BaseException]
) -> None:
    for operation in operations:
        if operation.future.done():
            continue
        if operation.error is not None:
            operation.future.set_exception(translate(operation.error))
        else:
            operation.future.set_result(operation.result)
