"""Group commit's batching (gateway.store.committer): how the writer cuts publishes arriving
in waves into commits. The transaction here is a list that records which operations ran in
it; durability and rollback on real LMDB are tested in test_store.

The writer waits up to 0.5 s (the arrival gap set here) for the rest of a wave, and the
tests pause 5 ms or 0.1 s between groups of publishes: wide margins on a shared machine."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gateway.store.lmdb.committer import Committer, Waves

Batches = list[list[str]]
GAP = 0.5


@pytest.fixture
async def committer() -> AsyncIterator[tuple[Committer, Batches]]:
    batches: Batches = []
    writer = Committer(
        begin=list,
        commit=lambda txn: batches.append(list(txn)),
        before_growth=lambda: None,
        on_map_full=lambda: False,
        translate=lambda error: error,
        linger=5.0,
        arrival_gap=GAP,
    )
    writer.start()
    try:
        yield writer, batches
    finally:
        writer.stop()


def publish(writer: Committer, name: str, run: Callable[[list[str]], None] | None = None) -> Any:
    writer.announce()
    operation = run or (lambda txn: txn.append(name))
    return asyncio.ensure_future(writer.submit(operation, announced=True))


async def queued(writer: Committer, names: list[str]) -> list[asyncio.Future[Any]]:
    futures = [publish(writer, name) for name in names]
    await asyncio.sleep(0)  # each runs to its submit
    return futures


def names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n}" for n in range(count)]


async def first_wave(writer: Committer, size: int) -> None:
    """`size` publishes queued while the writer is held: one commit of `size`, the wave."""
    entered, release = threading.Event(), threading.Event()

    def hold(txn: list[str]) -> None:
        entered.set()
        release.wait(5)

    held = asyncio.ensure_future(writer.submit(hold))
    assert await asyncio.to_thread(entered.wait, 5)
    wave = await queued(writer, names("w", size))
    release.set()
    await asyncio.gather(held, *wave)


def sizes(batches: Batches) -> list[int]:
    return [len(batch) for batch in batches]


async def test_a_wave_split_by_a_pause_is_joined_up_again(
    committer: tuple[Committer, Batches],
) -> None:
    """A wave of 10; then 6 alone (they wait for stragglers, none come); then 6 and, after a
    pause, 4 more: one commit of 10, as the recent waves were, not 6 and then 4 (the last
    commit alone said 6)."""
    writer, batches = committer
    await first_wave(writer, 10)
    await asyncio.gather(*await queued(writer, names("b", 6)))
    split = await queued(writer, names("c", 6))
    await asyncio.sleep(0.005)
    split += await queued(writer, names("d", 4))
    await asyncio.gather(*split)
    assert sizes(batches)[-3:] == [10, 6, 10]


async def test_a_wave_as_large_as_the_recent_ones_is_committed_without_waiting(
    committer: tuple[Committer, Batches],
) -> None:
    """Once a batch holds as many publishes as the recent waves, the writer commits it at
    once: a publish 0.1 s later (inside the arrival gap it would otherwise wait out) goes
    into the next commit."""
    writer, batches = committer
    await first_wave(writer, 8)
    again = await queued(writer, names("b", 8))
    await asyncio.sleep(0.1)
    again += await queued(writer, ["late"])
    await asyncio.gather(*again)
    assert sizes(batches)[-3:] == [8, 8, 1]


async def test_a_lone_publish_that_waited_in_vain_ends_the_wave(
    committer: tuple[Committer, Batches],
) -> None:
    """After a wave of 8, a lone publish waits for the rest (none comes); the next lone
    publish does not wait: a publish 0.1 s after it goes into a commit of its own."""
    writer, batches = committer
    await first_wave(writer, 8)
    await asyncio.gather(*await queued(writer, ["alone"]))
    after = await queued(writer, ["next"])
    await asyncio.sleep(0.1)
    after += await queued(writer, ["later"])
    await asyncio.gather(*after)
    assert sizes(batches)[-4:] == [8, 1, 1, 1]


def test_waves_are_the_largest_recent_commit_until_forgotten() -> None:
    waves = Waves(remembered=3, probe_every=100)
    assert waves.size == 0
    for publishes in (8, 5, 6):
        waves.committed(publishes)
    assert (waves.size, waves.whole_at()) == (8, 8)
    waves.committed(4)  # the 8 is now older than the last 3
    assert (waves.size, waves.whole_at()) == (6, 6)
    waves.forget()
    assert waves.size == 0


def test_every_few_waves_one_waits_for_stragglers() -> None:
    waves = Waves(probe_every=4)
    waves.committed(8)
    assert [waves.whole_at() for _ in range(8)] == [8, 8, 8, None, 8, 8, 8, None]


async def test_a_wave_that_grew_is_found_by_a_wave_that_waits_for_stragglers(
    committer: tuple[Committer, Batches],
) -> None:
    """Publishers doubled from 8 to 16 and arrive as two groups a pause apart: waves are cut
    at 8 until the one that waits for stragglers (the 7th gathered) takes all 16; the waves
    after it are cut at 16."""
    writer, batches = committer
    await first_wave(writer, 8)  # the 2nd wave gathered (the writer was held in the 1st)
    for wave in range(3, 11):
        grown = await queued(writer, names(f"{wave}a", 8))
        await asyncio.sleep(0.005)
        grown += await queued(writer, names(f"{wave}b", 8))
        await asyncio.gather(*grown)
    assert sizes(batches)[2:] == [8, 8, 8, 8, 16, 16, 16, 16, 16, 16]
