"""Poison input at ingress (issue 19, F1, F2, F3, F5, F6, duplicate headers, Content-Length with
chunked): each is a 400 problem naming the field, nothing is stored, and the gateway goes on
accepting and pushing good events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from gateway.jsonsafe import MAX_DEPTH
from gateway.policy.deadletters import DL_ATTRIBUTES
from tests.conftest import (
    BINARY_HEADERS,
    LOOPBACK_EGRESS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.gateway_process import GatewayProcess
from tests.support.subscriber import Subscriber, run_subscriber

STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
EVENT = {"specversion": "1.0", "id": "e", "source": "/shop", "type": "t"}


@contextlib.asynccontextmanager
async def pushing(tmp_path: Path) -> AsyncIterator[tuple[RunningGateway, Subscriber]]:
    async with run_subscriber() as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings) as gw:
            yield gw, sub


async def stored_ids(gw: RunningGateway) -> list[str]:
    response = await gw.client.get("/v1/topics/orders/events")
    return [event["id"] for event in response.json()["events"]]


async def assert_still_serves(gw: RunningGateway, sub: Subscriber, event_id: str) -> None:
    """A good event after the poison is accepted and pushed; nothing else was."""
    assert (await gw.publish("orders", event_id)).status_code == 202
    await settle(gw)
    assert [request.event_id for request in sub.received] == [event_id]
    assert await stored_ids(gw) == [event_id]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e100000", "-1e400"])
@pytest.mark.parametrize("time", [None, "2024-05-06T07:08:09Z"], ids=["no-time", "with-ce-time"])
async def test_f1_json_data_the_json_format_does_not_allow(
    tmp_path: Path, number: str, time: str | None
) -> None:
    """F1: was a 202, stored as invalid JSON, pending forever (a 500 with ce-time)."""
    async with pushing(tmp_path) as (gw, sub):
        extra = {"ce-time": time} if time else {}
        response = await gw.client.post(
            "/topics/orders/events",
            headers={**BINARY_HEADERS, "ce-id": "poison", **extra},
            content=f'{{"amount": {number}}}'.encode(),
        )
        problem = assert_problem(response, 400, "invalid-event")
        assert problem["field"] == "data"
        body = f'{{"specversion":"1.0","id":"p","source":"/s","type":"t","data":{number}}}'
        for headers, content in ((STRUCTURED, body), (BATCH, f"[{body}]")):
            response = await gw.client.post(
                "/topics/orders/events", headers=headers, content=content.encode()
            )
            assert_problem(response, 400, "invalid-event")
        await assert_still_serves(gw, sub, "good")


async def test_f2_invalid_utf8_ids_are_refused_not_collapsed(tmp_path: Path) -> None:
    """F2: %FF, %FE and %C0 all became U+FFFD: distinct events deduplicated away."""
    async with pushing(tmp_path) as (gw, sub):
        for raw in ("%FF", "%FE", "%C0", "a%80", "%ED%A0%80"):
            response = await gw.publish("orders", raw)
            problem = assert_problem(response, 400, "invalid-event")
            assert problem["field"] == "id"
            assert "UTF-8" in problem["detail"]
        for valid in ("%E2%82%AC", "%e2%82%ac%20"):  # valid encodings: two distinct events
            assert (await gw.publish("orders", valid)).status_code == 202
        await settle(gw)
        assert await stored_ids(gw) == ["\u20ac", "\u20ac "]
        assert [request.event_id for request in sub.received] == ["%E2%82%AC", "%E2%82%AC%20"]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 10_000])
async def test_f3_deeply_nested_json_is_refused_in_every_mode(tmp_path: Path, levels: int) -> None:
    """F3: 10,000 levels of `[` was a 500 RecursionError on binary publish."""
    deep = "[" * levels + "]" * levels
    event = orjson.dumps(EVENT).decode()[:-1] + f',"data":{deep}}}'
    async with pushing(tmp_path) as (gw, sub):
        requests = [  # binary data sits inside the event when pushed: one level less
            ({**BINARY_HEADERS, "ce-id": "deep"}, deep, "data", MAX_DEPTH - 1),
            (STRUCTURED, event, None, MAX_DEPTH),
            (BATCH, f"[{event}]", None, MAX_DEPTH),
        ]
        for headers, content, field, limit in requests:
            response = await gw.client.post(
                "/topics/orders/events", headers=headers, content=content.encode()
            )
            problem = assert_problem(response, 400, "invalid-event")
            assert problem.get("field") == field
            assert f"nested more than {limit} levels deep" in problem["detail"]
        await assert_still_serves(gw, sub, "good")


async def test_f3_json_data_at_the_depth_limit_is_accepted_and_pushed(tmp_path: Path) -> None:
    """Binary-mode data gets one level less than a whole document: pushed structured, it sits
    inside the event, and a downstream gateway must accept that push (found in review)."""
    deep = b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)
    too_deep = b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    async with pushing(tmp_path) as (gw, sub):
        headers = {**BINARY_HEADERS, "ce-id": "deep"}
        refused = await gw.client.post("/topics/orders/events", headers=headers, content=too_deep)
        assert assert_problem(refused, 400, "invalid-event")["field"] == "data"
        response = await gw.client.post("/topics/orders/events", headers=headers, content=deep)
        assert response.status_code == 202
        await settle(gw)
        assert [request.body for request in sub.received] == [deep]


@pytest.mark.parametrize("name", DL_ATTRIBUTES)
async def test_f5_publishers_cannot_set_dead_letter_attributes(
    gateway: RunningGateway, name: str
) -> None:
    """F5: `ce-dlsubscription: billing` looked like a real dead letter, and redrive pushed it."""
    binary = await gateway.publish("orders", "forged", **{f"ce-{name}": "billing"})
    assert assert_problem(binary, 400, "invalid-event")["field"] == name
    structured = await gateway.client.post(
        "/topics/orders/events",
        headers=STRUCTURED,
        content=orjson.dumps({**EVENT, name: "billing"}),
    )
    assert assert_problem(structured, 400, "invalid-event")["field"] == name
    assert await stored_ids(gateway) == []


async def test_f5_names_that_only_start_with_dl_are_extensions(gateway: RunningGateway) -> None:
    response = await gateway.publish("orders", "fine", **{"ce-dlq": "x", "ce-dltopic": "y"})
    assert response.status_code == 202


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        pytest.param({"content-type": "text/plain;\tcharset=utf-8"}, "content-type", id="tab"),
        pytest.param({"content-type": "text/plain; q=\x7f"}, "content-type", id="del"),
    ],
)
async def test_f6_content_type_with_control_characters(
    gateway: RunningGateway, headers: dict[str, str], field: str
) -> None:
    """F6: such a content type was accepted and could then never be pushed."""
    response = await gateway.publish("orders", "ctl", **headers)
    assert assert_problem(response, 400, "invalid-event")["field"] == field
    response = await gateway.client.post(
        "/topics/orders/events",
        headers=STRUCTURED,
        content=orjson.dumps({**EVENT, "datacontenttype": "text/plain\u0000", "data": "x"}),
    )
    assert assert_problem(response, 400, "invalid-event")["field"] == "datacontenttype"
    assert await stored_ids(gateway) == []


@pytest.mark.parametrize(
    ("header", "field"),
    [("ce-id", "id"), ("ce-source", "source"), ("ce-tenant", "tenant"), ("content-type", None)],
)
async def test_duplicate_headers_are_refused_naming_the_header(
    gateway: RunningGateway, header: str, field: str | None
) -> None:
    headers = [(k, v) for k, v in {**BINARY_HEADERS, "ce-id": "dup"}.items() if k != header]
    headers += [(header, "/first"), (header, "/second")]
    if header == "content-type":
        headers[-2:] = [(header, "application/json"), (header, "text/plain")]
    response = await gateway.client.post("/topics/orders/events", headers=headers, content=b"{}")
    problem = assert_problem(response, 400, "invalid-event")
    assert problem["field"] == (field or "content-type")
    assert header in problem["detail"].lower()
    assert await stored_ids(gateway) == []


SMUGGLE = (
    b"POST /topics/orders/events HTTP/1.1\r\nHost: gw\r\nce-specversion: 1.0\r\n"
    b"ce-id: smuggled\r\nce-source: /s\r\nce-type: t\r\ncontent-type: application/json\r\n"
    b"Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
)


async def raw_exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), 5)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def framed(method: str, path: str, body: bytes, *, content_length: bool = True) -> bytes:
    """A raw HTTP/1.1 request with a chunked body, and a Content-Length as well if asked."""
    head = f"{method} {path} HTTP/1.1\r\nHost: gw\r\ncontent-type: application/json\r\n"
    if content_length:
        head += "Content-Length: 5\r\n"
    chunk = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
    return head.encode() + b"Transfer-Encoding: chunked\r\n\r\n" + chunk


async def answer_until_closed(port: int, request: bytes) -> tuple[bytes, dict[str, Any]]:
    """The status line and the problem body of an answer after which the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # to EOF: the connection is closed
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nconnection: close" in head.lower(), head
    return head.split(b"\r\n", 1)[0], orjson.loads(body)


