"""Logs: JSON lines when not on a terminal, with level and logger, and never event data."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from tests.gateway_process import GatewayProcess

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
