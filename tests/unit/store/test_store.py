"""Durability, group commit and dedup (RELIABILITY R3, R4, R13, R14, R15) on real LMDB."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.clock import ManualClock
from gateway.config.settings import Settings
from gateway.store.base import Routing
from gateway.store.lmdb.committer import Transaction
from gateway.store.lmdb.store import ENV_FILE, DataDirInUse, LmdbStore
from tests.conftest import BINARY_HEADERS, assert_problem, make_settings, run_gateway


class FailingCommitStore(LmdbStore):
    """Fails the Nth commit after `arm(n)`, as a failed fsync would: nothing of it lands."""

    fail_at: int | None = None

    def arm(self, n: int) -> None:
        self.fail_at = self.commits + n

    def _commit_transaction(self, txn: Transaction) -> None:
        if self.fail_at is not None and self.commits + 1 == self.fail_at:
            self.fail_at = None
            raise OSError("injected commit failure")
        super()._commit_transaction(txn)


def open_failing(
    settings: Settings, routing: Routing, on_commit: Callable[[int, float], None]
) -> LmdbStore:
    return FailingCommitStore(settings.server.data_dir, routing=routing, on_commit=on_commit)


async def event_ids(store: LmdbStore, topic: str = "orders") -> list[str]:
    page = await store.browse(topic, None, 1000)
    return [orjson.loads(event.payload)["id"] for event in page.events]


@pytest.mark.parametrize("n", range(1, 21))
async def test_failed_nth_commit_never_answers_2xx_and_leaves_nothing_partial(
    tmp_path: Path, n: int
) -> None:
    """R3a: the receiver answers 5xx for the failed commit; after reopen, events are whole."""
    settings = make_settings(tmp_path / "data")
    answered: dict[str, int] = {}
    async with run_gateway(settings, open_store=open_failing) as gw:
        store = gw.store
        assert isinstance(store, FailingCommitStore)
        store.arm(n)
        for index in range(20):
            response = await gw.publish("orders", f"e{index}")
            answered[f"e{index}"] = response.status_code
            if response.status_code != 202:
                assert_problem(response, 503, "store-failure")
    assert sorted(answered.values()).count(503) == 1
    reopened = LmdbStore(settings.server.data_dir)
    try:
        ids = await event_ids(reopened)
        for event in (await reopened.browse("orders", None, 1000)).events:
            assert orjson.loads(event.payload)["type"] == "com.example.order.created"
    finally:
        reopened.close()
    assert ids == [event_id for event_id, status in answered.items() if status == 202]


async def test_group_commit_takes_far_fewer_commits_than_events(settings: Settings) -> None:
    """R3b: 200 concurrent publishes (from another process, as real publishers are)."""
    async with run_gateway(settings) as gw:
        before = gw.store.commits
        load = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.tools.publisher",
            gw.url,
            "orders",
            "200",
            "200",
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await load.communicate()
        commits = gw.store.commits - before
        assert orjson.loads(output)["statuses"] == {"202": 200}
        assert len(await event_ids(gw.store)) == 200
    print(f"\nR3b: 200 concurrent publishes took {commits} commits ({commits / 200:.3f} per event)")
    assert commits < 200 / 4


async def test_each_2xx_comes_after_the_commit_holding_its_event(settings: Settings) -> None:
    """R3b: a read transaction sees only committed data, so the event is there at the 2xx."""
    async with run_gateway(settings) as gw:

        async def publish_and_check(index: int) -> None:
            response = await gw.publish("orders", f"c{index}")
            assert response.status_code == 202
            assert f"c{index}" in await event_ids(gw.store)

        await asyncio.gather(*(publish_and_check(index) for index in range(50)))


def test_production_opens_with_full_durability(tmp_path: Path) -> None:
    """R3c: sync and metasync on by default; `server.fsync: false` is the explicit opt-out."""
    assert make_settings(tmp_path).server.fsync is True
    store = LmdbStore(tmp_path / "a")
    try:
        flags = store.env.flags()
        assert (flags["sync"], flags["metasync"]) == (True, True)
    finally:
        store.close()
    fast = LmdbStore(tmp_path / "b", fsync=False)
    try:
        assert (fast.env.flags()["sync"], fast.env.flags()["metasync"]) == (False, False)
    finally:
        fast.close()


async def test_event_and_dedup_survive_restart(settings: Settings) -> None:
    async with run_gateway(settings) as gw:
        assert (await gw.publish("orders", "r1")).json() == {"accepted": 1, "duplicates": 0}
    async with run_gateway(settings) as gw:
        assert await event_ids(gw.store) == ["r1"]
        assert (await gw.publish("orders", "r1")).json() == {"accepted": 0, "duplicates": 1}
        assert await event_ids(gw.store) == ["r1"]


async def test_concurrent_publishes_of_one_pair_store_one_event(settings: Settings) -> None:
    async with run_gateway(settings) as gw:
        responses = await asyncio.gather(*(gw.publish("orders", "same") for _ in range(50)))
        bodies = [response.json() for response in responses]
        assert all(response.status_code == 202 for response in responses)
        assert sum(body["accepted"] for body in bodies) == 1
        assert sum(body["duplicates"] for body in bodies) == 49
        assert await event_ids(gw.store) == ["same"]


async def test_same_pair_on_another_topic_is_another_event(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", topics=[{"name": "orders"}, {"name": "audit"}])
    async with run_gateway(settings) as gw:
        assert (await gw.publish("orders", "x")).json()["accepted"] == 1
        assert (await gw.publish("audit", "x")).json()["accepted"] == 1


async def test_huge_source_and_id_still_dedup(settings: Settings) -> None:
    """LMDB keys are at most 511 bytes: the dedup key is a hash of the pair."""
    huge = {"ce-source": "/" + "s" * 2048}
    async with run_gateway(settings) as gw:
        first = await gw.publish("orders", "i" * 2048, **huge)
        second = await gw.publish("orders", "i" * 2048, **huge)
        assert (first.status_code, first.json()["accepted"]) == (202, 1)
        assert (second.status_code, second.json()["duplicates"]) == (202, 1)


async def test_pair_is_new_again_after_retention(settings: Settings) -> None:
    """R4: after 24 h + 1 s (injected clock) the pair is accepted as new, as documented."""
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        assert (await gw.publish("orders", "old")).json()["accepted"] == 1
        clock.advance(24 * 3600 - 1)
        assert (await gw.publish("orders", "old")).json()["duplicates"] == 1
        clock.advance(2)
        assert (await gw.publish("orders", "old")).json()["accepted"] == 1


async def test_retention_sweep_deletes_expired_events(settings: Settings) -> None:
    clock = ManualClock()
    async with run_gateway(settings, clock=clock) as gw:
        await gw.publish("orders", "a")
        clock.advance(12 * 3600)
        await gw.publish("orders", "b")
        clock.advance(12 * 3600)  # past a's retention, not b's
        for _ in range(100):  # the sweeper runs once a (simulated) minute
            if await event_ids(gw.store) == ["b"]:
                break
            clock.advance(61)
            await asyncio.sleep(0.01)
        assert await event_ids(gw.store) == ["b"]


def test_second_store_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    """R15: an exclusive lock on the data directory."""
    first = LmdbStore(tmp_path)
    try:
        with pytest.raises(DataDirInUse, match="in use by another gateway"):
            LmdbStore(tmp_path)
    finally:
        first.close()
    LmdbStore(tmp_path).close()  # free again once the first is closed


def _lmdb_process(path: Path, *, read_txn: bool) -> subprocess.Popen[str]:
    script = textwrap.dedent(
        f"""
        import lmdb, time
        env = lmdb.open({str(path)!r}, subdir=False, max_dbs=8, readonly=True)
        txn = env.begin() if {read_txn!r} else None
        print("open", flush=True)
        time.sleep(30)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "open"
    return process


