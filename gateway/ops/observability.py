"""What the app serves about itself: `/metrics`, and the event-loop lag it reports."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from gateway.openapi import Operation
from gateway.ops.metrics import CONTENT_TYPE, Metrics

LAG_PROBE_INTERVAL = 1.0


def metrics_operation(metrics: Metrics) -> Operation:
    async def serve(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    return Operation(
        "GET",
        "/metrics",
        serve,
        "Prometheus metrics (text format); no event data",
        responses={200: None},
        problems=(),
        tag="probes",
    )


async def measure_loop_lag(metrics: Metrics, interval: float = LAG_PROBE_INTERVAL) -> None:
    """How late the loop runs a timer: a loop busy with CPU work answers everything late.
    Real time on purpose (this measures the process, not the injected schedule)."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + interval
        await asyncio.sleep(interval)
        metrics.loop_lag = max(0.0, loop.time() - expected)
