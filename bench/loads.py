"""Load generators that run as their own processes (so they never share an event loop, or a
core's time slices, with what they measure). Each prints one JSON line.

    python bench/loads.py push-aiohttp URL COUNT CONCURRENCY SECONDS PREFIX
    python bench/loads.py push-httpx   URL COUNT CONCURRENCY SECONDS PREFIX
        a bare client loop posting binary-mode events, as the gateway pushes them, to the
        subscriber: the reference the gateway's push rate is held against.
    python bench/loads.py paced URL RATE COUNT CONCURRENCY SECONDS PREFIX
        single-event publishes at a fixed rate (open loop), recording when each was sent, for
        publish-to-push latency under load: prints {"sent": {id: monotonic time}, ...}.
    python bench/loads.py seed URL COUNT CONCURRENCY SECONDS PREFIX
        exactly COUNT events in batches of 1,000 (batch mode), to store a backlog.
    python bench/loads.py nats SERVER COUNT CONCURRENCY SECONDS PREFIX
        JetStream publishes (nats-py), each awaited for its ack, `Nats-Msg-Id` set for dedup.

Every loop is bounded by COUNT and by SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

BODY = b'{"n": 1}'


def push_headers(event_id: str) -> dict[str, str]:
    """What the gateway sends for a binary-mode push of a bench event."""
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/bench",
        "ce-type": "bench.event",
        "content-type": "application/json",
    }


async def closed_loop(
    count: int, concurrency: int, seconds: float, send: Callable[[int], Awaitable[bool]]
) -> dict[str, Any]:
    """`concurrency` workers take indexes 0..count-1 until done or `seconds` pass."""
    next_index = 0
    ok = 0
    failed = 0
    latencies: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal next_index, ok, failed
        while next_index < count and time.monotonic() < deadline:
            index = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                good = await send(index)
            except Exception:
                good = False
            latencies.append(time.perf_counter() - started)
            if good:
                ok += 1
            else:
                failed += 1

    started = time.perf_counter()
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "ok": ok,
        "failed": failed,
        "seconds": elapsed,
        "cpu_seconds": time.process_time() - cpu,  # this process, during the loop only
        "rate": ok / elapsed if elapsed else 0.0,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else None,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000 if latencies else None,
    }


async def push_aiohttp(url: str, count: int, concurrency: int, seconds: float, prefix: str) -> Any:
    import aiohttp

    # The gateway's own session settings (gateway.sinks.HttpSink), less its egress resolver.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    async with aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent",),
        headers={"user-agent": "bench"},
        cookie_jar=aiohttp.DummyCookieJar(),
    ) as session:

        async def send(index: int) -> bool:
            async with session.post(
                url, headers=push_headers(f"{prefix}{index}"), data=BODY, allow_redirects=False
            ) as response:
                await response.read()
                return 200 <= response.status < 300

        return await closed_loop(count, concurrency, seconds, send)


async def push_httpx(url: str, count: int, concurrency: int, seconds: float, prefix: str) -> Any:
    import httpx

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def send(index: int) -> bool:
            response = await client.post(
                url, headers=push_headers(f"{prefix}{index}"), content=BODY
            )
            return 200 <= response.status_code < 300

        return await closed_loop(count, concurrency, seconds, send)


async def seed(url: str, count: int, concurrency: int, seconds: float, prefix: str) -> Any:
    import aiohttp
    import orjson

    size = 1000
    batches = (count + size - 1) // size
    headers = {"content-type": "application/cloudevents-batch+json"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def send(batch: int) -> bool:
            first = batch * size
            body = orjson.dumps(
                [
                    {
                        "specversion": "1.0",
                        "id": f"{prefix}{index}",
                        "source": "/bench",
                        "type": "bench.event",
                        "datacontenttype": "application/json",
                        "data": {"n": 1},
                    }
                    for index in range(first, min(count, first + size))
                ]
            )
            async with session.post(url, headers=headers, data=body) as response:
                await response.read()
                return response.status == 202

        result = await closed_loop(batches, concurrency, seconds, send)
    result["events"] = count if result["ok"] == batches else None
    return result


async def paced(
    url: str, rate: float, count: int, concurrency: int, seconds: float, prefix: str
) -> Any:
    """Open loop: event i is due at start + i/rate; sent by whichever connection is free."""
    import aiohttp

    sent: dict[str, float] = {}
    answered: list[float] = []
    statuses: dict[str, int] = {}
    late = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    cpu = time.process_time()
    async with aiohttp.ClientSession(connector=connector) as session:
        start = time.monotonic() + 0.05
        deadline = start + seconds
        queue: asyncio.Queue[int] = asyncio.Queue()

        async def worker() -> None:
            nonlocal late
            while True:
                index = await queue.get()
                event_id = f"{prefix}{index}"
                due = start + index / rate
                now = time.monotonic()
                if now - due > 0.005:
                    late += 1
                sent[event_id] = now
                async with session.post(url, headers=push_headers(event_id), data=BODY) as resp:
                    await resp.read()
                    statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                answered.append(time.monotonic() - now)
                queue.task_done()

        workers = [asyncio.create_task(worker()) for _ in range(concurrency)]
        for index in range(count):
            due = start + index / rate
            if due > deadline:
                break
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            queue.put_nowait(index)
        await asyncio.wait_for(queue.join(), timeout=max(5.0, seconds))
        for task in workers:
            task.cancel()
        elapsed = time.monotonic() - start
    answered.sort()
    return {
        "sent": sent,
        "statuses": statuses,
        "seconds": elapsed,
        "rate": len(sent) / elapsed if elapsed else 0.0,
        "cpu_seconds": time.process_time() - cpu,
        "late": late,
        "publish_p50_ms": answered[len(answered) // 2] * 1000 if answered else None,
        "publish_p99_ms": answered[int(len(answered) * 0.99)] * 1000 if answered else None,
    }


async def nats_publish(
    server: str, count: int, concurrency: int, seconds: float, prefix: str
) -> Any:
    import nats
    from nats.js.api import StorageType, StreamConfig

    connection = await nats.connect(server, pending_size=64 * 1024 * 1024)
    try:
        jetstream = connection.jetstream()
        await jetstream.add_stream(
            StreamConfig(
                name="bench",
                subjects=["bench.>"],
                storage=StorageType.FILE,
                duplicate_window=120.0,
            )
        )

        async def send(index: int) -> bool:
            ack = await jetstream.publish(
                "bench.events",
                BODY,
                timeout=10,
                headers={"Nats-Msg-Id": f"{prefix}{index}"},
            )
            return not ack.duplicate

        result = await closed_loop(count, concurrency, seconds, send)
        info = await jetstream.stream_info("bench")
        result["stream_messages"] = info.state.messages
        return result
    finally:
        await connection.close()


def main(argv: list[str]) -> None:
    kind, rest = argv[0], argv[1:]
    result: Any
    runs = {
        "push-aiohttp": push_aiohttp,
        "push-httpx": push_httpx,
        "nats": nats_publish,
        "seed": seed,
    }
    if kind in runs:
        target, count, concurrency, seconds, prefix = rest
        run = runs[kind]
        result = asyncio.run(run(target, int(count), int(concurrency), float(seconds), prefix))
    elif kind == "paced":
        url, rate, count, concurrency, seconds, prefix = rest
        result = asyncio.run(
            paced(url, float(rate), int(count), int(concurrency), float(seconds), prefix)
        )
    else:
        raise SystemExit(__doc__)
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