def test_stale_reader_of_a_killed_process_is_reclaimed_at_open(tmp_path: Path) -> None:
    """R14a: kill -9 a process holding a read transaction; open runs reader_check.

    A second process keeps the environment open, as a running tool would; otherwise LMDB
    rebuilds the reader table itself when the first process opens it.
    """
    LmdbStore(tmp_path).close()
    keeper = _lmdb_process(tmp_path / ENV_FILE, read_txn=False)
    try:
        holder = _lmdb_process(tmp_path / ENV_FILE, read_txn=True)
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()
        store = LmdbStore(tmp_path)
        try:
            assert store.reclaimed_readers == 1
            assert str(holder.pid) not in store.env.readers()
        finally:
            store.close()
    finally:
        keeper.kill()
        keeper.wait()
        assert keeper.stdout is not None
        keeper.stdout.close()


async def test_map_grows_before_it_fills(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", server={"mapSize": "1MiB", "maxMapSize": "64MiB"})
    payload = orjson.dumps({"pad": "x" * 8000})
    async with run_gateway(settings) as gw:
        for index in range(400):  # about 3.2 MB of events into a 1 MiB map
            response = await gw.client.post(
                "/topics/orders/events",
                headers={**BINARY_HEADERS, "ce-id": f"g{index}"},
                content=payload,
            )
            assert response.status_code == 202, response.text
        assert gw.store.statistics().capacity_bytes > 1024**2


async def test_writes_that_do_not_count_as_growth_still_get_room_on_demand(
    tmp_path: Path,
) -> None:
    """Only publishes check the map's room before their batch; any other write (outcomes,
    dead letters moving) that fills the map grows it when LMDB says it is full, and commits."""
    store = LmdbStore(tmp_path, map_size=1024**2, max_map_size=64 * 1024**2)
    try:
        for index in range(64):  # 64 x 64 KiB into a 1 MiB map, as non-growth writes

            def put(txn: Transaction, index: int = index) -> None:
                txn.put(b"pad/%d" % index, b"x" * 65536, db=store.db["meta"])

            await store.write(put)
        assert store.map_size() > 1024**2
        assert store.read(lambda txn: txn.get(b"pad/63", db=store.db["meta"])) == b"x" * 65536
    finally:
        store.close()


async def test_full_store_answers_507_and_is_not_ready(tmp_path: Path) -> None:
    """R13 (in-process part): never 2xx for what was not stored; readiness reports it."""
    settings = make_settings(tmp_path / "d", server={"mapSize": "1MiB", "maxMapSize": "1MiB"})
    payload = orjson.dumps({"pad": "x" * 8000})
    statuses: list[int] = []
    async with run_gateway(settings) as gw:
        for index in range(400):
            response = await gw.client.post(
                "/topics/orders/events",
                headers={**BINARY_HEADERS, "ce-id": f"f{index}"},
                content=payload,
            )
            statuses.append(response.status_code)
            if response.status_code == 507:
                assert_problem(response, 507, "store-full")
                break
        assert statuses[-1] == 507
        ready: Any = (await gw.client.get("/readyz")).json()
        assert ready["status"] == 503 and "store full" in ready["reasons"]
        assert len(await event_ids(gw.store)) == statuses.count(202)


async def test_full_store_still_settles_deliveries(tmp_path: Path) -> None:
    """R13: at the maximum map size publishes get 507, while deliveries already stored are
    still pushed and their acks committed (acks free room; they are not refused with them)."""
    from tests.conftest import LOOPBACK_EGRESS, settle, status, subscription
    from tests.support.subscriber import Answer, run_subscriber

    payload = orjson.dumps({"pad": "x" * 8000})
    async with run_subscriber() as sub:
        down = True
        sub.script = lambda r: Answer(503 if down else 200)
        spec = subscription(
            "s1", sub.url, retryPolicy={"minimumBackoff": "50ms", "maximumBackoff": "50ms"}
        )
        settings = make_settings(
            tmp_path / "d",
            egress=LOOPBACK_EGRESS,
            server={"mapSize": "1MiB", "maxMapSize": "1MiB"},
            subscriptions=[spec],
        )
        async with run_gateway(settings) as gw:
            for index in range(400):
                response = await gw.client.post(
                    "/topics/orders/events",
                    headers={**BINARY_HEADERS, "ce-id": f"f{index}"},
                    content=payload,
                )
                if response.status_code == 507:
                    break
            assert response.status_code == 507
            full_at = len(await event_ids(gw.store))
            down = False  # the subscriber recovers while the store is still full...
            refused = 0

            async def keep_publishing(worker: int) -> None:  # ...and publishers keep trying
                nonlocal refused
                # Until every delivery stored at the full mark is acked (bounded in time and
                # count: if acks stop committing while publishes are refused, the check below
                # fails after the deadline instead of racing a fixed window).
                deadline = asyncio.get_running_loop().time() + 10.0
                for index in range(5000):
                    if asyncio.get_running_loop().time() > deadline:
                        return
                    if refused and status(gw, "s1")["acked"] >= full_at:
                        return
                    response = await gw.client.post(
                        "/topics/orders/events",
                        headers={**BINARY_HEADERS, "ce-id": f"late{worker}-{index}"},
                        content=payload,
                    )
                    refused += response.status_code == 507

            await asyncio.gather(*(keep_publishing(worker) for worker in range(8)))
            assert refused > 0
            # While they were refused, every delivery stored when it filled up was pushed and
            # its ack committed (a late publish that fit after acks freed pages may still be
            # on its way: it is checked after settling below).
            assert status(gw, "s1")["acked"] >= full_at
            await settle(gw)
            stored = len(await event_ids(gw.store))  # acks freed pages: a late publish may fit
            assert status(gw, "s1") == {
                "published": stored,
                "acked": stored,
                "deadlettered": 0,
                "dropped": 0,
                "pending": 0,
            }
            assert {r.event_id for r in sub.received} == set(await event_ids(gw.store))
