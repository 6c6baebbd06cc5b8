"""The scenarios of `bench/run.py`, one function each; `SCENARIOS` maps a name to it.

Each takes the `Rig` (options, fresh directories, gateways, loads) and returns its figures: the
entry `bench/results.json` keeps under the engine and the scenario's name. A scenario that
cannot run here raises `rig.Skip`. Figure helpers are in `bench/figures.py`, the targets in
`bench/targets.py`.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import harness as h
import httpx
import loads
from figures import (
    arrival_rates,
    latency_figures,
    median_round,
    per_delivery_ms,
    server_side,
    summarize_profile,
    wrk_figures,
)
from rig import CONCURRENCY, Rig, Skip

BACKLOG_REPEATS = 5
BACKLOG_WINDOW = (100, 1000)  # arrivals over which CPU per delivery is taken, at every size
BACKLOG_LONG_WINDOW = (1000, 10_000)  # and again, for the sizes that have that many


def publish_single(rig: Rig) -> dict[str, Any]:
    gateway = rig.gateway("publish-single")
    try:
        rig.started(gateway)
        rig.publish_load(gateway, "single", 2000, seconds=10)  # warm-up
        return {
            "count": rig.options.single_count,
            "concurrency": CONCURRENCY,
            **median_round(
                [
                    rig.publish_load(gateway, "single", rig.options.single_count)
                    for _ in range(rig.options.rounds)
                ]
            ),
        }
    finally:
        gateway.stop()


def publish_batch(rig: Rig) -> dict[str, Any]:
    gateway = rig.gateway("publish-batch")
    try:
        rig.started(gateway)
        rig.publish_load(gateway, "batch", 100, batch=100, seconds=10)  # warm-up
        return {
            "requests": rig.options.batch_requests,
            "batch": 100,
            "concurrency": CONCURRENCY,
            **median_round(
                [
                    rig.publish_load(gateway, "batch", rig.options.batch_requests, batch=100)
                    for _ in range(rig.options.rounds)
                ]
            ),
        }
    finally:
        gateway.stop()


def ceiling(rig: Rig) -> dict[str, Any]:
    """bench/ceiling.py: parse, answer 202, store nothing; same config, same engine."""
    gateway = rig.gateway("ceiling")  # only for its YAML (port, limits, engine)
    app = h.Process(
        [
            h.PYTHON,
            str(h.BENCH / "ceiling.py"),
            "--config",
            str(gateway.config_path),
            "--engine",
            rig.engine,
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
            ("single", 1, rig.options.single_count),
            ("batch", 100, rig.options.batch_requests),
        ):
            rounds = []
            for _ in range(rig.options.rounds):
                cpu = app.cpu()
                result = h.wrk(
                    url,
                    mode=mode,
                    count=count,
                    seconds=30,
                    connections=CONCURRENCY,
                    batch=batch,
                    prefix=rig.prefix("ceiling"),
                )
                rounds.append(
                    {
                        **wrk_figures(result),
                        "server_cpu_share": (app.cpu() - cpu) / result.seconds,
                        "rss_mib": app.memory(),
                    }
                )
            figures[mode] = median_round(rounds)
        figures["one_at_a_time"] = one_at_a_time(url, rig.options.e2e_samples, 0.015)
        return {"engine": rig.engine, "concurrency": CONCURRENCY, **figures}
    finally:
        app.stop()


def one_at_a_time(url: str, samples: int, gap: float) -> dict[str, Any]:
    """Single publishes one at a time, `gap` apart, from the client the e2e scenario uses."""
    latencies = []
    with httpx.Client() as client:
        for index in range(samples + 20):
            headers = loads.push_headers(f"one-{index}")
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


def nats(rig: Rig) -> dict[str, Any]:
    """NATS JetStream (Debian's nats-server, file storage, dedup by Nats-Msg-Id), published
    to by nats-py with the same concurrency; acked publishes per second."""
    server = shutil.which("nats-server")
    if server is None:
        raise Skip("nats-server is not installed: apt-get install -y nats-server")
    workdir = rig.fresh_dir("nats")
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
        for _ in range(rig.options.rounds):
            cpu = process.cpu()
            result = h.run_child(
                [
                    h.PYTHON,
                    str(h.BENCH / "loads.py"),
                    "nats",
                    f"nats://127.0.0.1:{port}",
                    str(rig.options.nats_count),
                    str(CONCURRENCY),
                    "30",
                    rig.prefix("nats"),
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
            "count": rig.options.nats_count,
            "concurrency": CONCURRENCY,
            "rate": median["events_per_s"],
            **median,
        }
    finally:
        process.stop()


def push(rig: Rig) -> dict[str, Any]:
    """Stored events pushed to a subscriber answering 200 at once, against bare aiohttp and
    httpx loops posting the same events to the same subscriber with the same concurrency.
    The gateway and the bare aiohttp loop take turns, `--rounds` times: the ratio is the
    median of the rounds' ratios, each taken within a minute, so a slow spell of this
    shared machine weighs on one round, not on one side."""
    workdir = rig.fresh_dir("push-sink")
    sink = h.Sink(workdir).up()
    try:
        rounds = []
        for index in range(rig.options.rounds):
            gateway_figures = push_through_gateway(rig, f"push-{index + 1}", sink)
            events = int(gateway_figures["pending"])
            bare = push_bare(rig, sink, "aiohttp", events, rig.options.push_seconds)
            rounds.append((gateway_figures, bare))
        httpx = push_bare(rig, sink, "httpx", events, 15.0)  # for the record: once
        alone = h.wrk(
            sink.url,
            mode="push",
            count=rig.options.sink_count,
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


def push_through_gateway(rig: Rig, name: str, sink: h.Sink) -> dict[str, Any]:
    """One gateway round of `push`: its figures, all pushes arrived."""
    gateway, start = rig.pending_then_restart(name, rig.options.push_events, sink)
    events = int(start["pending_before_restart"])
    try:
        cpu = gateway.cpu()
        before = gateway.metrics()
        sink.wait_count(events // 2, timeout=rig.options.push_seconds)
        midway = gateway.metrics()  # the adaptive limit and pushes in flight, mid-run
        arrived = sink.wait_count(events, timeout=rig.options.push_seconds)
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


def push_bare(rig: Rig, sink: h.Sink, client: str, events: int, seconds: float) -> dict[str, Any]:
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
            rig.prefix(client),
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


def e2e(rig: Rig) -> dict[str, Any]:
    """Publish-to-push latency: idle (one event at a time) and at half the maximum rate."""
    workdir = rig.fresh_dir("e2e")
    sink = h.Sink(workdir).up()
    gateway = rig.gateway("e2e", [rig.subscription(sink.url)], workdir)
    try:
        rig.started(gateway)
        idle = idle_latency(rig, gateway, sink, gap=0.015)
        idle["back_to_back"] = idle_latency(rig, gateway, sink, gap=0.0)
        # The maximum: single publishes from wrk with the subscription pushing meanwhile;
        # the rate both keep up with is the smaller of accepted/s and pushed/s.
        sink.get("reset")
        started = time.monotonic()
        probe = h.wrk(
            gateway.url + "/topics/bench/events",
            mode="single",
            count=rig.options.e2e_probe,
            seconds=30,
            prefix=rig.prefix("probe"),
        )
        ended = time.monotonic()
        sink.wait_count(probe.ok, timeout=60)
        times = sink.get("times")
        pushed = sum(1 for t in times if started <= t <= ended)
        maximum = min(probe.rate, pushed / (ended - started))
        half = paced_latency(rig, gateway, sink, maximum / 2)
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


def idle_latency(rig: Rig, gateway: h.Gateway, sink: h.Sink, gap: float) -> dict[str, Any]:
    """One publish at a time, `gap` seconds apart (0: each right after the last 202)."""
    samples = rig.options.e2e_samples
    before = gateway.metrics()
    prefix = rig.prefix("idle")
    sink.get("track", prefix=prefix)
    sent: dict[str, float] = {}
    answered: dict[str, float] = {}
    with httpx.Client(base_url=gateway.url) as client:
        for index in range(samples + 20):
            event_id = f"{prefix}-{index}"
            headers = loads.push_headers(event_id)
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


def paced_latency(rig: Rig, gateway: h.Gateway, sink: h.Sink, rate: float) -> dict[str, Any]:
    seconds = rig.options.e2e_seconds
    count = int(rate * seconds)
    prefix = rig.prefix("half")
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


def backlog(rig: Rig) -> dict[str, Any]:
    """Per-delivery cost, RSS and start-up time with 1k, 100k and 1M deliveries pending;
    the median run of BACKLOG_REPEATS by CPU per delivery, for every size."""
    figures: dict[str, Any] = {"sizes": {}}
    for size in rig.options.backlog_sizes:
        runs = backlog_runs(rig, size, BACKLOG_REPEATS)
        runs.sort(key=lambda run: run["cpu_ms_per_delivery"])
        figures["sizes"][str(size)] = {
            **runs[len(runs) // 2],
            "repeats": len(runs),
            "cpu_ms_per_delivery_runs": [run["cpu_ms_per_delivery"] for run in runs],
        }
    return figures


def backlog_runs(rig: Rig, size: int, repeats: int) -> list[dict[str, Any]]:
    """A backlog of at least 100 times what one run pushes is seeded once and each run
    restarts a gateway on it (each run leaves it 1 % smaller at most); a smaller one is
    seeded afresh for every run."""
    pushes = BACKLOG_LONG_WINDOW[1] if size >= 2 * BACKLOG_LONG_WINDOW[1] else size
    reuse = size >= 100 * pushes
    runs: list[dict[str, Any]] = []
    seeded: tuple[Path, dict[str, Any]] | None = None
    for _ in range(repeats):
        if seeded is None or not reuse:
            seeded = rig.seed_pending(f"backlog-{size}", size)
        runs.append(backlog_once(rig, size, *seeded))
    return runs


def backlog_once(rig: Rig, size: int, workdir: Path, seeding: dict[str, Any]) -> dict[str, Any]:
    sink = h.Sink(rig.fresh_dir(f"backlog-{size}-sink")).up()
    window, long_window = BACKLOG_WINDOW, BACKLOG_LONG_WINDOW
    try:
        gateway, start = rig.restart_pushing(f"backlog-{size}", workdir, sink)
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


def profile(rig: Rig) -> dict[str, Any]:
    """py-spy on the gateway during publish-single and during push: top of profile."""
    spy = shutil.which("py-spy") or str(Path(h.PYTHON).with_name("py-spy"))
    if not Path(spy).exists():
        raise Skip("py-spy is not installed (pip install py-spy; it is in the bench group)")
    seconds = rig.options.profile_seconds
    figures: dict[str, Any] = {}
    gateway = rig.gateway("profile-publish")
    try:
        figures["publish-single"] = profile_publishing(rig, spy, gateway, "publish")
    finally:
        gateway.stop()
    workdir = rig.fresh_dir("profile-mixed-sink")
    sink = h.Sink(workdir).up()
    gateway = rig.gateway("profile-mixed", [rig.subscription(sink.url)], workdir)
    try:
        figures["publish-single with push"] = profile_publishing(rig, spy, gateway, "mixed")
    finally:
        gateway.stop()
        sink.stop()
    workdir = rig.fresh_dir("profile-push-sink")
    sink = h.Sink(workdir).up()
    try:
        gateway, _ = rig.pending_then_restart("profile-push", rig.options.profile_push_events, sink)
        try:
            recorder = py_spy(rig, spy, gateway.pid, seconds, "push")
            figures["push"] = py_spy_summary(recorder)
        finally:
            gateway.stop()
    finally:
        sink.stop()
    return figures


def profile_publishing(rig: Rig, spy: str, gateway: Any, name: str) -> dict[str, Any]:
    """py-spy on a started gateway while wrk publishes single events to it."""
    seconds = rig.options.profile_seconds
    rig.started(gateway)
    recorder = py_spy(rig, spy, gateway.pid, seconds, name)
    h.wrk(
        gateway.url + "/topics/bench/events",
        mode="single",
        count=10**6,
        seconds=seconds + 2,
        prefix=rig.prefix("prof"),
    )
    return py_spy_summary(recorder)


def py_spy(rig: Rig, spy: str, pid: int, seconds: float, name: str) -> tuple[Any, Path]:
    output = rig.workdir / f"py-spy-{name}.txt"
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


def py_spy_summary(recorder: tuple[Any, Path]) -> dict[str, Any]:
    process, output = recorder
    process.wait(60)
    return summarize_profile(output.read_text())


SCENARIOS: dict[str, Callable[[Rig], dict[str, Any]]] = {
    "publish-single": publish_single,
    "ceiling": ceiling,
    "publish-batch": publish_batch,
    "nats": nats,
    "push": push,
    "e2e": e2e,
    "backlog": backlog,
    "profile": profile,
}
