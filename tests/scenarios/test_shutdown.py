"""Graceful shutdown and readiness (RELIABILITY R17), on a real process and SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import LOOPBACK_EGRESS, subscription
from tests.support.gateway_process import GatewayProcess
from tests.support.subscriber import Answer, run_subscriber

pytestmark = pytest.mark.slow


async def test_sigterm_turns_not_ready_first_and_loses_nothing(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        sub.script = lambda request: Answer(200, delay=0.2)
        config = {
            "egress": LOOPBACK_EGRESS,
            "topics": [{"name": "orders"}],
            "subscriptions": [subscription("s1", sub.url, maxConcurrency=4)],
        }
        gateway = GatewayProcess(tmp_path, config)
        raw = gateway.config_path.read_text()
        gateway.config_path.write_text(raw.replace("server:", "server:\n  shutdownDelay: 1s", 1))
        await gateway.start()
        assert gateway.process is not None
        ids = [f"e{i}" for i in range(40)]
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
            batch = [{"specversion": "1.0", "id": i, "source": "/r17", "type": "t"} for i in ids]
            response = await client.post(
                "/topics/orders/events",
                headers={"content-type": "application/cloudevents-batch+json"},
                content=orjson.dumps(batch),
            )
            assert response.status_code == 202
            await asyncio.sleep(0.3)  # pushes in flight (the subscriber takes 200 ms each)
            os.kill(gateway.process.pid, signal.SIGTERM)
            await asyncio.sleep(0.2)
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and "shutting down" in ready.json()["reasons"]
            assert (await client.get("/healthz")).status_code == 200
            late = await client.post(  # still answered properly during the delay
                "/topics/orders/events",
                headers={
                    "ce-specversion": "1.0",
                    "ce-id": "late",
                    "ce-source": "/r17",
                    "ce-type": "t",
                },
            )
            assert late.status_code == 202
        exit_code = await asyncio.to_thread(gateway.process.wait, 20)
        assert exit_code == 0
        await gateway.start()  # restart: at-least-once holds for everything accepted
        try:
            for _ in range(400):
                if {r.event_id for r in sub.received} >= {*ids, "late"}:
                    break
                await asyncio.sleep(0.05)
            assert {r.event_id for r in sub.received} >= {*ids, "late"}
        finally:
            # Off the loop: the subscriber runs on it and must answer the last pushes.
            await asyncio.to_thread(gateway.stop)
    print(f"\nR17: {len(sub.received) - 41} duplicate pushes after SIGTERM and restart")
