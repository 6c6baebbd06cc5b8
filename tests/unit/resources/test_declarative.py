"""The configuration file as the source of truth: apply at start, prune, reload, SIGHUP."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.config.settings import load_config
from tests.conftest import assert_problem, run_gateway
from tests.support.gateway_process import GatewayProcess


def write_config(path: Path, data_dir: Path, **config: Any) -> Path:
    path.write_text(yaml.safe_dump({"server": {"dataDir": str(data_dir)}, **config}))
    return path


def names(response: httpx.Response, key: str) -> list[str]:
    return sorted(item["name"] for item in response.json()[key])


HOOK = {"http": {"url": "https://hooks.example.com/in"}}


async def test_api_resources_survive_restart_unless_the_file_prunes(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    write_config(config, tmp_path / "data", topics=[{"name": "orders"}])
    async with run_gateway(load_config(config)) as gw:
        assert (await gw.client.put("/v1/topics/adhoc", json={})).status_code == 201
        body = {"topic": "adhoc", "destination": HOOK}
        assert (await gw.client.put("/v1/subscriptions/adhoc-sub", json=body)).status_code == 201
    async with run_gateway(load_config(config)) as gw:  # kept: the file does not prune
        assert "adhoc" in names(await gw.client.get("/v1/topics"), "topics")
    write_config(config, tmp_path / "data", topics=[{"name": "orders"}], prune=True)
    async with run_gateway(load_config(config)) as gw:
        assert names(await gw.client.get("/v1/topics"), "topics") == ["default", "orders"]
        assert names(await gw.client.get("/v1/subscriptions"), "subscriptions") == []


async def test_reload_applies_the_changed_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    write_config(config, tmp_path / "data", topics=[{"name": "orders"}])
    async with run_gateway(load_config(config)) as gw:
        sub = {"name": "billing", "topic": "orders", "destination": HOOK}
        write_config(
            config,
            tmp_path / "data",
            topics=[{"name": "orders", "retention": "48h"}, {"name": "audit"}],
            subscriptions=[sub],
        )
        response = await gw.client.post("/v1/config:reload")
        assert response.json() == {
            "topics": 2,
            "subscriptions": 1,
            "pruned": 0,
            "applied": ["topic/orders", "topic/audit", "subscription/billing"],
            "notApplied": [],
        }
        assert (await gw.client.get("/v1/topics/orders")).json()["retention"] == "48h"
        assert names(await gw.client.get("/v1/subscriptions"), "subscriptions") == ["billing"]


async def test_bad_file_on_reload_changes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    write_config(config, tmp_path / "data", topics=[{"name": "orders"}])
    async with run_gateway(load_config(config)) as gw:
        good = {"name": "ok", "topic": "orders", "destination": HOOK}
        bad = {"name": "bad", "topic": "orders", "destination": HOOK, "ackDeadline": "soon"}
        write_config(
            config,
            tmp_path / "data",
            topics=[{"name": "orders"}, {"name": "new"}],
            subscriptions=[good, bad],
        )
        problem = assert_problem(await gw.client.post("/v1/config:reload"), 400, "invalid-request")
        assert problem["field"] == "subscriptions[1].ackDeadline"
        assert names(await gw.client.get("/v1/topics"), "topics") == ["default", "orders"]
        assert names(await gw.client.get("/v1/subscriptions"), "subscriptions") == []


async def test_reload_without_a_file_is_refused(tmp_path: Path) -> None:
    from tests.conftest import make_settings

    async with run_gateway(make_settings(tmp_path)) as gw:
        assert_problem(await gw.client.post("/v1/config:reload"), 400, "invalid-request")


async def test_sighup_reloads_a_running_process(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, {"topics": [{"name": "orders"}]})
    await gateway.start()
    try:
        config = yaml.safe_load(gateway.config_path.read_text())
        config["topics"].append({"name": "from-sighup"})
        gateway.config_path.write_text(yaml.safe_dump(config))
        assert gateway.process is not None
        os.kill(gateway.process.pid, signal.SIGHUP)
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            for _ in range(100):
                if (await client.get("/v1/topics/from-sighup")).status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert (await client.get("/v1/topics/from-sighup")).status_code == 200
            assert (await client.get("/readyz")).status_code == 200
    finally:
        gateway.stop()
