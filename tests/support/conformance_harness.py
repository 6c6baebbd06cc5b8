"""A gateway, a subscriber and the checks the conformance and property tests share: publish an
event in a content mode, read back what the gateway stored (`GET /v1/topics/{t}/events`) and what
it pushed (one binary-mode and one structured-mode subscription), decoded by the cloudevents SDK
(`cloudevents.core`) and by our own reading of the HTTP binding."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings import http
from cloudevents.core.formats.json import JSONFormat
from dateutil.parser import isoparse

from tests.conftest import LOOPBACK_EGRESS, RunningGateway, make_settings, run_gateway
from tests.support.subscriber import Received, Subscriber, run_subscriber

TOPIC = "conformance"
MODES = ("binary", "structured", "batch")
DATA_MEMBERS = ("data", "data_base64")


@dataclass
class Harness:
    gateway: RunningGateway
    subscriber: Subscriber

    async def publish(self, mode: str, request: Any) -> httpx.Response:
        """`request` is (headers, body) for binary mode, a JSON-format event (dict, or raw bytes)
        for structured mode, and a list of those (or raw bytes) for batch mode."""
        if mode == "binary":
            headers, body = request
            return await self.gateway.client.post(
                f"/topics/{TOPIC}/events", headers=headers, content=body
            )
        kind = "structured" if mode == "structured" else "batch"
        content_type = f"application/cloudevents{'-batch' if kind == 'batch' else ''}+json"
        body = request if isinstance(request, bytes) else orjson.dumps(request)
        return await self.gateway.client.post(
            f"/topics/{TOPIC}/events", headers={"content-type": content_type}, content=body
        )

    async def stored(self, event_id: str) -> list[dict[str, Any]]:
        """Every stored event with this id, from the admin API."""
        found: list[dict[str, Any]] = []
        after: str | None = None
        while True:
            params = {"limit": "1000", **({"after": after} if after else {})}
            page = await self.gateway.client.get(f"/v1/topics/{TOPIC}/events", params=params)
            assert page.status_code == 200, page.text
            found += [event for event in page.json()["events"] if event["id"] == event_id]
            after = page.json()["next"]
            if after is None:
                return found

    async def pushes(self, event_id: str) -> dict[str, Received]:
        """The binary and the structured push of this event (waits for both)."""
        for _ in range(500):
            got = {
                request.path.strip("/"): request
                for request in self.subscriber.received
                if _pushed_id(request) == event_id
            }
            if len(got) == 2:
                return got
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no pushes of {event_id!r}")


def _pushed_id(request: Received) -> str | None:
    if request.path == "/binary":
        return unquote_to_bytes(request.headers.get("ce-id", "")).decode()
    return str(orjson.loads(request.body)["id"])


@contextlib.asynccontextmanager
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    async with run_subscriber() as sub:
        subscriptions = [
            {
                "name": mode,
                "topic": TOPIC,
                "destination": {"http": {"url": f"{sub.url}/{mode}", "contentMode": mode}},
            }
            for mode in ("binary", "structured")
        ]
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": TOPIC}],
            subscriptions=subscriptions,
        )
        async with run_gateway(settings) as gw:
            yield Harness(gw, sub)


# --- what a push must be, for a stored event ---------------------------------------------------


def canonical(value: Any) -> str:
    """An attribute value's canonical string form (core spec, Type System)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def data_of(document: dict[str, Any]) -> tuple[bool, Any]:
    """(has data, the data) of a JSON-format event: bytes for base64, else the JSON value."""
    if document.get("data_base64") is not None:
        return True, base64.b64decode(document["data_base64"])
    if document.get("specversion") == "0.3" and document.get("datacontentencoding"):
        return True, base64.b64decode(document["data"])
    return "data" in document, document.get("data")


def is_json_type(content_type: str | None) -> bool:
    if content_type is None:
        return True
    subtype = content_type.split(";")[0].strip().lower().split("/")[-1]
    return subtype == "json" or subtype.endswith("+json")


def expected_body(document: dict[str, Any]) -> bytes:
    has, data = data_of(document)
    if not has:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str) and not is_json_type(document.get("datacontenttype")):
        return data.encode()
    return orjson.dumps(data)


def attributes_of(document: dict[str, Any]) -> dict[str, Any]:
    attributes = {k: v for k, v in document.items() if k not in DATA_MEMBERS}
    if document.get("specversion") == "0.3":
        attributes.pop("datacontentencoding", None)  # describes string-encoded data only
    return attributes


