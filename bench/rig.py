"""What every scenario of `bench/run.py` stands on: the `Rig` (the run's options and work
directory, gateways configured and started, the publish load and the seeded backlogs the
scenarios share) and which `gateway/` tree is benched (`--gateway-tree`, also used by
`bench/connection_steps.py`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import harness as h
from figures import server_side, wrk_figures

CONCURRENCY = 64
PUBLISHED = 'cegateway_events_published_total{topic="bench"}'


class Skip(Exception):
    """A scenario that cannot run here (a missing tool, an engine the gateway refuses)."""


class Rig:
    """The run's options, its work directory and the counters that keep names fresh."""

    def __init__(self, options: argparse.Namespace, workdir: Path) -> None:
        self.options = options
        self.engine: str = options.engine
        self.workdir = workdir
        self.runs = 0
        self.loads = 0
        self.tag = time.strftime("%H%M%S")

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
