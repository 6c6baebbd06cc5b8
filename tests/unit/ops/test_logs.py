"""Logs: JSON lines when not on a terminal, with level and logger, and never event data."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx

from tests.support.gateway_process import GatewayProcess

SECRET_DATA = "card-4111-1111-1111-1111"


async def test_process_logs_are_json_lines_without_event_data(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, {"topics": [{"name": "orders"}]})
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            response = await client.post(
                "/topics/orders/events",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "log-1",
                    "ce-source": "/private/src",
                    "ce-type": "t",
                    "content-type": "application/json",
                },
                content=json.dumps({"pan": SECRET_DATA}).encode(),
            )
            assert response.status_code == 202
            await client.post("/topics/orders/events", content=b"not an event")
    finally:
        gateway.stop()
    lines = [line for line in gateway.log_path.read_text().splitlines() if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert {"time", "level", "logger", "message"} <= set(record)
    text = gateway.log_path.read_text()
    assert SECRET_DATA not in text and "/private/src" not in text


async def test_a_failing_subscription_writes_json_failure_lines_without_event_data(
    tmp_path: Path,
) -> None:
    """The process's own log: a failed attempt is one JSON line with the subscription and the
    event's id and source, its error kind, and the next attempt time; no event data."""
    with socket.socket() as probe:  # a port nothing listens on: connection refused
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = GatewayProcess(
        tmp_path,
        {
            "egress": {"allowedNetworks": ["127.0.0.1/32"]},
            "topics": [{"name": "orders"}],
            "subscriptions": [
                {
                    "name": "down",
                    "topic": "orders",
                    "destination": {"http": {"url": f"http://127.0.0.1:{port}/"}},
                }
            ],
        },
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            response = await client.post(
                "/topics/orders/events",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "log-2",
                    "ce-source": "/shop",
                    "ce-type": "t",
                    "content-type": "application/json",
                },
                content=json.dumps({"pan": SECRET_DATA}).encode(),
            )
            assert response.status_code == 202
        for _ in range(200):
            if '"gateway.delivery"' in gateway.log_path.read_text():
                break
            await asyncio.sleep(0.01)
    finally:
        gateway.stop()
    records = [json.loads(line) for line in gateway.log_path.read_text().splitlines() if line]
    [failed] = [record for record in records if record["logger"] == "gateway.delivery"]
    assert (
        failed.items()
        >= {
            "level": "WARNING",
            "subscription": "down",
            "eventId": "log-2",
            "eventSource": "/shop",
            "attempt": 1,
            "status": "connect",
            "outcome": "retried",
        }.items()
    )
    assert failed["nextAttemptTime"].endswith("Z")
    assert SECRET_DATA not in gateway.log_path.read_text()
