"""Push deadlines: every push in flight bounded by one shared loop timer.

`asyncio.timeout` around each push schedules and cancels a timer handle and builds a context
object per push; measured in the gateway that was 10-20 us of the 130-150 us a push costs the
event loop (bench/notes/, session 5). Here a push costs a dict insert and a pop: the
pushes in flight are kept with their deadlines, and one timer, set for the earliest of them,
cancels those that have overrun and sets itself for the next.

A task is in `_running` exactly while it is suspended inside `run`'s await, so the
cancellation the timer sends is always delivered there, where it becomes `TimeoutError`. A
cancellation from elsewhere (a lane stopping) at the same moment stays a cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


class Deadlines:
    """Runs awaitables in the current task, each bounded in seconds of loop time."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: dict[asyncio.Task[object], float] = {}  # task -> deadline (loop time)
        self._overrun: set[asyncio.Task[object]] = set()  # cancelled by the timer
        self._timer: asyncio.TimerHandle | None = None

    async def run(self, awaitable: Awaitable[T], seconds: float) -> T:
        """`await awaitable`, or raise TimeoutError once `seconds` have passed. Not nested:
        one task runs one awaitable at a time here."""
        task = asyncio.current_task()
        assert task is not None, "Deadlines.run() inside a task"
        if task in self._running:
            raise RuntimeError("Deadlines.run() does not nest within one task")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop: nothing of the last one carries over
            self._loop, self._running, self._overrun, self._timer = loop, {}, set(), None
        deadline = loop.time() + seconds
        self._running[task] = deadline
        if self._timer is None or deadline < self._timer.when():
            self._set_timer(loop, deadline)
        cancelling = task.cancelling()  # cancellations already pending are not ours
        try:
            return await awaitable
        except asyncio.CancelledError as error:
            # Take back the timer's cancellation; a TimeoutError if it was the only one.
            if self._was_overrun(task) and task.uncancel() <= cancelling:
                raise TimeoutError from error
            raise
        finally:
            del self._running[task]
            if self._was_overrun(task):  # overran, but the awaitable swallowed the cancel
                task.uncancel()

    def _was_overrun(self, task: asyncio.Task[object]) -> bool:
        """Whether the timer cancelled `task` (and forget it, so it is taken back once)."""
        if task not in self._overrun:
            return False
        self._overrun.discard(task)
        return True

    def _set_timer(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(when, self._expire, loop)

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        now = loop.time()
        for task, deadline in self._running.items():
            if deadline <= now and task not in self._overrun:
                self._overrun.add(task)
                task.cancel()
        waiting = [deadline for deadline in self._running.values() if deadline > now]
        if waiting:
            self._set_timer(loop, min(waiting))
