"""Group commit's batching (gateway.store.committer): how the writer cuts publishes arriving
in waves into commits. The transaction here is a list that records which operations ran in
it; durability and rollback on real LMDB are tested in test_store."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.store.committer import Committer

Batches = list[list[str]]


@pytest.fixture
async def committer() -> AsyncIterator[tuple[Committer, Batches]]:
    batches: Batches = []
    writer = Committer(
        begin=list,
        commit=lambda txn: batches.append(list(txn)),
        before_growth=lambda: None,
        on_map_full=lambda: False,
        translate=lambda error: error,
        # Wide margins for a shared machine: a straggler is awaited up to 50 ms.
        linger=1.0,
        arrival_gap=0.05,
    )
    writer.start()
    try:
        yield writer, batches
    finally:
        writer.stop()


def publish(writer: Committer, name: str) -> asyncio.Future[Any]:
    writer.announce()
    return asyncio.ensure_future(writer.submit(lambda txn: txn.append(name), announced=True))


async def queued(writer: Committer, names: list[str]) -> list[asyncio.Future[Any]]:
    futures = [publish(writer, name) for name in names]
    await asyncio.sleep(0)  # each runs to its submit
    return futures


async def test_a_wave_split_by_a_pause_is_joined_up_again(
    committer: tuple[Committer, Batches],
) -> None:
    """A wave of 10; then one of 6 alone (it waits for stragglers, none come); then 6 and,
    after a pause shorter than the arrival gap, 4 more: one commit of 10, as the recent waves
    were, not 6 and then 4 (the last wave alone said 6)."""
    writer, batches = committer
    entered, release = threading.Event(), threading.Event()

    def hold(txn: list[str]) -> None:
        entered.set()
        release.wait(5)
        txn.append("hold")

    held = asyncio.ensure_future(writer.submit(hold))
    assert await asyncio.to_thread(entered.wait, 5)
    first = await queued(writer, [f"a{n}" for n in range(10)])
    release.set()
    await asyncio.gather(held, *first)
    await asyncio.gather(*await queued(writer, [f"b{n}" for n in range(6)]))
    split = await queued(writer, [f"c{n}" for n in range(6)])
    await asyncio.sleep(0.005)
    split += await queued(writer, [f"c{n}" for n in range(6, 10)])
    await asyncio.gather(*split)
    assert [len(batch) for batch in batches] == [1, 10, 6, 10]
    assert batches[3] == [f"c{n}" for n in range(10)]


async def test_a_wave_as_large_as_the_recent_ones_is_committed_without_waiting(
    committer: tuple[Committer, Batches],
) -> None:
    """Once a batch holds as many publishes as the recent waves, the writer commits it at
    once: a publish 20 ms later (well inside the 50 ms arrival gap it would otherwise wait
    for) goes into the next commit."""
    writer, batches = committer
    entered, release = threading.Event(), threading.Event()

    def hold(txn: list[str]) -> None:
        entered.set()
        release.wait(5)

    held = asyncio.ensure_future(writer.submit(hold))
    assert await asyncio.to_thread(entered.wait, 5)
    wave = await queued(writer, [f"a{n}" for n in range(8)])
    release.set()
    await asyncio.gather(held, *wave)
    again = await queued(writer, [f"b{n}" for n in range(8)])
    await asyncio.sleep(0.02)
    again += await queued(writer, ["late"])
    await asyncio.gather(*again)
    assert [len(batch) for batch in batches][-3:] == [8, 8, 1]
