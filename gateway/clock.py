"""Injected time.

Every component that schedules, expires or times out reads time through a `Clock`, so a test of
a 600 s backoff or 24 h retention runs in milliseconds with `ManualClock`.

Scheduling (due times, retention, dedup windows) uses `steady_now()`: wall time at start-up plus
monotonic time since, so a wall-clock step while the gateway runs neither mass-expires events nor
stalls retries (RELIABILITY R16). A step taken while the gateway is stopped is seen at restart.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (for display: RFC 3339 timestamps)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes backwards."""
        ...

    def sleep(self, seconds: float) -> Awaitable[None]:
        """Sleep for `seconds` of monotonic time, counted from this call."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(max(0.0, seconds))


class SteadyTime:
    """Epoch-like seconds that advance with monotonic time, anchored once to the wall clock."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._offset = clock.now() - clock.monotonic()

    def __call__(self) -> float:
        return self._offset + self._clock.monotonic()


class ManualClock:
    """A clock that moves only when a test says so; sleepers wake as it passes their deadline."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = start
        self._mono = 1_000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def sleep(self, seconds: float) -> Awaitable[None]:
        # The deadline is fixed now, at the call, so an `advance` before the first await counts.
        if seconds <= 0:
            return asyncio.sleep(0)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._order), future))
        return future

    def advance(self, seconds: float) -> None:
        """Move wall and monotonic time forward together, waking every sleeper now due."""
        self._wall += seconds
        self._mono += seconds
        while self._sleepers and self._sleepers[0][0] <= self._mono:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def jump(self, seconds: float) -> None:
        """Step only the wall clock (an NTP correction); monotonic time is unaffected."""
        self._wall += seconds