async def test_content_length_with_chunked_is_refused_on_hypercorn(
    gateway: RunningGateway,
) -> None:
    """h11 passes such a request through (and frames it as chunked): the app refuses it."""
    port = int(gateway.url.rsplit(":", 1)[1])
    status, problem = await answer_until_closed(port, SMUGGLE)
    assert status == b"HTTP/1.1 400 ", status
    assert problem["field"] == "transfer-encoding"
    assert await stored_ids(gateway) == []


PUT_SUBSCRIPTION = orjson.dumps(
    {"topic": "orders", "destination": {"http": {"url": "http://127.0.0.1:9/hook"}}}
)
ADMIN_REQUESTS = [
    pytest.param("PUT", "/v1/subscriptions/smuggled", PUT_SUBSCRIPTION, id="put-subscription"),
    pytest.param("POST", "/v1/config", b"{}", id="pretry-config"),
    pytest.param("POST", "/v1/event", b'{"identifier": "i", "eventBody": {}}', id="pretry-event"),
    pytest.param("GET", "/v1/subscriptions", b"", id="get-with-body"),
]


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_REQUESTS)
async def test_content_length_with_chunked_is_refused_on_every_route(
    tmp_path: Path, method: str, path: str, body: bytes
) -> None:
    """Not only ingress: admin and Pretry routes refuse both framings too (on Hypercorn, which
    passes them through), before the body is read, and nothing is applied."""
    async with run_gateway(make_settings(tmp_path, egress=LOOPBACK_EGRESS)) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        status, problem = await answer_until_closed(port, framed(method, path, body))
        assert status == b"HTTP/1.1 400 ", status
        assert problem["type"] == "urn:ce-gateway:problem:invalid-request"
        assert problem["field"] == "transfer-encoding"
        assert "Content-Length and Transfer-Encoding" in problem["detail"]
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


