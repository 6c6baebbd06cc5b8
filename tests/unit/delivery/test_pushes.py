"""Building pushes: binary mode (the SDK's mapping), and data mode (only the event's data, as
Pretry delivers it)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.delivery.pushes import build_push, with_credentials
from gateway.destinations.targets import HttpTarget, SqsTarget

BASE = {"specversion": "1.0", "id": "e-1", "source": "/s", "type": "t"}


@pytest.mark.parametrize(
    ("fields", "body"),
    [
        pytest.param({"data": {"a": [1, None]}}, b'{"a":[1,null]}', id="json-object"),
        pytest.param({"data": ["a", True]}, b'["a",true]', id="json-array"),
        pytest.param({"data": False}, b"false", id="json-boolean"),
        pytest.param({"data": 2.5}, b"2.5", id="json-number"),
        pytest.param({"data": "hi"}, b'"hi"', id="json-string-stays-json"),
        pytest.param(
            {"datacontenttype": "application/vnd.x+json", "data": [1]}, b"[1]", id="json-suffix"
        ),
        pytest.param(
            {"datacontenttype": "text/plain", "data": "h\u00e9"}, "h\u00e9".encode(), id="text"
        ),
        pytest.param({"data_base64": "AAEC"}, b"\x00\x01\x02", id="bytes"),
        pytest.param(
            {"specversion": "0.3", "datacontentencoding": "base64", "data": "AAEC"},
            b"\x00\x01\x02",
            id="bytes-spec-0.3",
        ),
        pytest.param({}, b"", id="no-data"),
        pytest.param({"data_base64": None}, b"", id="null-data-base64"),
        pytest.param(
            {"datacontenttype": "application/xml", "data": [1, True]},
            b"[1,true]",
            id="json-value-under-another-type",
        ),
        pytest.param(
            {"datacontenttype": "text/plain", "datacontentencoding": "base64", "data": "AAEC"},
            b"AAEC",
            id="spec-1.0-extension-is-not-an-encoding",
        ),
    ],
)
def test_binary_mode_body_is_the_data_in_its_content_type(
    fields: dict[str, Any], body: bytes
) -> None:
    """JSON data goes out as JSON whatever its type (the SDK alone would write a list or a
    boolean as Python text); text as text; bytes as they are."""
    request = build_push(orjson.dumps({**BASE, **fields}), "binary")
    assert request.body == body
    # JSON data without a datacontenttype gets the implied application/json (JSON format 3.1.2);
    # bytes and no data get no Content-Type at all.
    implied = "application/json" if "data" in fields and "specversion" not in fields else None
    assert request.headers.get("content-type") == fields.get("datacontenttype", implied)
    assert request.headers["ce-id"] == "e-1"


def test_binary_mode_keeps_the_published_time_and_invents_none() -> None:
    timed = build_push(orjson.dumps({**BASE, "time": "2024-05-06T07:08:09.123456789Z"}), "binary")
    assert timed.headers["ce-time"] == "2024-05-06T07:08:09.123456789Z"
    assert "ce-time" not in build_push(orjson.dumps(BASE), "binary").headers


@pytest.mark.parametrize(
    ("fields", "content_type", "body"),
    [
        pytest.param({"data": {"a": [1, 2]}}, "application/json", b'{"a":[1,2]}', id="json-object"),
        pytest.param({"data": "hi"}, "application/json", b'"hi"', id="json-string-stays-json"),
        pytest.param({"data": None}, "application/json", b"null", id="json-null"),
        pytest.param(
            {"datacontenttype": "application/vnd.x+json", "data": [1]},
            "application/vnd.x+json",
            b"[1]",
            id="json-suffix",
        ),
        pytest.param(
            {"datacontenttype": "text/plain", "data": "h\u00e9"},
            "text/plain",
            "h\u00e9".encode(),
            id="text",
        ),
        pytest.param(
            {"data_base64": "AAEC"}, "application/octet-stream", b"\x00\x01\x02", id="binary"
        ),
        pytest.param(
            {"specversion": "0.3", "datacontentencoding": "base64", "data": "AAEC"},
            "application/octet-stream",
            b"\x00\x01\x02",
            id="binary-spec-0.3",
        ),
        pytest.param({}, None, b"", id="no-data"),
        pytest.param({"data_base64": None}, None, b"", id="null-data-base64"),
    ],
)
def test_data_mode_sends_only_the_data(
    fields: dict[str, Any], content_type: str | None, body: bytes
) -> None:
    request = build_push(orjson.dumps({**BASE, **fields}), "data")
    assert request.body == body
    assert request.headers.get("content-type") == content_type
    assert not any(name.startswith("ce-") for name in request.headers)
    assert (request.source, request.id) == ("/s", "e-1")


def test_credentials_are_added_for_http_only() -> None:
    request = build_push(orjson.dumps({**BASE, "data": 1}), "structured")
    http = HttpTarget("https://h/", "structured", authorization="Bearer t")
    assert with_credentials(request, "s", http, 0).headers["authorization"] == "Bearer t"
    sqs = SqsTarget("https://q", "eu-west-1", "structured")
    assert with_credentials(request, "s", sqs, 0) is request
