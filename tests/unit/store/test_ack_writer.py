"""The ack writer process (gateway.store.ack_writer): acks it commits, and what happens when it
cannot commit, is killed, or outlives a map the gateway grew. Real LMDB, real child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import orjson
import pytest

from gateway.config.settings import TopicSettings
from gateway.events import IncomingEvent
from gateway.policy.outcomes import Ack
from gateway.store.lmdb.ack_writer import FRAME, AckWriterUnavailable
from gateway.store.lmdb.store import LmdbStore
from gateway.store.records import Settlement
from tests.conftest import (
    LOOPBACK_EGRESS,
    FixedRouting,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.gateway_process import GatewayProcess, running
from tests.support.subscriber import run_subscriber

NOW = 1_000_000.0


async def wait_for(predicate, seconds: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("condition not reached")


@contextlib.asynccontextmanager
async def pending_store(
    tmp_path: Path, events: int, **store_options: Any
) -> AsyncIterator[LmdbStore]:
    """A store whose topic `orders` fans out to subscription `s1`, with `events` pending."""
    store = LmdbStore(tmp_path / "data", **store_options)
    try:
        store.routing = FixedRouting(("s1", 0.0))  # no delay
        await store.put_topic(TopicSettings("orders", 86_400.0))
        await publish(store, range(events))
        yield store
    finally:
        store.close()


async def publish(store: LmdbStore, numbers: range) -> None:
    events = [
        IncomingEvent("/shop", f"e{n}", {}, orjson.dumps({"id": f"e{n}", "pad": "x" * 500}))
        for n in numbers
    ]
    await store.publish("orders", events, NOW)


def acks_for_due(store: LmdbStore, limit: int) -> list[Settlement]:
    return [
        Settlement("s1", delivery.seq, Ack(), 1, None, due=delivery.due)
        for delivery in store.deliveries.due("s1", NOW + 1, limit, ())
    ]


async def test_plain_acks_are_committed_by_the_ack_writer_process(tmp_path: Path) -> None:
    async with pending_store(tmp_path, 50) as store:
        thread_commits = store.commits
        for _ in range(5):
            assert await store.settle(acks_for_due(store, 10), NOW) == set()
        writer = store.ack_writer
        assert writer.pid is not None and writer.pid != os.getpid() and running(writer.pid)
        assert writer.operations == 5 and 1 <= writer.commits <= 5
        assert store.commits == thread_commits + writer.commits  # counted in the store's figure
        counters = store.deliveries.counters("s1")
        assert counters["published"] == counters["acked"] == 50
        assert store.deliveries.pending("s1") == 0
    assert not running(writer.pid)  # closing the store stops it


async def test_an_ack_recorded_twice_is_counted_once(tmp_path: Path) -> None:
    """The fallback may re-record acks the child did commit: nothing changes the second time."""
    async with pending_store(tmp_path, 3) as store:
        acks = acks_for_due(store, 3)
        await store.settle(acks, NOW)
        await store.settle(acks, NOW)  # through the child again
        await store.write(lambda txn: store.deliveries.settle_all(txn, acks, NOW))  # the thread
        assert store.deliveries.counters("s1")["acked"] == 3


async def test_an_old_ack_leaves_a_delivery_created_again_under_its_key(tmp_path: Path) -> None:
    """A redriven dead letter can come back under the same (subscription, seq) with another
    due time; an ack of the earlier delivery applied again (the fallback) must not settle it."""
    async with pending_store(tmp_path, 1) as store:
        [ack] = acks_for_due(store, 1)
        await store.settle([ack], NOW)
        await store.write(
            lambda txn: store.deliveries.enqueue(
                txn, "s1", "orders", ack.seq, NOW + 5, NOW + 100, counted=False
            )
        )
        await store.settle([ack], NOW)
        assert store.deliveries.pending("s1") == 1
        assert store.deliveries.counters("s1")["acked"] == 1


async def test_a_batch_the_child_cannot_commit_is_refused_and_the_child_goes_on(
    tmp_path: Path,
) -> None:
    async with pending_store(tmp_path, 2) as store:
        writer = store.ack_writer
        with pytest.raises(AckWriterUnavailable):
            await writer.record([("s1", "not-a-seq", NOW)], {})  # type: ignore[list-item]
        assert writer.commits == 0
        await store.settle(acks_for_due(store, 2), NOW)
        assert writer.commits == 1
        assert store.deliveries.counters("s1")["acked"] == 2


async def test_acks_go_through_the_writer_thread_once_the_child_is_killed(
    tmp_path: Path,
) -> None:
    async with pending_store(tmp_path, 20) as store:
        await store.settle(acks_for_due(store, 10), NOW)
        writer = store.ack_writer
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        await wait_for(lambda: not running(writer.pid))
        commits = writer.commits
        await store.settle(acks_for_due(store, 10), NOW)
        assert writer.commits == commits  # not through the child
        counters = store.deliveries.counters("s1")
        assert counters["acked"] == counters["published"] == 20


async def test_a_child_that_stops_answering_is_killed_and_acks_fall_back(
    tmp_path: Path,
) -> None:
    async with pending_store(tmp_path, 20) as store:
        writer = store.ack_writer
        await store.settle(acks_for_due(store, 10), NOW)
        assert writer.pid is not None
        writer.reply_timeout = 0.2
        os.kill(writer.pid, signal.SIGSTOP)  # alive, never answering
        await store.settle(acks_for_due(store, 10), NOW)  # falls back after 0.2 s
        await wait_for(lambda: not running(writer.pid))
        counters = store.deliveries.counters("s1")
        assert counters["acked"] == counters["published"] == 20


async def test_acks_are_recorded_when_the_child_cannot_start(tmp_path: Path) -> None:
    async with pending_store(tmp_path, 5) as store:
        store.ack_writer._command = [str(tmp_path / "no-such-python")]  # Popen fails
        await store.settle(acks_for_due(store, 5), NOW)
        assert store.ack_writer.pid is None and store.ack_writer.commits == 0
        assert store.deliveries.counters("s1")["acked"] == 5


async def test_the_child_follows_the_map_the_gateway_grows(tmp_path: Path) -> None:
    """The gateway grows the map while the child runs (LMDB: MDB_MAP_RESIZED in the child)."""
    async with pending_store(tmp_path, 10, map_size=256 * 1024) as store:
        await store.settle(acks_for_due(store, 5), NOW)
        size = store.map_size()
        for start in range(10, 2000, 100):  # about 1 MiB more: the map grows
            await publish(store, range(start, start + 100))
        assert store.map_size() > size
        writer = store.ack_writer
        commits = writer.commits
        await store.settle(acks_for_due(store, 1000), NOW)
        assert writer.commits == commits + 1  # the child committed them, after the resize
        assert store.deliveries.counters("s1")["acked"] == 1005


async def test_a_store_opened_with_a_smaller_map_maps_what_the_file_records(
    tmp_path: Path,
) -> None:
    """The ack writer maps the size the file records; the gateway must map at least as much,
    or the child's commits could reach past the gateway's map."""
    async with pending_store(tmp_path, 10, map_size=4 * 1024**2):
        pass
    store = LmdbStore(tmp_path / "data", map_size=1024**2)
    try:
        assert store.map_size() >= 4 * 1024**2
    finally:
        store.close()


async def test_the_store_closes_its_ack_writer_from_a_worker_thread(tmp_path: Path) -> None:
    """The app closes the store with asyncio.to_thread; with asyncio's debug checks on, a
    loop object touched from that thread would raise."""
    asyncio.get_running_loop().set_debug(True)
    store = LmdbStore(tmp_path / "data")
    store.routing = FixedRouting(("s1", 0.0))
    await store.put_topic(TopicSettings("orders", 86_400.0))
    await publish(store, range(3))
    await store.settle(acks_for_due(store, 3), NOW)
    pid = store.ack_writer.pid
    assert pid is not None
    await asyncio.to_thread(store.close)
    await wait_for(lambda: not running(pid))


async def test_a_gateway_pushing_acks_through_the_child(tmp_path: Path) -> None:
    """End to end: every push acked once, its ack committed by the child, counts reconciled."""
    async with run_subscriber() as sub:
        spec = subscription("s1", sub.url, maxConcurrency=16)
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            batch = [
                {"specversion": "1.0", "id": f"e{n}", "source": "/shop", "type": "t"}
                for n in range(200)
            ]
            writer = gw.store.ack_writer
            thread_operations = gw.store.committed_operations - writer.operations
            response = await gw.publish_batch("orders", batch)
            assert response.status_code == 202
            await settle(gw)
            thread_operations = (
                gw.store.committed_operations - writer.operations - (thread_operations)
            )
            assert writer.operations > 0
            assert thread_operations <= 2  # the publish; every ack went through the child
            assert status(gw, "s1") == {
                "published": 200,
                "acked": 200,
                "deadlettered": 0,
                "dropped": 0,
                "pending": 0,
            }
            assert sorted(r.event_id for r in sub.received) == sorted(e["id"] for e in batch)
        assert writer.pid is not None and not running(writer.pid)


def start_child(store: LmdbStore) -> tuple[socket.socket, subprocess.Popen[bytes]]:
    """The ack writer child, started as the gateway starts it, on a socket pair of ours."""
    ours, theirs = socket.socketpair()
    with theirs:
        child = subprocess.Popen(
            [*store.ack_writer._command, str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            stderr=subprocess.PIPE,
        )
    return ours, child


def frame(acks: list[Any]) -> bytes:
    data = msgspec.msgpack.encode(acks)
    return FRAME.pack(len(data)) + data


async def test_the_child_exits_quietly_when_the_gateway_goes_away_with_replies_unread(
    tmp_path: Path,
) -> None:
    """A gateway that dies leaves the child's replies unread: the child's next write is a
    broken pipe (or its read a reset). It exits 0 without a traceback, as at end of input."""
    async with pending_store(tmp_path, 2) as store:
        ours, child = start_child(store)
        with ours:
            ours.sendall(frame([[], {}]))
            ours.recv(1)  # one reply has arrived: the child is serving
            ours.sendall(frame([[], {}]))
        # Closed with the rest of a reply unread; the child may still be writing more.
        _, stderr = await asyncio.to_thread(child.communicate, timeout=10)
        assert child.returncode == 0
        assert b"Traceback" not in stderr and len(stderr.splitlines()) <= 1


async def test_a_killed_gateway_leaves_no_traceback_from_its_ack_writer(tmp_path: Path) -> None:
    """kill -9 of a real gateway while its ack writer has acks to answer: the child exits,
    and what it writes to the gateway's log (its stderr) holds no traceback."""
    async with run_subscriber() as sub:
        gateway = GatewayProcess(
            tmp_path,
            {
                "egress": LOOPBACK_EGRESS,
                "topics": [{"name": "orders"}],
                "subscriptions": [subscription("s1", sub.url, maxConcurrency=32)],
            },
        )
        await gateway.start()
        try:
            batch = [
                {"specversion": "1.0", "id": f"e{n}", "source": "/shop", "type": "t"}
                for n in range(3000)
            ]
            async with httpx.AsyncClient(base_url=gateway.url) as client:
                response = await client.post(
                    "/topics/orders/events",
                    headers={"content-type": "application/cloudevents-batch+json"},
                    content=orjson.dumps(batch),
                )
                assert response.status_code == 202
            await wait_for(lambda: len(sub.received) >= 300 and bool(gateway.children()))
            [child] = gateway.children()
            # Frozen while the gateway goes on pushing, the child has acks to commit and answer
            # when the gateway is killed: its answer then meets a closed socket.
            os.kill(child, signal.SIGSTOP)
            await asyncio.sleep(0.2)  # the gateway's next acks reach the frozen child
            await asyncio.to_thread(gateway.kill)
            os.kill(child, signal.SIGCONT)
            await wait_for(lambda: not running(child), seconds=10)
        finally:
            await asyncio.to_thread(gateway.stop)
    log = gateway.log_path.read_text()
    assert "Traceback" not in log and "BrokenPipeError" not in log, log[-2000:]
