"""A lane's outcomes, recorded a batch at a time (group commit, one level up).

Every push outcome must be committed before its slot is free again (RELIABILITY R2). Submitting
each one as its own store operation costs the writer thread a queue item, a future and a counter
update per push. Instead, a lane's outcomes gather here: while one batch is being committed, the
outcomes that arrive wait and go together in the next batch, as one store operation. A lone
outcome still goes at once (its batch starts on the next turn of the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from gateway.store.base import Store
from gateway.store.lmdb.deliveries import Settlement


class Recorder:
    def __init__(
        self, store: Store, now: Callable[[], float], wake: Callable[[set[str]], None]
    ) -> None:
        self._store = store
        self._now = now
        self._wake = wake  # subscriptions that got new deliveries (dead letters) are woken
        self._waiting: list[tuple[Settlement, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def record(self, settlement: Settlement) -> None:
        """Return once `settlement` is committed; raise if its batch failed to commit."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((settlement, future))
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush())
        await future

    def cancel(self) -> None:
        if self._flushing is not None:
            self._flushing.cancel()

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, []
                await self._commit(batch)
        finally:
            self._flushing = None
            for _, future in self._waiting:  # only left when cancelled (the lane stopped)
                future.cancel()

    async def _commit(self, batch: list[tuple[Settlement, asyncio.Future[None]]]) -> None:
        try:
            woken = await self._store.record([settlement for settlement, _ in batch], self._now())
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as error:  # the commit failed: every outcome in it stays pending
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        if woken:
            self._wake(woken)
