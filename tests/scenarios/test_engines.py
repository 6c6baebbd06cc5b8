"""Hypercorn and uvicorn serve the same plain-ASGI app identically (issue 9): ingress, limits,
problem bodies, readiness on SIGTERM with the shutdown delay, SIGHUP reload, and delivery."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import BINARY_HEADERS, LOOPBACK_EGRESS, subscription
from tests.support.gateway_process import GatewayProcess
from tests.support.subscriber import run_subscriber

pytestmark = pytest.mark.slow
ENGINES = [pytest.param("hypercorn", id="hypercorn"), pytest.param("uvicorn", id="uvicorn")]


def with_server(gateway: GatewayProcess, **server: object) -> None:
    config = yaml.safe_load(gateway.config_path.read_text())
    config["server"].update(server)
    gateway.config_path.write_text(yaml.safe_dump(config))


@pytest.mark.parametrize("engine", ENGINES)
async def test_both_engines_serve_the_same_contract(tmp_path: Path, engine: str) -> None:
    async with run_subscriber() as sub:
        gateway = GatewayProcess(
            tmp_path,
            {
                "egress": LOOPBACK_EGRESS,
                "topics": [{"name": "orders"}],
                "subscriptions": [subscription("s1", sub.url)],
            },
        )
        with_server(gateway, engine=engine, maxBodySize="1KiB", shutdownDelay="1s")
        await gateway.start()
        assert gateway.process is not None
        try:
            async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
                ok = await client.post(
                    "/topics/orders/events", headers={**BINARY_HEADERS, "ce-id": "a"}, content=b"{}"
                )
                assert ok.json() == {"accepted": 1, "duplicates": 0}
                big = await client.post(
                    "/topics/orders/events",
                    headers={**BINARY_HEADERS, "ce-id": "b"},
                    content=b"x" * 4096,
                )
                assert big.status_code == 413
                assert big.headers["content-type"] == "application/problem+json"
                head = await client.post(
                    "/topics/orders/events", headers={**BINARY_HEADERS, "x-pad": "p" * 17000}
                )
                assert head.status_code == 431
                for _ in range(100):
                    if sub.received:
                        break
                    await asyncio.sleep(0.02)
                assert [r.event_id for r in sub.received] == ["a"]
                config = yaml.safe_load(gateway.config_path.read_text())
                config["topics"].append({"name": "added"})
                gateway.config_path.write_text(yaml.safe_dump(config))
                os.kill(gateway.process.pid, signal.SIGHUP)
                for _ in range(100):
                    if (await client.get("/v1/topics/added")).status_code == 200:
                        break
                    await asyncio.sleep(0.02)
                assert (await client.get("/v1/topics/added")).status_code == 200
                os.kill(gateway.process.pid, signal.SIGTERM)
                await asyncio.sleep(0.3)
                ready = await client.get("/readyz")
                assert ready.status_code == 503 and "shutting down" in ready.json()["reasons"]
                late = await client.post(
                    "/topics/orders/events", headers={**BINARY_HEADERS, "ce-id": "late"}
                )
                assert late.status_code == 202
            assert await asyncio.to_thread(gateway.process.wait, 20) == 0
        finally:
            await asyncio.to_thread(gateway.stop)
