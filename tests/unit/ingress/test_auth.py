"""Inbound authentication (RELIABILITY S5): separate publisher and admin bearer tokens."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from gateway.ingress.auth import Tokens, authorize, route_kind
from gateway.problems import Forbidden, Unauthorized
from tests.conftest import BINARY_HEADERS, assert_problem, make_settings, run_gateway
from tests.support.gateway_process import GatewayProcess, free_port

PUBLISHER = secrets.token_urlsafe(24)
ADMIN = secrets.token_urlsafe(24)


def token_files(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "publisher").write_text(PUBLISHER + "\n")
    (tmp_path / "admin").write_text(ADMIN)
    return {
        "publisherTokenFile": str(tmp_path / "publisher"),
        "adminTokenFile": str(tmp_path / "admin"),
    }


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("method", "path", "kind"),
    [
        pytest.param("GET", "/healthz", "open", id="healthz"),
        pytest.param("GET", "/readyz", "open", id="readyz"),
        pytest.param("GET", "/metrics", "open", id="metrics"),
        pytest.param("GET", "/openapi.json", "open", id="openapi"),
        pytest.param("POST", "/", "publish", id="root"),
        pytest.param("POST", "/topics/orders/events", "publish", id="ingress"),
        pytest.param("POST", "/v1/event", "publish", id="pretry-event"),
        pytest.param("POST", "/v1/config", "admin", id="pretry-config"),
        pytest.param("GET", "/v1/topics", "admin", id="topics"),
        pytest.param("POST", "/v1/topics/dead/events:redrive", "admin", id="redrive"),
        pytest.param("GET", "/topics/orders/events", "admin", id="get-ingress-is-not-publish"),
    ],
)
def test_route_kinds(method: str, path: str, kind: str) -> None:
    assert route_kind(method, path) == kind


def test_tokens_compare_whole_values() -> None:
    tokens = Tokens(publisher=PUBLISHER.encode(), admin=ADMIN.encode())
    authorize("publish", f"Bearer {PUBLISHER}", tokens)
    authorize("admin", f"bearer {ADMIN}", tokens)
    for wrong in (None, "", "Bearer", f"Basic {ADMIN}", f"Bearer {ADMIN[:-1]}", f"Bearer {ADMIN}x"):
        with pytest.raises(Unauthorized):
            authorize("admin", wrong, tokens)
    with pytest.raises(Forbidden):
        authorize("admin", f"Bearer {PUBLISHER}", tokens)


async def test_publish_needs_a_token_and_a_refusal_stores_nothing(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", auth=token_files(tmp_path))
    async with run_gateway(settings) as gw:
        for headers in ({}, bearer("wrong-token-wrong-token")):
            response = await gw.client.post(
                "/topics/orders/events",
                headers={**BINARY_HEADERS, "ce-id": "x", **headers},
                content=b"{}",
            )
            assert_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer")
        admin = bearer(ADMIN)
        events = await gw.client.get("/v1/topics/orders/events", headers=admin)
        assert events.json()["events"] == []
        metrics = (await gw.client.get("/metrics")).text
        assert 'cegateway_events_published_total{topic="orders"}' not in metrics
        for token in (PUBLISHER, ADMIN):
            response = await gw.client.post(
                "/topics/orders/events",
                headers={**BINARY_HEADERS, "ce-id": token[:8], **bearer(token)},
                content=b"{}",
            )
            assert response.status_code == 202


async def test_publisher_token_gets_403_on_every_admin_route(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "d", auth=token_files(tmp_path))
    async with run_gateway(settings) as gw:
        spec = (await gw.client.get("/openapi.json")).json()
        admin_routes = [
            (method.upper(), path)
            for path, methods in spec["paths"].items()
            for method in methods
            if route_kind(method.upper(), path) == "admin"
        ]
        assert len(admin_routes) >= 10
        for method, path in admin_routes:
            url = path.replace("{name}", "orders")
            response = await gw.client.request(method, url, headers=bearer(PUBLISHER), json={})
            assert_problem(response, 403, "forbidden")
            anonymous = await gw.client.request(method, url, json={})
            assert_problem(anonymous, 401, "unauthorized")
        assert (await gw.client.get("/v1/topics", headers=bearer(ADMIN))).status_code == 200
        for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
            assert (await gw.client.get(path)).status_code == 200


async def test_unreadable_token_file_refuses_to_start(tmp_path: Path) -> None:
    from gateway.app import create_app
    from gateway.config.settings import ConfigError

    settings = make_settings(tmp_path, auth={"adminTokenFile": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"auth\.adminTokenFile"):
        create_app(settings)


async def test_admin_api_can_live_on_its_own_port(tmp_path: Path) -> None:
    admin_port = free_port()
    gateway = GatewayProcess(tmp_path, {"topics": [{"name": "orders"}]})
    gateway.config_path.write_text(
        gateway.config_path.read_text().replace("server:", f"server:\n  adminPort: {admin_port}", 1)
    )
    await gateway.start()
    try:
        async with httpx.AsyncClient() as client:
            public, admin = gateway.url, f"http://127.0.0.1:{admin_port}"
            assert_problem(await client.get(public + "/v1/topics"), 404, "not-found")
            assert (await client.get(admin + "/v1/topics")).status_code == 200
            publish = await client.post(
                public + "/topics/orders/events", headers={**BINARY_HEADERS, "ce-id": "p"}
            )
            assert publish.status_code == 202
            assert (await client.get(public + "/healthz")).status_code == 200
    finally:
        gateway.stop()
