"""Where a push's time goes, measured inside one gateway process (bench/notes/, session 4).

The gateway runs in this process (its real app under Hypercorn, real LMDB in a temp dir, one
subscription with 64 slots). N events are stored first while pushes are held back, then
released; the script reports, over the pushes:

- CPU per push of the event-loop thread and of the LMDB writer thread (`/proc` per thread);
- the push rate;
- the commit cycle of the outcomes, as the mean time from an outcome batch being submitted to
  the writer picking it up, the writer's work before the commit (wall and its own CPU), the
  commit itself, and the way back to the event loop.

`--sink http` pushes to `bench/sink.py` in its own process through the gateway's HttpSink;
`--sink instant` answers every push at once in this process (the engine's own cost, no HTTP).
The timing hooks wrap `gateway.store.lmdb.committer` functions for the run; they add a few
microseconds per commit, so compare runs of this script with each other, not with run.py.

    .venv/bin/python bench/push_anatomy.py --sink http --events 40000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h
import httpx
import loads
import orjson
from hypercorn.asyncio import serve

from gateway.app import create_app
from gateway.config.settings import parse_config
from gateway.delivery.pushes import PushRequest, PushResult
from gateway.delivery.sinks.http import Sinks
from gateway.destinations.targets import HttpTarget, Target
from gateway.server import hypercorn_config
from gateway.store.lmdb import committer

ANSWERED = PushResult(200, None, None, b"", None)


class HeldSinks:
    """The gateway's sinks, holding every push until `release()`; then each goes to `target`
    through the real HttpSink, or (no target) is answered 200 at once."""

    def __init__(self, real: Sinks, target: HttpTarget | None) -> None:
        self.real = real
        self.target = target
        self.released = asyncio.Event()
        self.pushed = 0

    @property
    def resolver(self) -> Any:
        return self.real.resolver

    async def start(self) -> None:
        await self.real.start()

    async def close(self) -> None:
        await self.real.close()

    async def push(self, target: Target, request: PushRequest, deadline: float) -> PushResult:
        await self.released.wait()
        if self.target is None:
            await asyncio.sleep(0)  # one turn of the loop, as for an answer arriving
            result = ANSWERED
        else:
            result = await self.real.push(self.target, request, deadline)
        self.pushed += 1
        return result


class CommitTimeline:
    """Timestamps of each outcome commit's stages, by wrapping the committer's functions."""

    def __init__(self, store: Any) -> None:
        self.times: dict[str, list[float]] = defaultdict(list)
        self.writer_cpu: list[tuple[float, float]] = []  # (at picked, at applied)
        self._store = store

    def install(self) -> None:
        stamp = self.times
        real_submit, real_gather = committer.Committer.submit, committer.Committer._gather
        real_settle, real_commit = committer._settle, self._store._committer._commit
        picked_cpu: list[float] = []

        async def submit(self: Any, run: Any, announced: bool = False, grows: bool = False) -> Any:
            stamp["submitted"].append(time.perf_counter())
            return await real_submit(self, run, announced, grows)

        def gather(self: Any) -> Any:
            batch = real_gather(self)
            stamp["picked"].append(time.perf_counter())
            picked_cpu.append(time.thread_time())
            return batch

        def commit(txn: Any) -> None:
            stamp["applied"].append(time.perf_counter())
            if picked_cpu:
                self.writer_cpu.append((picked_cpu[-1], time.thread_time()))
            real_commit(txn)
            stamp["committed"].append(time.perf_counter())

        def settle(operations: Any, translate: Callable[[BaseException], BaseException]) -> None:
            stamp["settled"].append(time.perf_counter())
            real_settle(operations, translate)

        committer.Committer.submit = submit  # type: ignore[method-assign]
        committer.Committer._gather = gather  # type: ignore[method-assign]
        committer._settle = settle
        self._store._committer._commit = commit

    def report(self) -> dict[str, float]:
        """Mean milliseconds per stage. The writer was already waiting inside `_gather` when
        the hooks went in, so its first pick is not stamped: picks[i] belong to commit i+1."""
        t = self.times
        count = min(len(t["submitted"]) - 1, len(t["picked"]), len(t["applied"]) - 1)
        if count < 8:  # plain acks go to the ack writer process (session 7), not these hooks
            return {"commits": max(count, 0)}
        window = range(min(100, count // 4), count - min(100, count // 4))

        def mean(values: list[float]) -> float:
            return round(1000 * statistics.fmean(values), 3)

        return {
            "commits": count,
            "submitted_to_picked_ms": mean(
                [t["picked"][i] - t["submitted"][i + 1] for i in window]
            ),
            "picked_to_commit_ms": mean([t["applied"][i + 1] - t["picked"][i] for i in window]),
            "writer_cpu_before_commit_ms": mean([end - start for start, end in self.writer_cpu]),
            "commit_ms": mean([t["committed"][i] - t["applied"][i] for i in window]),
            "committed_to_settled_ms": mean([t["settled"][i] - t["committed"][i] for i in window]),
            "settled_to_next_submit_ms": mean(
                [t["submitted"][i + 1] - t["settled"][i] for i in window]
            ),
        }


def thread_cpu() -> dict[str, float]:
    """CPU seconds per thread of this process: the main thread runs the event loop; the
    gateway's only other thread is the LMDB writer."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    for tid in os.listdir("/proc/self/task"):
        fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        name = "event-loop" if int(tid) == os.getpid() else f"thread-{tid}"
        found[name] = (int(fields[11]) + int(fields[12])) / ticks
    return found