async def test_chunked_alone_is_served(tmp_path: Path) -> None:
    """The control: the same admin request with only chunked framing is applied."""
    async with run_gateway(make_settings(tmp_path, egress=LOOPBACK_EGRESS)) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        request = framed("PUT", "/v1/subscriptions/chunked", PUT_SUBSCRIPTION, content_length=False)
        answer = await raw_exchange(port, request)
        assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
        assert (await gw.client.get("/v1/subscriptions/chunked")).status_code == 200


@pytest.mark.slow
async def test_content_length_with_chunked_is_refused_on_uvicorn(tmp_path: Path) -> None:
    """httptools (llhttp) refuses it before the app sees it; either way nothing is stored."""
    gateway = GatewayProcess(
        tmp_path, {"server": {"engine": "uvicorn"}, "topics": [{"name": "orders"}]}
    )
    await gateway.start()
    try:
        answer = await raw_exchange(gateway.port, SMUGGLE)
        assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
        async with httpx.AsyncClient(base_url=gateway.url) as client:
            listing = await client.get("/v1/topics/orders/events")
            assert listing.json()["events"] == []
    finally:
        await asyncio.to_thread(gateway.stop)


async def test_a_content_type_that_backtracks_is_refused_at_once(gateway: RunningGateway) -> None:
    """A media type that almost matches (`a/b; ; ; ...; @`) took exponential time to refuse
    and froze the event loop: 100 bytes would have blocked it for days (found in review)."""
    hostile = "a/b" + "; " * 60 + "@"
    for headers in ({"content-type": hostile}, {"content-type": "text/plain"}):
        response = await gateway.publish("orders", "redos", **headers)
        if headers["content-type"] == hostile:
            assert assert_problem(response, 400, "invalid-event")["field"] == "content-type"
    document = {**EVENT, "datacontenttype": hostile, "data": "x"}
    response = await gateway.client.post(
        "/topics/orders/events", headers=STRUCTURED, content=orjson.dumps(document)
    )
    assert assert_problem(response, 400, "invalid-event")["field"] == "datacontenttype"
    assert await stored_ids(gateway) == ["redos"]


@pytest.mark.parametrize("escape", ["\\n", "\\t", "\\r", "\\b", "\\f"])
async def test_control_characters_in_structured_strings_are_refused(
    gateway: RunningGateway, escape: str
) -> None:
    """JSON's short escapes of control characters, as `\\u000a` already was (core spec "Type
    System"): such an id was stored and then pushed as a header its own ingress refuses."""
    body = (
        b'{"specversion":"1.0","id":"line1' + escape.encode() + b'line2","source":"/s","type":"t"}'
    )
    for headers, content in ((STRUCTURED, body), (BATCH, b"[" + body + b"]")):
        response = await gateway.client.post(
            "/topics/orders/events", headers=headers, content=content
        )
        assert assert_problem(response, 400, "invalid-event")["field"] == "id"
    assert await stored_ids(gateway) == []


async def test_text_in_another_charset_is_kept_as_bytes(tmp_path: Path) -> None:
    """`text/plain; charset=windows-1252` is not decoded as UTF-8 (JSON format 3.1.1): the
    structured push carries the bytes that were sent, as data_base64."""
    async with pushing(tmp_path) as (gw, sub):
        await gw.client.put(
            "/v1/subscriptions/s2",
            json={
                "topic": "orders",
                "destination": {"http": {"url": sub.url, "contentMode": "structured"}},
            },
        )
        headers = {
            **BINARY_HEADERS,
            "ce-id": "cp",
            "content-type": "text/plain; charset=windows-1252",
        }
        sent = "Ã©".encode("windows-1252")  # the UTF-8 bytes of "é", read as windows-1252
        assert (
            await gw.client.post("/topics/orders/events", headers=headers, content=sent)
        ).status_code == 202
        await settle(gw)
        by_mode = {request.headers.get("content-type", ""): request for request in sub.received}
        structured = orjson.loads(by_mode["application/cloudevents+json"].body)
        assert "data" not in structured
        assert base64.b64decode(structured["data_base64"]) == sent
        assert by_mode["text/plain; charset=windows-1252"].body == sent
