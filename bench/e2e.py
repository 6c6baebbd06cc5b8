"""End-to-end figures for one subscription: idle publish-to-push latency and push throughput.

The gateway runs as its own process (`ce-gateway serve`, full fsync) on a temp data dir; this
process hosts the subscriber (aiohttp, answers 200 at once) and the publisher.

    .venv/bin/python bench/e2e.py [--events 5000] [--latency-samples 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Sink:
    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.all_arrived = asyncio.Event()
        self.expected = 0

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals[request.headers.get("ce-id", "")] = time.perf_counter()
        if len(self.arrivals) >= self.expected:
            self.all_arrived.set()
        return web.Response(status=200)


async def start_sink(sink: Sink) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_post("/", sink.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


def start_gateway(data_dir: Path, sink_port: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "dataDir": str(data_dir)},
        "egress": {"allowedNetworks": ["127.0.0.1/32"]},
        "topics": [{"name": "bench"}],
        "subscriptions": [
            {
                "name": "sink",
                "topic": "bench",
                "destination": {"http": {"url": f"http://127.0.0.1:{sink_port}/"}},
                "maxConcurrency": 64,
            }
        ],
    }
    path = data_dir.parent / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/ce-gateway"), "serve", "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, f"http://127.0.0.1:{port}"


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(200):
        try:
            async with session.get(url + "/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError("gateway not ready")


def binary_headers(event_id: str) -> dict[str, str]:
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/bench",
        "ce-type": "bench.event",
        "content-type": "application/json",
    }


async def measure_latency(
    session: aiohttp.ClientSession, url: str, sink: Sink, samples: int, prefix: str
) -> list[float]:
    latencies = []
    for index in range(samples):
        event_id = f"{prefix}-{index}"  # unique: a repeated id is (rightly) a duplicate
        sink.expected = len(sink.arrivals) + 1
        sink.all_arrived.clear()
        started = time.perf_counter()
        async with session.post(
            url + "/topics/bench/events", headers=binary_headers(event_id), data=b'{"n": 1}'
        ) as response:
            assert response.status == 202, await response.text()
        await asyncio.wait_for(sink.all_arrived.wait(), 10)
        latencies.append(sink.arrivals[event_id] - started)
    return latencies


async def measure_throughput(
    session: aiohttp.ClientSession, url: str, sink: Sink, count: int
) -> tuple[float, float]:
    """Publish `count` events in batches of 500; returns (publish seconds, push rate)."""
    sink.expected = len(sink.arrivals) + count
    sink.all_arrived.clear()
    started = time.perf_counter()
    for first in range(0, count, 500):
        batch = [
            {"specversion": "1.0", "id": f"tp-{i}", "source": "/bench", "type": "t", "data": {}}
            for i in range(first, min(count, first + 500))
        ]
        async with session.post(
            url + "/topics/bench/events",
            headers={"content-type": "application/cloudevents-batch+json"},
            data=json.dumps(batch).encode(),
        ) as response:
            assert response.status == 202
    published = time.perf_counter() - started
    await asyncio.wait_for(sink.all_arrived.wait(), 120)
    arrivals = sorted(t for key, t in sink.arrivals.items() if key.startswith("tp-"))
    return published, (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


async def main(events: int, samples: int) -> None:
    sink = Sink()
    runner, sink_port = await start_sink(sink)
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_gateway(Path(tmp) / "data", sink_port)
        try:
            async with aiohttp.ClientSession() as session:
                await wait_ready(session, url)
                await measure_latency(session, url, sink, 20, "warm")
                latencies = sorted(await measure_latency(session, url, sink, samples, "lat"))
                published, rate = await measure_throughput(session, url, sink, events)
        finally:
            process.terminate()
            process.wait(10)
            await runner.cleanup()
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"idle publish-to-push latency over {samples} events: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(f"{events} events published in batches of 500 in {published:.2f} s")
    print(f"push rate to a local subscriber answering at once: {rate:.0f} events/s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--latency-samples", type=int, default=200)
    options = parser.parse_args()
    asyncio.run(main(options.events, options.latency_samples))
    sys.exit(0)
