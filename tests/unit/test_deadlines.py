"""One shared timer bounds every push in flight (gateway.deadlines): each overrun becomes a
TimeoutError in its own task, on time, and nothing else is cancelled or left cancelled."""

from __future__ import annotations

import asyncio

import pytest

from gateway.deadlines import Deadlines

SHORT = 0.05  # seconds of loop time
LONG = 5.0


async def answer_after(seconds: float, value: str = "answer") -> str:
    await asyncio.sleep(seconds)
    return value


async def test_an_awaitable_that_finishes_in_time_returns_its_result() -> None:
    deadlines = Deadlines()
    assert await deadlines.run(answer_after(0), LONG) == "answer"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_an_overrun_raises_timeout_error_at_its_deadline() -> None:
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.run(answer_after(LONG), SHORT)
    assert SHORT <= loop.time() - started < 1.0
    # The task is whole again: it is not cancelling, and its next await is not interrupted.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert await answer_after(SHORT, "after") == "after"


async def test_a_shorter_deadline_started_later_still_fires_first() -> None:
    """The timer is set for the earliest deadline in flight, whatever the order of starts."""
    deadlines = Deadlines()
    loop = asyncio.get_running_loop()
    slow = asyncio.create_task(deadlines.run(answer_after(LONG), LONG))
    await asyncio.sleep(0)  # the long one is in flight and owns the timer
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.run(answer_after(LONG), SHORT)
    assert loop.time() - started < 1.0
    assert not slow.done(), "only the overrun push is cancelled"
    slow.cancel()
    with pytest.raises(asyncio.CancelledError):
        await slow


async def test_many_in_flight_only_the_overruns_time_out() -> None:
    deadlines = Deadlines()
    quick = [deadlines.run(answer_after(0.01, f"q{n}"), LONG) for n in range(20)]
    stuck = [deadlines.run(answer_after(LONG), SHORT) for _ in range(20)]
    results = await asyncio.gather(*quick, *stuck, return_exceptions=True)
    assert results[:20] == [f"q{n}" for n in range(20)]
    assert all(isinstance(result, TimeoutError) for result in results[20:])


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    deadlines = Deadlines()
    task = asyncio.create_task(deadlines.run(answer_after(LONG), LONG))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancellation_from_outside_at_the_deadline_is_not_swallowed() -> None:
    """The lane stops just as the push overruns: the task must still end cancelled."""
    deadlines = Deadlines()
    release = asyncio.Event()

    async def stuck() -> str:
        await release.wait()
        return "late"

    async def push() -> str:
        return await deadlines.run(stuck(), 0)

    task = asyncio.create_task(push())
    await asyncio.sleep(0)  # the push starts; its deadline is now, so the timer is due
    await asyncio.sleep(0)  # next turn: this step and the timer both run, the push does not
    task.cancel()  # the lane stops in the turn the push overruns
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_an_awaitable_that_swallows_the_cancellation_leaves_the_task_whole() -> None:
    deadlines = Deadlines()

    async def stubborn() -> str:
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            return "swallowed"
        return "slept"

    assert await deadlines.run(stubborn(), SHORT) == "swallowed"
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
    assert await answer_after(SHORT, "after") == "after"


async def test_a_task_already_cancelling_still_gets_its_timeout() -> None:
    """A task that swallowed an earlier cancellation (its count stays 1) and then overruns a
    push gets TimeoutError, as with asyncio.timeout, not a CancelledError."""
    deadlines = Deadlines()

    async def worker() -> str:
        try:
            await asyncio.sleep(LONG)
        except asyncio.CancelledError:
            pass  # swallowed, not uncancelled
        try:
            await deadlines.run(answer_after(LONG), SHORT)
        except TimeoutError:
            return "timeout"
        return "answer"

    task = asyncio.create_task(worker())
    await asyncio.sleep(0)
    task.cancel()
    assert await task == "timeout"


def test_one_instance_serves_one_event_loop_after_another() -> None:
    """A sink outlives an event loop in tests and tools: a timer left armed on the last
    loop must not keep the next loop's pushes from timing out."""
    deadlines = Deadlines()

    async def quick() -> str:
        return await deadlines.run(answer_after(0), SHORT)  # leaves the timer armed

    async def stuck() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(deadlines.run(answer_after(LONG), SHORT), 1.0)
        return loop.time() - started

    assert asyncio.run(quick()) == "answer"
    assert asyncio.run(stuck()) < 1.0  # the deadline fired, not wait_for's guard


async def test_nesting_in_one_task_is_refused() -> None:
    deadlines = Deadlines()
    inner = answer_after(0)
    with pytest.raises(RuntimeError, match="does not nest"):
        await deadlines.run(deadlines.run(inner, LONG), LONG)
    inner.close()  # refused before it was awaited
    assert await deadlines.run(answer_after(0), LONG) == "answer"  # nothing was left behind