def check_binary_push(
    pushed: Received, document: dict[str, Any], sent: bytes | None = None
) -> None:
    """HTTP binding 3.1: every attribute but datacontenttype as a ce- header in its canonical
    string form, percent-encoded; Content-Type is the datacontenttype (JSON format 3.1.2: the
    implied application/json for JSON data without one), and there is none otherwise. `sent` is
    the body of a binary-mode publish: the data arrived as those bytes, and is pushed as them
    (DESIGN "CloudEvents fidelity"), JSON included, whatever its whitespace and escapes."""
    attributes = attributes_of(document)
    headers = {
        name[3:]: unquote_to_bytes(value).decode()
        for name, value in pushed.headers.items()
        if name.startswith("ce-")
    }
    expected = {k: canonical(v) for k, v in attributes.items() if k != "datacontenttype"}
    assert headers == expected
    for value in (v for k, v in pushed.headers.items() if k.startswith("ce-")):
        assert value.isascii() and value.isprintable() and " " not in value and '"' not in value
    has, data = data_of(document)
    content_type = document.get("datacontenttype")
    if content_type is None and has and not isinstance(data, bytes):
        content_type = "application/json"
    assert pushed.headers.get("content-type") == content_type
    assert pushed.body == (expected_body(document) if sent is None else sent)
    if has and is_json_type(content_type) and not isinstance(data, bytes):
        assert orjson.loads(pushed.body) == data


def check_structured_push(pushed: Received, document: dict[str, Any]) -> None:
    assert pushed.headers["content-type"] == "application/cloudevents+json"
    assert orjson.loads(pushed.body) == document


def sdk_binary(pushed: Received) -> BaseCloudEvent:
    message = http.HTTPMessage(headers=dict(pushed.headers), body=pushed.body)
    return http.from_binary(message, JSONFormat())


def sdk_structured(pushed: Received) -> BaseCloudEvent:
    message = http.HTTPMessage(headers=dict(pushed.headers), body=pushed.body)
    return http.from_structured(message, JSONFormat())


def check_sdk_decodes(pushes: dict[str, Received], document: dict[str, Any]) -> None:
    """The cloudevents SDK reads both pushes as the stored event. SDK gaps, worked around here:
    it gives `time` as a datetime (compared as the instant); in binary mode it reads every
    extension as a string (a header carries no type: the canonical string is what must match)
    and hands back bytes that happen to be UTF-8 as str (HTTP binding 3.1.2 says the body is the
    data byte-sequence; compared as bytes)."""
    has, data = data_of(document)
    binary = sdk_binary(pushes["binary"])
    structured = sdk_structured(pushes["structured"])
    for event, typed in ((binary, False), (structured, True)):
        attributes = (
            {k: v for k, v in document.items() if k not in DATA_MEMBERS}
            if typed
            else attributes_of(document)
        )
        got = dict(event.get_attributes())
        time = got.pop("time", None)
        if "time" in attributes:
            assert time is not None and _same_instant(time, attributes)
        want = {k: v for k, v in attributes.items() if k != "time"}
        if not typed:
            want = {k: canonical(v) for k, v in want.items()}
            if "datacontenttype" not in want and has and not isinstance(data, bytes):
                want["datacontenttype"] = "application/json"  # JSON format 3.1.2
        assert got == want
    got_binary = binary.get_data()
    if has and data in ("", b""):
        # An empty body is no data to the SDK: binary mode cannot tell empty data from none.
        assert got_binary is None
        assert structured.get_data() == data
    elif isinstance(data, bytes) and "datacontenttype" not in document:
        # SDK gap: with no Content-Type it parses the body as JSON when it can (HTTP binding
        # 3.1.1: no Content-Type is no datacontenttype, and the body is the data's bytes).
        assert got_binary == _sdk_reading_of(data)
        assert structured.get_data() == data
    elif isinstance(data, bytes):
        assert (got_binary.encode() if isinstance(got_binary, str) else got_binary) == data
        assert structured.get_data() == data
    elif has and data is not None:
        assert structured.get_data() == data
        assert got_binary == data
    else:
        assert binary.get_data() is None


def _sdk_reading_of(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return data.decode()
        except UnicodeDecodeError:
            return data


def _same_instant(time: Any, attributes: dict[str, Any]) -> bool:
    return bool(abs((isoparse(attributes["time"]) - time).total_seconds()) < 1e-6)
