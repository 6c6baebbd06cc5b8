"""Limits against hostile peers (RELIABILITY S3, S6, S7, S8), on a real gateway process.

Memory is the gateway process's own RSS (/proc/PID/status); every loop is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest
from aiohttp import web

from tests.conftest import BINARY_HEADERS, LOOPBACK_EGRESS, make_settings, run_gateway
from tests.support.gateway_process import GatewayProcess, free_port

pytestmark = pytest.mark.slow
MiB = 1024 * 1024


def rss(gateway: GatewayProcess) -> int:
    assert gateway.process is not None
    for line in Path(f"/proc/{gateway.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def orders_gateway(tmp_path: Path, **server: str) -> GatewayProcess:
    """A gateway process with topic `orders` and these server settings."""
    return GatewayProcess(tmp_path, {"server": server, "topics": [{"name": "orders"}]})


async def settled_metric(client: httpx.AsyncClient, name: str, seconds: float = 20) -> str:
    for _ in range(int(seconds / 0.05)):
        text = (await client.get("/metrics")).text
        if name in text:
            return text
        await asyncio.sleep(0.05)
    raise TimeoutError(name)


def counter(text: str, prefix: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(prefix)
    )


class Hostile:
    """A subscriber that answers with 1 GiB bodies or dribbles its answer."""

    def __init__(self) -> None:
        self.requests = 0
        self.url = ""

    async def huge(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        response = web.StreamResponse(status=500)
        await response.prepare(request)
        chunk = b"x" * 65536
        try:
            for _ in range(16384):  # 1 GiB at most; the gateway hangs up after its cap
                await response.write(chunk)
        except (ConnectionError, RuntimeError):
            pass
        return response

    async def dribble(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        await request.read()
        response = web.StreamResponse(status=503)
        await response.prepare(request)
        try:
            for _ in range(50):  # one byte every 0.2 s: 10 s at most
                await response.write(b".")
                await asyncio.sleep(0.2)
        except (ConnectionError, RuntimeError):
            pass
        return response


async def serve_hostile() -> AsyncIterator[Hostile]:  # an async generator: use `async for`
    hostile = Hostile()
    app = web.Application()
    app.router.add_post("/huge", hostile.huge)
    app.router.add_post("/dribble", hostile.dribble)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    hostile.url = f"http://127.0.0.1:{port}"
    try:
        yield hostile
    finally:
        await runner.cleanup()


def hostile_config(url: str, path: str) -> dict[str, object]:
    return {
        "egress": LOOPBACK_EGRESS,
        "topics": [{"name": "orders"}, {"name": "dead"}],
        "subscriptions": [
            {
                "name": "s1",
                "topic": "orders",
                "deadLetterTopic": "dead",
                "maxDeliveryAttempts": 1,
                "ackDeadline": "1s",
                "maxConcurrency": 8,
                "destination": {"http": {"url": url + path}},
            }
        ],
    }


async def publish_batch(client: httpx.AsyncClient, count: int, prefix: str) -> None:
    batch = [
        {"specversion": "1.0", "id": f"{prefix}{i}", "source": "/s3", "type": "t"}
        for i in range(count)
    ]
    response = await client.post(
        "/topics/orders/events",
        headers={"content-type": "application/cloudevents-batch+json"},
        content=orjson.dumps(batch),
    )
    assert response.status_code == 202


async def test_huge_response_bodies_are_capped_and_memory_stays_flat(tmp_path: Path) -> None:
    """S3: 100 answers of up to 1 GiB each; the gateway reads 64 KiB of each, keeps 1 KiB in
    the dead letter, and its RSS grows by less than a fixed bound."""
    async for hostile in serve_hostile():
        gateway = GatewayProcess(tmp_path, hostile_config(hostile.url, "/huge"))
        await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
                await publish_batch(client, 10, "warm")
                await settled_metric(client, 'cegateway_deadletter_depth{topic="dead"} 10.0')
                before = rss(gateway)
                await publish_batch(client, 100, "big")
                await settled_metric(client, 'cegateway_deadletter_depth{topic="dead"} 110.0')
                after = rss(gateway)
                dead = (await client.get("/v1/topics/dead/events?limit=1")).json()["events"][0]
        finally:
            await asyncio.to_thread(gateway.stop)
    print(f"\nS3: RSS {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB over 100 huge answers")
    assert hostile.requests == 110
    assert after - before < 32 * MiB
    assert len(dead["dlbody"].encode()) <= 1024 and dead["dlstatus"] == "500"


async def test_dribbled_answer_is_cut_at_the_ack_deadline(tmp_path: Path) -> None:
    """S3: an answer dribbled byte by byte never holds an attempt past ackDeadline (1 s)."""
    async for hostile in serve_hostile():
        gateway = GatewayProcess(tmp_path, hostile_config(hostile.url, "/dribble"))
        await gateway.start()
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
                started = time.monotonic()
                await publish_batch(client, 8, "slow")
                text = await settled_metric(client, 'cegateway_deadletter_depth{topic="dead"} 8.0')
                elapsed = time.monotonic() - started
                dead = (await client.get("/v1/topics/dead/events")).json()["events"]
        finally:
            await asyncio.to_thread(gateway.stop)
    assert {event["dlstatus"] for event in dead} == {"timeout"}
    # Every attempt fell in the <= 2.5 s bucket (1 s deadline plus scheduling slack).
    within = counter(text, 'cegateway_delivery_duration_seconds_bucket{le="2.5",subscription="s1"}')
    assert within == 8
    assert elapsed < 10  # the 10 s dribble was never waited out


async def test_oversize_bodies_are_refused_without_buffering(tmp_path: Path) -> None:
    """S6: 50 chunked 4 MiB bodies against a 1 MiB limit: each 413, RSS flat."""
    gateway = GatewayProcess(tmp_path, {"topics": [{"name": "orders"}]})
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as client:
            before = rss(gateway)
            refused = 0
            for index in range(50):
                with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
                    head = (
                        f"POST /topics/orders/events HTTP/1.1\r\nHost: x\r\n"
                        f"ce-specversion: 1.0\r\nce-id: big{index}\r\nce-source: /s6\r\n"
                        f"ce-type: t\r\ntransfer-encoding: chunked\r\n\r\n"
                    ).encode()
                    sock.sendall(head)
                    chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
                    try:
                        for _ in range(64):  # 4 MiB, stopping once the server answers
                            sock.sendall(chunk)
                    except OSError:
                        pass
                    answer = sock.recv(65536)
                    refused += answer.startswith(b"HTTP/1.1 413")
            after = rss(gateway)
            events = (await client.get("/v1/topics/orders/events")).json()["events"]
    finally:
        await asyncio.to_thread(gateway.stop)
    print(f"\nS6: RSS {before / MiB:.1f} MiB -> {after / MiB:.1f} MiB over 50 oversize bodies")
    assert refused == 50 and events == []
    assert after - before < 16 * MiB


async def test_batch_has_a_per_event_and_a_total_limit(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, server={"maxBodySize": "64KiB", "maxEventSize": "4KiB"})
    async with run_gateway(settings) as gw:
        small = {"specversion": "1.0", "source": "/b", "type": "t", "data": "x" * 100}
        big = {**small, "data": "y" * 5000}
        batch = [{**small, "id": "a"}, {**big, "id": "b"}]
        headers = {"content-type": "application/cloudevents-batch+json"}
        response = await gw.client.post(
            "/topics/orders/events", headers=headers, content=orjson.dumps(batch)
        )
        problem = response.json()
        assert (response.status_code, problem["index"]) == (413, 1)
        many = [{**small, "id": str(i)} for i in range(600)]  # about 90 KiB in all
        response = await gw.client.post(
            "/topics/orders/events", headers=headers, content=orjson.dumps(many)
        )
        assert response.status_code == 413
        assert (await gw.client.get("/v1/topics/orders/events")).json()["events"] == []


async def test_header_limits(tmp_path: Path) -> None:
    """S7: over 16 KiB of headers never reaches the app; too many ce- extensions is a 400
    naming the header."""
    settings = make_settings(tmp_path, server={"maxExtensions": 4})
    async with run_gateway(settings) as gw:
        huge = {**BINARY_HEADERS, "ce-id": "h", "x-padding": "p" * 20_000}
        response = await gw.client.post("/topics/orders/events", headers=huge, content=b"{}")
        assert response.status_code == 431
        assert response.headers["content-type"] == "application/problem+json"
        extensions = {f"ce-ext{i}": "v" for i in range(5)}
        response = await gw.client.post(
            "/topics/orders/events",
            headers={**BINARY_HEADERS, "ce-id": "e", **extensions},
            content=b"{}",
        )
        assert response.status_code == 400
        assert response.json()["field"] == "ext4"
        assert "'ce-ext4'" in response.json()["detail"]
        assert (await gw.client.get("/v1/topics/orders/events")).json()["events"] == []


@pytest.mark.parametrize("engine", ["hypercorn", "uvicorn"])
async def test_slow_loris_connections_are_closed_and_publishers_still_served(
    tmp_path: Path, engine: str
) -> None:
    """S8: 200 connections sending one header byte per second; legitimate publishes still
    answer within 1 s; the slow ones are closed by the header deadline (keepAliveTimeout),
    on either server engine."""
    gateway = orders_gateway(tmp_path, engine=engine, keepAliveTimeout="2s", readTimeout="2s")
    await gateway.start()
    slow: list[socket.socket] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
            sock.setblocking(False)
            slow.append(sock)
        closed_at: dict[int, float] = {}
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
            for second in range(5):  # bounded: 5 s
                for index, sock in enumerate(slow):
                    if index in closed_at:
                        continue
                    try:
                        sock.send(b"POST /topics/orders/events HTTP/1.1\r\n"[second : second + 1])
                        if sock.recv(1) == b"":
                            closed_at[index] = time.monotonic() - started
                    except BlockingIOError:
                        pass
                    except OSError:
                        closed_at[index] = time.monotonic() - started
                began = time.monotonic()
                response = await client.post(
                    "/topics/orders/events", headers={**BINARY_HEADERS, "ce-id": f"ok{second}"}
                )
                assert response.status_code == 202
                assert time.monotonic() - began < 1.0
                await asyncio.sleep(1)
    finally:
        for sock in slow:
            sock.close()
        await asyncio.to_thread(gateway.stop)
    print(
        f"\nS8 ({engine}): {len(closed_at)} of 200 slow connections closed, last at "
        f"{max(closed_at.values(), default=0):.1f} s"
    )
    assert len(closed_at) == 200
    assert max(closed_at.values()) < 5


@pytest.mark.parametrize("engine", ["hypercorn", "uvicorn"])
async def test_blank_lines_do_not_keep_a_connection_open(tmp_path: Path, engine: str) -> None:
    """S8: HTTP parsers skip blank lines before a request; sending them (on a new connection,
    and on an idle keep-alive one) must not stand in for a request head."""
    gateway = orders_gateway(tmp_path, engine=engine, keepAliveTimeout="2s")
    await gateway.start()

    async def open_for(first: bytes) -> float:
        """Seconds until the gateway closes a connection that sends `first`, then a blank
        line every 0.5 s (bounded: 10 s)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(first)
        started = time.monotonic()
        try:
            for _ in range(20):
                if reader.at_eof():
                    break
                writer.write(b"\r\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    while await asyncio.wait_for(reader.read(65536), 0.5):
                        pass  # an answer to `first`, if any; b"" is the close
        except ConnectionError:
            pass
        finally:
            writer.close()
        return time.monotonic() - started

    try:
        fresh = await open_for(b"")
        head = "".join(f"{name}: {value}\r\n" for name, value in BINARY_HEADERS.items())
        request = f"POST /topics/orders/events HTTP/1.1\r\nhost: x\r\n{head}content-length: 2"
        kept_alive = await open_for(f"{request}\r\n\r\n{{}}".encode())
    finally:
        await asyncio.to_thread(gateway.stop)
    print(f"\nblank lines ({engine}): closed after {fresh:.1f} s (new), {kept_alive:.1f} s (idle)")
    assert fresh < 5
    assert kept_alive < 5


@pytest.mark.parametrize("engine", ["hypercorn", "uvicorn"])
async def test_a_body_that_stops_arriving_is_dropped_after_read_timeout(
    tmp_path: Path, engine: str
) -> None:
    """A publisher that sends its head and part of its body, then nothing: the connection is
    closed after `readTimeout` (2 s here), not held open forever, and nothing is stored."""
    gateway = orders_gateway(tmp_path, engine=engine, readTimeout="2s")
    await gateway.start()
    try:
        head = "".join(f"{name}: {value}\r\n" for name, value in BINARY_HEADERS.items())
        reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
        writer.write(
            f"POST /topics/orders/events HTTP/1.1\r\nhost: x\r\n{head}"
            "content-length: 100\r\n\r\n0123456789".encode()
        )
        await writer.drain()
        started = time.monotonic()
        answer = await asyncio.wait_for(reader.read(), 10)  # b"" (or an error answer) at close
        closed_after = time.monotonic() - started
        writer.close()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
            stored = (await client.get("/v1/topics/orders/events")).json()["events"]
    finally:
        await asyncio.to_thread(gateway.stop)
    print(f"\nread timeout ({engine}): closed after {closed_after:.1f} s, answer {answer[:12]!r}")
    assert 1.5 < closed_after < 5
    # Hypercorn still writes the answer to the half-gone request; uvicorn just closes.
    assert answer == b"" or answer.startswith(b"HTTP/1.1 400"), answer[:200]
    if answer:
        assert b"application/problem+json" in answer and b"before it was complete" in answer
    assert stored == []


async def test_http2_clients_are_limited_to_100_concurrent_streams(tmp_path: Path) -> None:
    """S7: the server announces SETTINGS_MAX_CONCURRENT_STREAMS = 100 (Hypercorn's
    h2_max_concurrent_streams), which an HTTP/2 client must respect; checked with the h2
    library over a prior-knowledge h2c connection. Opening streams past it is not tested."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings

    async with run_gateway(make_settings(tmp_path)) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        writer.write(connection.data_to_send())
        await writer.drain()
        announced = None
        for _ in range(20):  # bounded: a few frames arrive before SETTINGS is seen
            data = await asyncio.wait_for(reader.read(65536), 5)
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.RemoteSettingsChanged):
                    setting = event.changed_settings.get(
                        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS
                    )
                    announced = setting.new_value if setting else announced
            if announced is not None:
                break
        writer.close()
        await writer.wait_closed()
    assert announced == 100
