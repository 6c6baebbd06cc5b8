"""The retention sweep: on a clock schedule, deletes events whose topic retention has ended and
dead-letters (or drops and counts) their deliveries still pending, with reason `expired`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from gateway.clock import Clock
from gateway.store.lmdb.store import LmdbStore

log = logging.getLogger("gateway.retention")
SWEEP_INTERVAL = 60.0


async def run_retention(
    store: LmdbStore,
    now: Callable[[], float],
    clock: Clock,
    wake: Callable[[Iterable[str]], None] = lambda names: None,
    interval: float = SWEEP_INTERVAL,
) -> None:
    while True:
        await clock.sleep(interval)
        try:
            result = await store.sweep(now(), clock.now())
        except Exception:
            log.exception("retention sweep failed; will retry")
            continue
        wake(result.woken)
        if result.expired_events:
            log.info("retention removed %d events", result.expired_events)