async def wait_ready(client: httpx.AsyncClient, seconds: float = 30) -> None:
    for _ in range(int(seconds / 0.05)):
        try:
            if (await client.get("/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass  # not listening yet
        await asyncio.sleep(0.05)
    raise TimeoutError("the gateway did not turn ready")


async def measure(events: int, target: HttpTarget | None) -> dict[str, Any]:
    settings = parse_config(
        {
            "server": {"dataDir": tempfile.mkdtemp(prefix="push-anatomy-")},
            "egress": {"allowedNetworks": ["127.0.0.1/32"]},
            "topics": [{"name": "orders"}],
            "subscriptions": [
                {
                    "name": "bench",
                    "topic": "orders",
                    "destination": {"http": {"url": "http://127.0.0.1:9/"}},
                    "maxConcurrency": 64,
                }
            ],
        }
    )
    app = create_app(settings)
    gateway = app.state.gateway
    sinks = gateway.sink = HeldSinks(gateway.sink, target)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = hypercorn_config(settings.server, bind=f"fd://{listener.detach()}")
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            await wait_ready(client)
            stored = await loads.seed(
                f"http://127.0.0.1:{port}/topics/orders/events", events, 4, 120, "e"
            )
            assert stored["events"] == events, stored
        timeline = CommitTimeline(gateway.store)
        timeline.install()
        before, started = thread_cpu(), time.perf_counter()
        sinks.released.set()
        while sinks.pushed < events:
            await asyncio.sleep(0.01)
        elapsed, after = time.perf_counter() - started, thread_cpu()
    finally:
        stop.set()
        await server
    per_push = {
        name: round(1e6 * (after[name] - before[name]) / events, 1)
        for name in after
        if name in before and after[name] > before[name]
    }
    return {
        "pushes_per_s": round(events / elapsed),
        "cpu_us_per_push_by_thread": per_push,
        "commit_cycle": timeline.report(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--sink", choices=["http", "instant"], default="http")
    options = parser.parse_args()
    sink = (
        h.Sink(Path(tempfile.mkdtemp(prefix="push-anatomy-sink-")))
        if options.sink == "http"
        else None
    )
    try:
        target = None
        if sink is not None:
            sink.up()
            target = HttpTarget(url=sink.url, content_mode="binary")
        result = asyncio.run(measure(options.events, target))
    finally:
        if sink is not None:
            sink.stop()
    print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
