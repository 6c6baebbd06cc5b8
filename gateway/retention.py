"""The retention sweep: deletes events whose topic retention has ended, on a clock schedule."""

from __future__ import annotations

import logging
from collections.abc import Callable

from gateway.clock import Clock
from gateway.store.lmdb import LmdbStore

log = logging.getLogger("gateway.retention")
SWEEP_INTERVAL = 60.0


async def run_retention(
    store: LmdbStore, now: Callable[[], float], clock: Clock, interval: float = SWEEP_INTERVAL
) -> None:
    while True:
        await clock.sleep(interval)
        try:
            result = await store.sweep(now())
        except Exception:
            log.exception("retention sweep failed; will retry")
            continue
        if result.expired_events:
            log.info("retention removed %d events", result.expired_events)
