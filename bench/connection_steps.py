"""Group commit as wrk's connections step up and down (bench/notes/, session 8).

One gateway (`ce-gateway serve`, full fsync) takes single-event publishes from wrk in phases of
a fixed connection count, one after the other without a restart: by default 4, 64, 128, then
64 again. Each phase prints its rate, p99 and commits per 1,000 events. It shows whether the
group commit forms whole waves after a step up (about 1,000 / connections commits per 1,000
events) or stays split (twice that). The bench's own scenarios start their connections all at
once and never step.

    .venv/bin/python bench/connection_steps.py                       # the work tree's gateway/
    .venv/bin/python bench/connection_steps.py --gateway-tree REV    # a commit's gateway/
    .venv/bin/python bench/connection_steps.py --engine hypercorn --phases 4:3000,64:20000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import harness as h
from rig import gateway_source

PUBLISHED = 'cegateway_events_published_total{topic="bench"}'


def phases(text: str) -> list[tuple[int, int]]:
    """'4:3000,64:20000' -> [(4, 3000), (64, 20000)]: connections and publishes per phase."""
    pairs = [part.split(":") for part in text.split(",")]
    return [(int(connections), int(count)) for connections, count in pairs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--engine", default="uvicorn", choices=["hypercorn", "uvicorn"])
    parser.add_argument(
        "--phases", type=phases, default=phases("4:3000,64:20000,128:20000,64:20000")
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="at most, per phase")
    parser.add_argument("--gateway-tree", default="worktree")
    options = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="cegw-steps-"))
    gateway_source(options.gateway_tree, workdir)  # a commit's gateway/ goes on PYTHONPATH
    server = {"gracefulTimeout": "1s", "engine": options.engine}
    rest = {
        "egress": {"allowedNetworks": ["127.0.0.1/32"]},
        "topics": [{"name": "bench"}],
        "subscriptions": [],
    }
    gateway = h.Gateway(workdir, server, rest, "steps")
    gateway.start()
    try:
        gateway.ready()
        for connections, count in options.phases:
            before = gateway.metrics()
            result = h.wrk(
                gateway.url + "/topics/bench/events",
                mode="single",
                count=count,
                seconds=options.seconds,
                connections=connections,
                prefix=f"s{connections}-{time.time_ns()}",
            )
            after = gateway.metrics()
            events = after[PUBLISHED] - before.get(PUBLISHED, 0.0)
            commits = h.fsyncs(after) - h.fsyncs(before)
            print(
                f"{connections:4d} connections: {result.event_rate:8,.0f} events/s, "
                f"p99 {result.p99_ms:6.1f} ms, {1000 * commits / events:6.1f} commits per "
                f"1,000 events",
                flush=True,
            )
    finally:
        gateway.stop()


if __name__ == "__main__":
    main()
