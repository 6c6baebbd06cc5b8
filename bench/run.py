"""The benchmark harness (issue 9): every scenario, or one, against a real `ce-gateway serve`.

    .venv/bin/python bench/run.py                       # all scenarios (what `make bench` runs)
    .venv/bin/python bench/run.py --scenario push       # one scenario (repeatable)
    .venv/bin/python bench/run.py --engine uvicorn      # another server engine (skipped, with a
                                                        # message, if the gateway refuses it)
    .venv/bin/python bench/run.py --gateway-tree HEAD   # bench a commit's gateway/, not the
                                                        # work tree others may be editing

Scenarios: publish-single, ceiling, publish-batch, nats, push, e2e, backlog, profile.
Load comes from wrk (`bench/wrk.lua`, one thread) or from `bench/loads.py` in its own process;
the generator's own CPU is recorded (wrk: wait4 rusage; Python generators: their process time
during the loop). Everything listens on 127.0.0.1 only, every load is bounded in count and in
time. Figures are merged into `bench/results.json` (per engine and scenario, so one scenario can
be re-run alone), `bench/results.png` (`results-ENGINE.png` for another engine) is drawn from it
(`bench/chart.py`), and the targets of issue 9 are checked on what the file holds.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h
import httpx

RESULTS = h.BENCH / "results.json"
CHART = h.BENCH / "results.png"
SCENARIOS = (
    "publish-single",
    "ceiling",
    "publish-batch",
    "nats",
    "push",
    "e2e",
    "backlog",
    "profile",
)
CONCURRENCY = 64
BACKLOG_REPEATS = 5
BACKLOG_WINDOW = (100, 1000)  # arrivals over which CPU per delivery is taken, at every size
BACKLOG_LONG_WINDOW = (1000, 10_000)  # and again, for the sizes that have that many
PUBLISHED = 'cegateway_events_published_total{topic="bench"}'


class Skip(Exception):
    """A scenario that cannot run here (a missing tool, an engine the gateway refuses)."""


class Bench:
    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.engine: str = options.engine
        self.workdir = workdir
        self.runs = 0
        self.loads = 0
        self.tag = time.strftime("%H%M%S")

    # --- building blocks -------------------------------------------------------------------

    def server(self, **extra: Any) -> dict[str, Any]:
        server: dict[str, Any] = {"gracefulTimeout": "1s", **extra}
        if self.engine != "hypercorn":
            server["engine"] = self.engine
        return server

    def fresh_dir(self, name: str) -> Path:
        self.runs += 1
        path = self.workdir / f"{self.runs:02d}-{name}"
        path.mkdir()
        return path

    def gateway(
        self,
        name: str,
        subscriptions: list[dict[str, Any]] | None = None,
        workdir: Path | None = None,
    ) -> h.Gateway:
        rest: dict[str, Any] = {
            "egress": {"allowedNetworks": ["127.0.0.1/32"]},
            "topics": [{"name": "bench"}],
            "subscriptions": subscriptions or [],
        }
        return h.Gateway(workdir or self.fresh_dir(name), self.server(), rest, name)

    def started(self, gateway: h.Gateway) -> float:
        gateway.start()
        try:
            seconds = gateway.ready()
        except RuntimeError as error:
            if self.engine != "hypercorn" and "engine" in str(error):
                raise Skip(f"the gateway refuses server.engine {self.engine!r}: {error}") from None
            raise
        served_by = gateway.served_by()
        if self.engine not in served_by:
            gateway.stop()
            raise Skip(
                f"asked for server.engine {self.engine!r} but the gateway answers as "
                f"{served_by!r}: the engine option is not wired in yet"
            )
        return seconds

    def subscription(self, url: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": "push",
            "topic": "bench",
            "destination": {"http": {"url": url}},
            "maxConcurrency": CONCURRENCY,
            "ackDeadline": "300s",
            "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "1s"},
            **extra,
        }

    def prefix(self, name: str) -> str:
        """A fresh id prefix per load: a repeated id would be a duplicate, cheaper to take."""
        self.loads += 1
        return f"{name}-{self.tag}-{self.loads}"

    def publish_load(
        self, gateway: h.Gateway, mode: str, count: int, batch: int = 1, seconds: float = 30.0
    ) -> dict[str, Any]:
        """wrk against the gateway; throughput, latency, RSS, commits per 1,000 events."""
        before = gateway.metrics()
        cpu = gateway.cpu()
        result = h.wrk(
            gateway.url + "/topics/bench/events",
            mode=mode,
            count=count,
            seconds=seconds,
            connections=CONCURRENCY,
            batch=batch,
            prefix=self.prefix(mode),
        )
        cpu = gateway.cpu() - cpu
        after = gateway.metrics()
        commits = h.fsyncs(after) - h.fsyncs(before)
        stored = after.get(PUBLISHED, 0) - before.get(PUBLISHED, 0)
        return {
            **wrk_figures(result),
            "stored_events": int(stored),  # wrk's answered events, plus any cut off at the end
            "commits": int(commits),
            "commits_per_1000_events": 1000 * commits / max(1, stored),
            "server_cpu_share": cpu / result.seconds,
            "server_side": server_side(before, after),
            "rss_mib": gateway.memory(),
        }

    # --- scenarios --------------------------------------------------------------------------

    def publish_single(self) -> dict[str, Any]:
        gateway = self.gateway("publish-single")
        try:
            self.started(gateway)
            self.publish_load(gateway, "single", 2000, seconds=10)  # warm-up
            return {
                "count": self.options.single_count,
                "concurrency": CONCURRENCY,
                **median_round(
                    [
                        self.publish_load(gateway, "single", self.options.single_count)
                        for _ in range(self.options.rounds)
                    ]
                ),
            }
        finally:
            gateway.stop()

    def publish_batch(self) -> dict[str, Any]:
        gateway = self.gateway("publish-batch")
        try:
            self.started(gateway)
            self.publish_load(gateway, "batch", 100, batch=100, seconds=10)  # warm-up
            return {
                "requests": self.options.batch_requests,
                "batch": 100,
                "concurrency": CONCURRENCY,
                **median_round(
                    [
                        self.publish_load(gateway, "batch", self.options.batch_requests, batch=100)
                        for _ in range(self.options.rounds)
                    ]
                ),
            }
        finally:
            gateway.stop()

    def ceiling(self) -> dict[str, Any]:
        """bench/ceiling.py: parse, answer 202, store nothing; same config, same engine."""
        gateway = self.gateway("ceiling")  # only for its YAML (port, limits, engine)
        app = h.Process(
            [
                h.PYTHON,
                str(h.BENCH / "ceiling.py"),
                "--config",
                str(gateway.config_path),
                "--engine",
                self.engine,
            ],
            gateway.log_path,
        )
        app.start()
        try:
            app.wait_http(gateway.url + "/readyz", timeout=30)
            url = gateway.url + "/topics/bench/events"
            h.wrk(url, mode="single", count=2000, seconds=10, prefix="warm")
            figures = {}
            for mode, batch, count in (
                ("single", 1, self.options.single_count),
                ("batch", 100, self.options.batch_requests),
            ):
                rounds = []
                for _ in range(self.options.rounds):
                    cpu = app.cpu()
                    result = h.wrk(
                        url,
                        mode=mode,
                        count=count,
                        seconds=30,
                        connections=CONCURRENCY,
                        batch=batch,
                        prefix=self.prefix("ceiling"),
                    )
                    rounds.append(
                        {
                            **wrk_figures(result),
                            "server_cpu_share": (app.cpu() - cpu) / result.seconds,
                            "rss_mib": app.memory(),
                        }
                    )
                figures[mode] = median_round(rounds)
            figures["one_at_a_time"] = one_at_a_time(url, self.options.e2e_samples, 0.015)
            return {"engine": self.engine, "concurrency": CONCURRENCY, **figures}
        finally:
            app.stop()

    def nats(self) -> dict[str, Any]:
        """NATS JetStream (Debian's nats-server, file storage, dedup by Nats-Msg-Id), published
        to by nats-py with the same concurrency; acked publishes per second."""
        server = shutil.which("nats-server")
        if server is None:
            raise Skip("nats-server is not installed: apt-get install -y nats-server")
        workdir = self.fresh_dir("nats")
        port, monitor = h.free_port(), h.free_port()
        process = h.Process(
            [
                server,
                "-a",
                "127.0.0.1",
                "-p",
                str(port),
                "-m",
                str(monitor),
                "-js",
                "-sd",
                str(workdir / "jetstream"),
            ],
            workdir / "nats.log",
        )
        process.start()
        try:
            process.wait_http(f"http://127.0.0.1:{monitor}/healthz", timeout=30)
            version = subprocess.run(
                [server, "--version"], capture_output=True, text=True, check=False
            ).stdout.strip()
            rounds = []
            for _ in range(self.options.rounds):
                cpu = process.cpu()
                result = h.run_child(
                    [
                        h.PYTHON,
                        str(h.BENCH / "loads.py"),
                        "nats",
                        f"nats://127.0.0.1:{port}",
                        str(self.options.nats_count),
                        str(CONCURRENCY),
                        "30",
                        self.prefix("nats"),
                    ],
                    timeout=60,
                )
                server_cpu = process.cpu() - cpu
                if result.returncode != 0:
                    raise RuntimeError(f"nats load failed: {result.stderr[-2000:]}")
                data = h.last_json(result.stdout)
                rounds.append(
                    {
                        "events_per_s": data["rate"],
                        "acked": data["ok"],
                        "failed": data["failed"],
                        "stream_messages": data["stream_messages"],
                        "seconds": data["seconds"],
                        "p50_ms": data["p50_ms"],
                        "p99_ms": data["p99_ms"],
                        "generator_cpu_share": data["cpu_seconds"] / data["seconds"],
                        "server_cpu_share": server_cpu / data["seconds"],
                        "rss_mib": process.memory(),
                    }
                )
            median = median_round(rounds)
            return {
                "server": version,
                "storage": "file",
                "count": self.options.nats_count,
                "concurrency": CONCURRENCY,
                "rate": median["events_per_s"],
                **median,
            }
        finally:
            process.stop()

    def seed(self, gateway: h.Gateway, events: int, name: str) -> dict[str, Any]:
        """Publish exactly `events` in batches of 1,000 over 8 connections (bench/loads.py)."""
        result = h.run_child(
            [
                h.PYTHON,
                str(h.BENCH / "loads.py"),
                "seed",
                gateway.url + "/topics/bench/events",
                str(events),
                "8",
                str(self.options.seed_seconds),
                self.prefix(name),
            ],
            timeout=self.options.seed_seconds + 30,
        )
        data = h.last_json(result.stdout) if result.returncode == 0 else {}
        if data.get("events") != events:
            raise RuntimeError(f"seeding failed: {data} {result.stderr[-2000:]}")
        return {
            "events": events,
            "seconds": data["seconds"],
            "events_per_s": events / data["seconds"],
            "generator_cpu_share": data["cpu_seconds"] / data["seconds"],
        }

    def pending_then_restart(
        self, name: str, events: int, sink: h.Sink
    ) -> tuple[h.Gateway, dict[str, Any]]:
        """Events already stored: `seed_pending`, then `restart_pushing` to the sink. Returns
        the restarted gateway, ready, and seeding and start-up figures."""
        workdir, seeding = self.seed_pending(name, events)
        gateway, startup = self.restart_pushing(name, workdir, sink)
        return gateway, {**seeding, **startup}

    def seed_pending(self, name: str, events: int) -> tuple[Path, dict[str, Any]]:
        """Publish `events` while the subscription points at a port that never answers (its
        pushes hang, nothing fails), then stop the gateway (in-flight pushes are abandoned and
        stay pending, attempts 0). Returns the data directory and seeding figures."""
        workdir = self.fresh_dir(name)
        hole = h.BlackHole()
        seeding = self.gateway(name + "-seed", [self.subscription(hole.url)], workdir)
        try:
            self.started(seeding)
            seeded = self.seed(seeding, events, name)
            seeded_memory = seeding.memory()
            pending = seeding.metrics().get('cegateway_deliveries_pending{subscription="push"}')
        finally:
            seeding.stop()
            hole.close()
        return workdir, {
            "seeded": seeded,
            "pending_before_restart": pending,
            "rss_mib_seeding": seeded_memory,
        }

    def restart_pushing(
        self, name: str, workdir: Path, sink: h.Sink
    ) -> tuple[h.Gateway, dict[str, Any]]:
        """Start a gateway on `workdir`'s stored deliveries with the subscription pointed at
        the sink; returns it, ready, and its start-up time."""
        gateway = self.gateway(name, [self.subscription(sink.url)], workdir)
        startup = self.started(gateway)
        return gateway, {"startup_seconds": startup, "ready_at": time.monotonic()}

    def push(self) -> dict[str, Any]:
        """Stored events pushed to a subscriber answering 200 at once, against bare aiohttp and
        httpx loops posting the same events to the same subscriber with the same concurrency.
        The gateway and the bare aiohttp loop take turns, `--rounds` times: the ratio is the
        median of the rounds' ratios, each taken within a minute, so a slow spell of this
        shared machine weighs on one round, not on one side."""
        workdir = self.fresh_dir("push-sink")
        sink = h.Sink(workdir).up()
        try:
            rounds = []
            for index in range(self.options.rounds):
                gateway_figures = self.push_through_gateway(f"push-{index + 1}", sink)
                events = int(gateway_figures["pending"])
                bare = self.push_bare(sink, "aiohttp", events, self.options.push_seconds)
                rounds.append((gateway_figures, bare))
            httpx = self.push_bare(sink, "httpx", events, 15.0)  # for the record: once
            alone = h.wrk(
                sink.url,
                mode="push",
                count=self.options.sink_count,
                seconds=30,
                connections=CONCURRENCY,
                prefix="sink",
                expect=200,
            )
            sink_memory = sink.memory()
        finally:
            sink.stop()
        ratios = [gateway["events_per_s"] / bare["events_per_s"] for gateway, bare in rounds]
        median = sorted(range(len(rounds)), key=lambda index: ratios[index])[len(rounds) // 2]
        gateway_figures, bare = rounds[median]
        return {
            "events": events,
            "concurrency": CONCURRENCY,
            "method": "stored while the destination hung; gateway restarted pointing at the "
            "sink; gateway and bare aiohttp loop alternating, the round with the median ratio",
            "ratio_median": ratios[median],
            "rounds": [
                {
                    "gateway_events_per_s": gateway["events_per_s"],
                    "bare_aiohttp_events_per_s": bare_round["events_per_s"],
                    "ratio": ratio,
                }
                for (gateway, bare_round), ratio in zip(rounds, ratios, strict=True)
            ],
            "gateway": gateway_figures,
            "bare": {"aiohttp": bare, "httpx": httpx},
            "sink_alone": {**wrk_figures(alone), "rss_mib": sink_memory},
        }

    def push_through_gateway(self, name: str, sink: h.Sink) -> dict[str, Any]:
        """One gateway round of `push`: its figures, all pushes arrived."""
        gateway, start = self.pending_then_restart(name, self.options.push_events, sink)
        events = int(start["pending_before_restart"])
        try:
            cpu = gateway.cpu()
            before = gateway.metrics()
            sink.wait_count(events // 2, timeout=self.options.push_seconds)
            midway = gateway.metrics()  # the adaptive limit and pushes in flight, mid-run
            arrived = sink.wait_count(events, timeout=self.options.push_seconds)
            cpu = gateway.cpu() - cpu
            after = gateway.metrics()
            memory = gateway.memory()
        finally:
            gateway.stop()
        if not arrived:
            raise RuntimeError(f"only {sink.count()} of {events} pushes arrived")
        times = sink.get("times")
        sink.get("reset")
        return {
            **arrival_rates(times, start["ready_at"]),
            "cpu_seconds_per_1000": 1000 * cpu / events,
            "server_cpu_share": cpu / (times[-1] - start["ready_at"]),
            "midway": {
                key.split("{")[0]: value
                for key, value in midway.items()
                if key.startswith(
                    ("cegateway_destination_concurrency", "cegateway_deliveries_in_flight")
                )
            },
            "commits_per_1000_deliveries": 1000 * (h.fsyncs(after) - h.fsyncs(before)) / events,
            "server_side": server_side(before, after),
            "rss_mib": memory,
            "startup_seconds": start["startup_seconds"],
            "seeded": start["seeded"],
            "pending": events,
        }

    def push_bare(self, sink: h.Sink, client: str, events: int, seconds: float) -> dict[str, Any]:
        """A bare `client` loop (aiohttp or httpx) posting `events` pushes to the sink."""
        result = h.run_child(
            [
                h.PYTHON,
                str(h.BENCH / "loads.py"),
                f"push-{client}",
                sink.url,
                str(events),
                str(CONCURRENCY),
                str(seconds),
                self.prefix(client),
            ],
            timeout=seconds + 30,
        )
        data = h.last_json(result.stdout)
        times = sink.get("times")
        sink.get("reset")
        return {
            **arrival_rates(times, None),
            "ok": data["ok"],
            "failed": data["failed"],
            "client_rate": data["rate"],
            "p50_ms": data["p50_ms"],
            "p99_ms": data["p99_ms"],
            "generator_cpu_share": data["cpu_seconds"] / data["seconds"],
        }

    def e2e(self) -> dict[str, Any]:
        """Publish-to-push latency: idle (one event at a time) and at half the maximum rate."""
        workdir = self.fresh_dir("e2e")
        sink = h.Sink(workdir).up()
        gateway = self.gateway("e2e", [self.subscription(sink.url)], workdir)
        try:
            self.started(gateway)
            idle = self.idle_latency(gateway, sink, gap=0.015)
            idle["back_to_back"] = self.idle_latency(gateway, sink, gap=0.0)
            # The maximum: single publishes from wrk with the subscription pushing meanwhile;
            # the rate both keep up with is the smaller of accepted/s and pushed/s.
            sink.get("reset")
            started = time.monotonic()
            probe = h.wrk(
                gateway.url + "/topics/bench/events",
                mode="single",
                count=self.options.e2e_probe,
                seconds=30,
                prefix=self.prefix("probe"),
            )
            ended = time.monotonic()
            sink.wait_count(probe.ok, timeout=60)
            times = sink.get("times")
            pushed = sum(1 for t in times if started <= t <= ended)
            maximum = min(probe.rate, pushed / (ended - started))
            half = self.paced_latency(gateway, sink, maximum / 2)
        finally:
            gateway.stop()
            sink.stop()
        return {
            "idle": idle,
            "max_rate": {
                "publish_rate": probe.rate,
                "push_rate_meanwhile": pushed / (ended - started),
                "max": maximum,
            },
            "half_rate": half,
        }

    def idle_latency(self, gateway: h.Gateway, sink: h.Sink, gap: float) -> dict[str, Any]:
        """One publish at a time, `gap` seconds apart (0: each right after the last 202)."""
        samples = self.options.e2e_samples
        before = gateway.metrics()
        prefix = self.prefix("idle")
        sink.get("track", prefix=prefix)
        sent: dict[str, float] = {}
        answered: dict[str, float] = {}
        with httpx.Client(base_url=gateway.url) as client:
            for index in range(samples + 20):
                event_id = f"{prefix}-{index}"
                headers = {
                    "ce-specversion": "1.0",
                    "ce-id": event_id,
                    "ce-source": "/bench",
                    "ce-type": "bench.event",
                    "content-type": "application/json",
                }
                sent[event_id] = time.monotonic()
                response = client.post("/topics/bench/events", headers=headers, content=b'{"n":1}')
                answered[event_id] = time.monotonic()
                assert response.status_code == 202, response.text
                if gap:
                    time.sleep(gap)  # the previous push is long done
        sink.wait_count(samples + 20, timeout=30)
        arrivals = sink.get("ids", prefix=prefix)
        measured = list(sent)[20:]  # the first 20 warm up connections
        latencies = [(arrivals[key] - sent[key]) * 1000 for key in measured if key in arrivals]
        publish = [(answered[key] - sent[key]) * 1000 for key in measured]
        push = [(arrivals[key] - answered[key]) * 1000 for key in measured if key in arrivals]
        return {
            **latency_figures(latencies, samples),
            "publish_p50_ms": h.percentile(publish, 0.5),
            "publish_p99_ms": h.percentile(publish, 0.99),
            "after_202_p50_ms": h.percentile(push, 0.5),
            "after_202_p99_ms": h.percentile(push, 0.99),
            "gap_ms": gap * 1000,
            "server_side": server_side(before, gateway.metrics()),
        }

    def paced_latency(self, gateway: h.Gateway, sink: h.Sink, rate: float) -> dict[str, Any]:
        seconds = self.options.e2e_seconds
        count = int(rate * seconds)
        prefix = self.prefix("half")
        sink.get("reset")
        sink.get("track", prefix=prefix)
        cpu = gateway.cpu()
        result = h.run_child(
            [
                h.PYTHON,
                str(h.BENCH / "loads.py"),
                "paced",
                gateway.url + "/topics/bench/events",
                f"{rate:.1f}",
                str(count),
                str(CONCURRENCY),
                str(seconds),
                prefix,
            ],
            timeout=seconds + 60,
        )
        data = h.last_json(result.stdout)
        sink.wait_count(len(data["sent"]), timeout=60)
        cpu = gateway.cpu() - cpu
        arrivals = sink.get("ids", prefix=prefix)
        latencies = [
            (arrivals[key] - sent) * 1000 for key, sent in data["sent"].items() if key in arrivals
        ]
        return {
            "target_rate": rate,
            "achieved_rate": data["rate"],
            "late_sends": data["late"],
            "statuses": data["statuses"],
            "publish_p50_ms": data["publish_p50_ms"],
            "publish_p99_ms": data["publish_p99_ms"],
            "generator_cpu_share": data["cpu_seconds"] / data["seconds"],
            "server_cpu_share": cpu / data["seconds"],
            **latency_figures(latencies, len(data["sent"])),
        }

    def backlog(self) -> dict[str, Any]:
        """Per-delivery cost, RSS and start-up time with 1k, 100k and 1M deliveries pending;
        the median run of BACKLOG_REPEATS by CPU per delivery, for every size."""
        figures: dict[str, Any] = {"sizes": {}}
        for size in self.options.backlog_sizes:
            runs = self.backlog_runs(size, BACKLOG_REPEATS)
            runs.sort(key=lambda run: run["cpu_ms_per_delivery"])
            figures["sizes"][str(size)] = {
                **runs[len(runs) // 2],
                "repeats": len(runs),
                "cpu_ms_per_delivery_runs": [run["cpu_ms_per_delivery"] for run in runs],
            }
        return figures

    def backlog_runs(self, size: int, repeats: int) -> list[dict[str, Any]]:
        """A backlog of at least 100 times what one run pushes is seeded once and each run
        restarts a gateway on it (each run leaves it 1 % smaller at most); a smaller one is
        seeded afresh for every run."""
        pushes = BACKLOG_LONG_WINDOW[1] if size >= 2 * BACKLOG_LONG_WINDOW[1] else size
        reuse = size >= 100 * pushes
        runs: list[dict[str, Any]] = []
        seeded: tuple[Path, dict[str, Any]] | None = None
        for _ in range(repeats):
            if seeded is None or not reuse:
                seeded = self.seed_pending(f"backlog-{size}", size)
            runs.append(self.backlog_once(size, *seeded))
        return runs

    def backlog_once(self, size: int, workdir: Path, seeding: dict[str, Any]) -> dict[str, Any]:
        sink = h.Sink(self.fresh_dir(f"backlog-{size}-sink")).up()
        window, long_window = BACKLOG_WINDOW, BACKLOG_LONG_WINDOW
        try:
            gateway, start = self.restart_pushing(f"backlog-{size}", workdir, sink)
            try:
                memory_ready = gateway.memory()
                # CPU per delivery over the pushes that arrived between two paired samples
                # (pushes start at readiness, before anything here can sample).
                first = sink.cpu_at_count(gateway, window[0], timeout=120)
                last = sink.cpu_at_count(gateway, window[1], timeout=120)
                memory_window = gateway.memory()
                long_figures: dict[str, Any] = {}
                if size >= long_window[1] * 2:
                    long_last = sink.cpu_at_count(gateway, long_window[1], timeout=120)
                    times = sink.get("times", start=long_window[0], stop=long_window[1])
                    spent = times[-1] - times[0]
                    long_figures = {
                        "per_delivery_ms_1k_10k": 1000 * spent / (len(times) - 1),
                        "cpu_ms_per_delivery_10k": per_delivery_ms(last, long_last),
                        "rss_mib_after_10k": gateway.memory(),
                    }
                pending = gateway.metrics().get('cegateway_deliveries_pending{subscription="push"}')
            finally:
                gateway.stop()
            times = sink.get("times", start=window[0], stop=window[1])
        finally:
            sink.stop()
        return {
            "pending": size,
            "seeded": seeding["seeded"],
            "startup_seconds": start["startup_seconds"],
            "per_delivery_ms": 1000 * (times[-1] - times[0]) / (len(times) - 1),
            "cpu_ms_per_delivery": per_delivery_ms(first, last),
            "cpu_window_deliveries": [first[1], last[1]],
            "rss_mib_seeding": seeding["rss_mib_seeding"],
            "rss_mib_ready": memory_ready,
            "rss_mib_after_1k": memory_window,
            "pending_at_end": pending,
            **long_figures,
        }

    def profile(self) -> dict[str, Any]:
        """py-spy on the gateway during publish-single and during push: top of profile."""
        spy = shutil.which("py-spy") or str(Path(h.PYTHON).with_name("py-spy"))
        if not Path(spy).exists():
            raise Skip("py-spy is not installed (pip install py-spy; it is in the bench group)")
        seconds = self.options.profile_seconds
        figures: dict[str, Any] = {}
        gateway = self.gateway("profile-publish")
        try:
            figures["publish-single"] = self.profile_publishing(spy, gateway, "publish")
        finally:
            gateway.stop()
        workdir = self.fresh_dir("profile-mixed-sink")
        sink = h.Sink(workdir).up()
        gateway = self.gateway("profile-mixed", [self.subscription(sink.url)], workdir)
        try:
            figures["publish-single with push"] = self.profile_publishing(spy, gateway, "mixed")
        finally:
            gateway.stop()
            sink.stop()
        workdir = self.fresh_dir("profile-push-sink")
        sink = h.Sink(workdir).up()
        try:
            gateway, _ = self.pending_then_restart(
                "profile-push", self.options.profile_push_events, sink
            )
            try:
                recorder = self.py_spy(spy, gateway.pid, seconds, "push")
                figures["push"] = self.py_spy_summary(recorder)
            finally:
                gateway.stop()
        finally:
            sink.stop()
        return figures

    def profile_publishing(self, spy: str, gateway: Any, name: str) -> dict[str, Any]:
        """py-spy on a started gateway while wrk publishes single events to it."""
        seconds = self.options.profile_seconds
        self.started(gateway)
        recorder = self.py_spy(spy, gateway.pid, seconds, name)
        h.wrk(
            gateway.url + "/topics/bench/events",
            mode="single",
            count=10**6,
            seconds=seconds + 2,
            prefix=self.prefix("prof"),
        )
        return self.py_spy_summary(recorder)

    def py_spy(self, spy: str, pid: int, seconds: float, name: str) -> tuple[Any, Path]:
        output = self.workdir / f"py-spy-{name}.txt"
        process = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return process, output

    def py_spy_summary(self, recorder: tuple[Any, Path]) -> dict[str, Any]:
        process, output = recorder
        process.wait(60)
        return summarize_profile(output.read_text())


# --- figures ----------------------------------------------------------------------------------


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median throughput, and every round's headline figures (the spread)."""
    ordered = sorted(rounds, key=lambda figures: figures["events_per_s"])
    keys = ("events_per_s", "p50_ms", "p99_ms", "commits_per_1000_events", "server_cpu_share")
    return {
        **ordered[len(ordered) // 2],
        "rounds": [{key: r[key] for key in keys if key in r} for r in rounds],
    }


def wrk_figures(result: h.WrkResult) -> dict[str, Any]:
    return {
        "requests_ok": result.ok,
        "requests_failed": result.requests - result.ok,
        "errors": {k: v for k, v in result.errors.items() if v},
        "events": result.events,
        "seconds": result.seconds,
        "requests_per_s": result.rate,
        "events_per_s": result.event_rate,
        "p50_ms": result.p50_ms,
        "p99_ms": result.p99_ms,
        "generator_cpu_share": result.cpu_share,
    }


def one_at_a_time(url: str, samples: int, gap: float) -> dict[str, Any]:
    """Single publishes one at a time, `gap` apart, from the client the e2e scenario uses."""
    latencies = []
    with httpx.Client() as client:
        for index in range(samples + 20):
            headers = {
                "ce-specversion": "1.0",
                "ce-id": f"one-{index}",
                "ce-source": "/bench",
                "ce-type": "bench.event",
                "content-type": "application/json",
            }
            started = time.monotonic()
            response = client.post(url, headers=headers, content=b'{"n":1}')
            latencies.append((time.monotonic() - started) * 1000)
            assert response.status_code == 202, response.text
            time.sleep(gap)
    latencies = latencies[20:]
    return {
        "gap_ms": gap * 1000,
        "p50_ms": h.percentile(latencies, 0.5),
        "p99_ms": h.percentile(latencies, 0.99),
    }


def server_side(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """What the gateway's own histograms saw between two scrapes: mean publish time, mean
    commit time (fsync included) and mean operations per commit."""

    def mean(name: str) -> float | None:
        count = after.get(f"{name}_count", 0) - before.get(f"{name}_count", 0)
        total = after.get(f"{name}_sum", 0) - before.get(f"{name}_sum", 0)
        return total / count if count else None

    publish = mean("cegateway_publish_duration_seconds")
    commit = mean("cegateway_store_commit_duration_seconds")
    return {
        "publish_mean_ms": None if publish is None else publish * 1000,
        "commit_mean_ms": None if commit is None else commit * 1000,
        "operations_per_commit": mean("cegateway_store_commit_batch_size"),
    }


def arrival_rates(times: list[float], since: float | None) -> dict[str, Any]:
    """Push rate seen by the subscriber: over all arrivals, and over the last 90 %."""
    count = len(times)
    figures: dict[str, Any] = {"arrived": count}
    if count < 2:
        return figures
    figures["events_per_s"] = (count - 1) / (times[-1] - times[0])
    tenth = count // 10
    figures["steady_events_per_s"] = (count - 1 - tenth) / (times[-1] - times[tenth])
    if since is not None:
        figures["all_arrived_after_ready_s"] = times[-1] - since
    return figures


def per_delivery_ms(first: tuple[float, int], last: tuple[float, int]) -> float:
    """CPU milliseconds per delivery between two (CPU seconds, arrivals) samples."""
    return 1000 * (last[0] - first[0]) / max(1, last[1] - first[1])


def latency_figures(latencies: list[float], expected: int) -> dict[str, Any]:
    return {
        "samples": len(latencies),
        "missing": expected - len(latencies),
        "p50_ms": h.percentile(latencies, 0.50),
        "p99_ms": h.percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else None,
    }


# Frames every sample of a thread passes through: they say nothing about where time goes.
PLUMBING = {
    "<module>",
    "main",
    "_serve",
    "run",
    "Runner.run",
    "BaseEventLoop.run_forever",
    "BaseEventLoop.run_until_complete",
    "BaseEventLoop._run_once",
    "Handle._run",
    "Thread.run",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
}


def summarize_profile(raw: str, top: int = 12) -> dict[str, Any]:
    """py-spy's raw (collapsed) stacks: the functions with most samples on top of the stack
    (self) and anywhere in it (inclusive)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [short_frame(frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if frame]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return {"samples": 0}
    ours = [
        (name, count)
        for name, count in inclusive.most_common()
        if "(gateway/" in name and name.split(" (")[0] not in PLUMBING
    ]
    return {
        "samples": total,
        "gateway_inclusive": [(name, round(100 * count / total, 1)) for name, count in ours[:top]],
        "self": [(name, round(100 * count / total, 1)) for name, count in own.most_common(top)],
        "inclusive": [
            (name, round(100 * count / total, 1))
            for name, count in inclusive.most_common(top * 4)
            if name.split(" (")[0] not in PLUMBING
        ][:top],
    }


def short_frame(frame: str) -> str:
    """`function (path/to/module.py:123)` -> `function (module.py)`; idle frames dropped."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = path.split("/")
    if "site-packages" in parts:
        module = "/".join(parts[parts.index("site-packages") + 1 :][:2])
    elif "gateway" in parts:
        module = "/".join(parts[parts.index("gateway") :])
    else:
        module = parts[-1]
    return f"{name} ({module})"


# --- targets ----------------------------------------------------------------------------------


def targets(results: dict[str, Any], engine: str) -> list[dict[str, Any]]:
    """Issue 9's targets on the figures at hand: value, bound, met or not, margin."""
    run = results.get(engine, {})
    checks: list[dict[str, Any]] = []

    def check(name: str, value: Callable[[], float], bound: float, higher_is_better: bool) -> None:
        try:
            measured = value()
        except (KeyError, TypeError, ZeroDivisionError):
            return
        met = measured >= bound if higher_is_better else measured <= bound
        margin = measured / bound if bound else float("inf")
        checks.append(
            {
                "target": name,
                "value": measured,
                "bound": bound,
                "higher_is_better": higher_is_better,
                "met": met,
                "ratio_to_bound": margin,
            }
        )

    def get(*path: str) -> Any:
        node: Any = run
        for key in path:
            node = node[key]
        return node

    check(
        "publish-single / framework ceiling (x)",
        lambda: get("publish-single", "events_per_s") / get("ceiling", "single", "events_per_s"),
        0.8,
        True,
    )
    check(
        "publish-single commits per 1,000 events",
        lambda: get("publish-single", "commits_per_1000_events"),
        20,
        False,
    )
    check(
        "publish-batch / NATS JetStream acked publishes (x)",
        lambda: get("publish-batch", "events_per_s") / get("nats", "events_per_s"),
        1.0,
        True,
    )
    check(
        "push / bare aiohttp loop (x)",
        lambda: get("push", "ratio_median"),
        0.7,
        True,
    )
    sizes = run.get("backlog", {}).get("sizes", {})
    largest = max((int(size) for size in sizes), default=0)
    if largest and "1000" in sizes:
        label = f"{largest // 1000}k" if largest < 10**6 else f"{largest // 10**6}M"
        check(
            f"per-delivery CPU at {label} / at 1k pending (x)",
            lambda: (
                sizes[str(largest)]["cpu_ms_per_delivery"] / sizes["1000"]["cpu_ms_per_delivery"]
            ),
            1.2,
            False,
        )
        check(
            f"per-delivery wall time at {label} / at 1k pending (x)",
            lambda: sizes[str(largest)]["per_delivery_ms"] / sizes["1000"]["per_delivery_ms"],
            1.2,
            False,
        )
        check(
            f"RSS with {label} pending (MiB, highest of seeding, start, first 10k pushes)",
            lambda: max(
                sizes[str(largest)][key]["VmRSS"]
                for key in (
                    "rss_mib_seeding",
                    "rss_mib_ready",
                    "rss_mib_after_1k",
                    "rss_mib_after_10k",
                )
                if key in sizes[str(largest)]
            ),
            300,
            False,
        )
        check(
            f"start-up with {label} pending (s)",
            lambda: sizes[str(largest)]["startup_seconds"],
            5.0,
            False,
        )
    check("idle publish-to-push p50 (ms)", lambda: get("e2e", "idle", "p50_ms"), 5.0, False)
    return checks


# --- main -------------------------------------------------------------------------------------


def load_results() -> dict[str, Any]:
    if RESULTS.exists():
        loaded: dict[str, Any] = json.loads(RESULTS.read_text())
        return loaded
    return {}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", action="append", choices=SCENARIOS, help="default: all")
    parser.add_argument("--engine", default="hypercorn", choices=["hypercorn", "uvicorn"])
    parser.add_argument(
        "--rounds", type=int, default=3, help="publish, ceiling and NATS loads: median of N"
    )
    parser.add_argument("--single-count", type=int, default=20_000)
    parser.add_argument("--batch-requests", type=int, default=1_000, help="of 100 events each")
    parser.add_argument("--nats-count", type=int, default=20_000)
    parser.add_argument("--push-events", type=int, default=20_000)
    parser.add_argument("--push-seconds", type=float, default=60.0)
    parser.add_argument("--sink-count", type=int, default=50_000)
    parser.add_argument("--e2e-samples", type=int, default=200)
    parser.add_argument("--e2e-probe", type=int, default=10_000)
    parser.add_argument("--e2e-seconds", type=float, default=10.0)
    parser.add_argument(
        "--backlog-sizes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[1_000, 100_000, 1_000_000],
    )
    parser.add_argument("--seed-seconds", type=float, default=240.0)
    parser.add_argument("--profile-seconds", type=float, default=6.0)
    parser.add_argument("--profile-push-events", type=int, default=40_000)
    parser.add_argument(
        "--gateway-tree",
        default="worktree",
        help="worktree (default: the gateway/ package as it is on disk), or a git revision such "
        "as HEAD to bench that commit's gateway/ (exported read-only with git archive), e.g. "
        "while others are editing the work tree",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--no-chart", action="store_true")
    options = parser.parse_args()
    h.ensure_wrk()

    results = load_results()
    run = results.setdefault(options.engine, {})
    workdir = Path(tempfile.mkdtemp(prefix="cegw-bench-"))
    bench = Bench(options, workdir)
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "publish-single": bench.publish_single,
        "ceiling": bench.ceiling,
        "publish-batch": bench.publish_batch,
        "nats": bench.nats,
        "push": bench.push,
        "e2e": bench.e2e,
        "backlog": bench.backlog,
        "profile": bench.profile,
    }
    chosen = options.scenario or list(SCENARIOS)
    machine = {**h.machine(), "gateway": gateway_source(options.gateway_tree, workdir)}
    h.log(f"machine: {machine}; engine {options.engine}; work dir {workdir}")
    failures = 0
    try:
        for name in chosen:
            load_before = h.load_average()
            h.log(f"== {name} (load average {load_before})")
            started = time.perf_counter()
            try:
                figures = scenarios[name]()
            except Skip as skip:
                h.log(f"   skipped: {skip}")
                if name in ("publish-single", "ceiling") or options.engine != "hypercorn":
                    # The engine itself is refused or not wired in: nothing else can run.
                    print(f"SKIPPED engine {options.engine}: {skip}")
                    return 0
                continue
            except Exception as error:
                failures += 1
                h.log(f"   FAILED: {error.__class__.__name__}: {error}")
                continue
            figures["load_average_before"] = load_before
            figures["load_average_after"] = h.load_average()
            figures["when"] = datetime.datetime.now().isoformat(timespec="seconds")
            figures["machine"] = machine
            figures["wall_seconds"] = time.perf_counter() - started
            run[name] = figures
            RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
            h.log(f"   {summary_line(name, figures)} ({figures['wall_seconds']:.0f} s)")
    finally:
        if options.keep:
            h.log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print_targets(targets(results, options.engine))
    if not options.no_chart:
        import chart

        path = (
            CHART if options.engine == "hypercorn" else CHART.with_stem(f"results-{options.engine}")
        )
        chart.draw(results, options.engine, path)
        h.log(f"chart: {path}")
    return 1 if failures else 0


def gateway_source(tree: str, workdir: Path) -> dict[str, Any]:
    """Which gateway/ is benched: the work tree (with its commit and whether gateway/ differs
    from it), or a revision exported with git archive and put first on PYTHONPATH."""

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=h.ROOT, capture_output=True, text=True, check=False
        )
        return done.stdout.strip()

    if tree == "worktree":
        return {
            "tree": "worktree",
            "commit": git("rev-parse", "--short", "HEAD"),
            "gateway_modified": bool(git("status", "--porcelain", "--", "gateway")),
        }
    source = workdir / "gateway-src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "archive", tree, "gateway"], cwd=h.ROOT, capture_output=True, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, check=True)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(source), os.environ.get("PYTHONPATH", "")) if part
    )
    return {"tree": tree, "commit": git("rev-parse", "--short", tree), "gateway_modified": False}


def summary_line(name: str, figures: dict[str, Any]) -> str:
    if name in ("publish-single", "publish-batch"):
        return (
            f"{figures['events_per_s']:,.0f} events/s, p50 {figures['p50_ms']:.1f} ms, p99 "
            f"{figures['p99_ms']:.1f} ms, {figures['commits_per_1000_events']:.1f} commits per "
            f"1,000 events, RSS {figures['rss_mib']['VmRSS']:.0f} MiB, wrk CPU "
            f"{figures['generator_cpu_share']:.0%}"
        )
    if name == "ceiling":
        single, batch = figures["single"], figures["batch"]
        return (
            f"single {single['events_per_s']:,.0f} events/s (p50 {single['p50_ms']:.1f} ms), "
            f"batch {batch['events_per_s']:,.0f} events/s"
        )
    if name == "nats":
        return (
            f"{figures['rate']:,.0f} acked publishes/s, p50 {figures['p50_ms']:.1f} ms, "
            f"nats-py CPU {figures['generator_cpu_share']:.0%}"
        )
    if name == "push":
        gateway, bare = figures["gateway"], figures["bare"]
        ratios = ", ".join(f"{one['ratio']:.3f}" for one in figures["rounds"])
        return (
            f"ratios {ratios}; median round: gateway {gateway['events_per_s']:,.0f}/s, "
            f"bare aiohttp {bare['aiohttp']['events_per_s']:,.0f}/s, bare httpx "
            f"{bare['httpx'].get('events_per_s', 0):,.0f}/s, sink alone "
            f"{figures['sink_alone']['requests_per_s']:,.0f}/s"
        )
    if name == "e2e":
        idle, half = figures["idle"], figures["half_rate"]
        return (
            f"idle p50 {idle['p50_ms']:.2f} ms p99 {idle['p99_ms']:.2f} ms; at "
            f"{half['target_rate']:,.0f}/s p50 {half['p50_ms']:.2f} ms p99 {half['p99_ms']:.2f} ms"
        )
    if name == "backlog":
        return "; ".join(
            f"{size}: {run['per_delivery_ms']:.3f} ms/delivery, start-up "
            f"{run['startup_seconds']:.2f} s, RSS {run['rss_mib_ready']['VmRSS']:.0f} MiB"
            for size, run in figures["sizes"].items()
        )
    if name == "profile":
        return "; ".join(
            f"{what}: " + ", ".join(f"{fn} {share}%" for fn, share in prof.get("self", [])[:3])
            for what, prof in figures.items()
            if isinstance(prof, dict) and "samples" in prof
        )
    return ""


def print_targets(checks: list[dict[str, Any]]) -> None:
    print("\ntargets:")
    for item in checks:
        status = "met" if item["met"] else "MISSED"
        print(
            f"  {status:6} {item['target']}: {item['value']:.3g} "
            f"({'>=' if item['higher_is_better'] else '<='} {item['bound']:g}; "
            f"{item['ratio_to_bound']:.2f}x the bound)"
        )


if __name__ == "__main__":
    sys.exit(main())
