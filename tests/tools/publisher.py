"""A load of concurrent binary-mode publishes from a separate process (so the server under test
does not share an event loop with its clients). Prints one JSON line: statuses and timings.

    python -m tests.tools.publisher URL TOPIC COUNT CONCURRENCY [ID_PREFIX]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def publish_all(url: str, topic: str, count: int, concurrency: int, prefix: str) -> None:
    statuses: dict[str, int] = {}
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(count):
        queue.put_nowait(index)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": f"{prefix}{index}",
                    "ce-source": "/load",
                    "ce-type": "com.example.load",
                    "content-type": "application/json",
                }
                started = time.perf_counter()
                async with session.post(
                    f"{url}/topics/{topic}/events", headers=headers, data=b'{"n": 1}'
                ) as response:
                    await response.read()
                    statuses[str(response.status)] = statuses.get(str(response.status), 0) + 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    print(
        json.dumps(
            {
                "statuses": statuses,
                "seconds": elapsed,
                "p50": latencies[len(latencies) // 2],
                "p99": latencies[int(len(latencies) * 0.99)],
            }
        )
    )


if __name__ == "__main__":
    url, topic, count, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    prefix = sys.argv[5] if len(sys.argv) > 5 else "load-"
    asyncio.run(publish_all(url, topic, count, concurrency, prefix))
